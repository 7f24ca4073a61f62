//! The `twilio` kind in the real `smsgate` process against the Twilio
//! simulator on 127.0.0.1: SMS and WhatsApp to DELIVERED by signed status
//! callbacks and, with callbacks off, by polling; forged webhooks refused;
//! a timeout after Twilio took the message sends it once; WhatsApp's
//! window; statuses out of order; customers' messages reaching their
//! campaign once whichever way they came; 21610 and 20003. Then the
//! transport alone for templates, the messaging limit and reconcile.

mod common;
use common::runtime;

use std::time::Duration;

use common::{ADMIN, Daemon, OPERATOR, VIEWER, wait_until};
use smsgate_sim::twilio::{Fault, TwilioSimConfig, TwilioSimHandle};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "tw-auth-token-5a1c9e77";
const SMS_NUMBER: &str = "+15005550006";
const WA_NUMBER: &str = "+15005550007";

fn sim(
    rt: &tokio::runtime::Runtime,
    number: &str,
    incoming_url: Option<String>,
) -> TwilioSimHandle {
    rt.block_on(smsgate_sim::twilio::start(TwilioSimConfig {
        account_sid: ACCOUNT.into(),
        auth_token: TOKEN.into(),
        number: number.into(),
        incoming_url,
        ..Default::default()
    }))
    .unwrap()
}

struct Gw<'a> {
    name: &'a str,
    sim: &'a TwilioSimHandle,
    number: &'a str,
    whatsapp: bool,
    /// The daemon's port when Twilio calls us back.
    callbacks: Option<u16>,
    extra: &'a str,
}

fn gateway(g: &Gw<'_>, secrets: &std::path::Path) -> String {
    let token = secrets.join("twilio.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut s = format!(
        "\n[[gateway]]\nname = \"{}\"\nkind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\nauth_token_file = \"{}\"\nfrom = \"{}\"\nurl = \"{}\"\nports = 2\ntimeout_ms = 1000\n",
        g.name,
        token.display(),
        g.number,
        g.sim.base_url()
    );
    if g.whatsapp {
        s.push_str("channel = \"whatsapp\"\n");
    }
    if let Some(port) = g.callbacks {
        s.push_str(&format!(
            "status_callback_url = \"http://127.0.0.1:{port}/api/v1/gateways/{}/push\"\n",
            g.name
        ));
    }
    s.push_str(g.extra);
    s
}

fn dialer(name: &str, provider: &str) -> String {
    format!(
        "\n[[dialer]]\nname = \"{name}\"\nprovider = \"{provider}\"\ninterval_ms = 10\ndncr = false\nretry_backoff_ms = 200\nmax_attempts = 5\n"
    )
}

fn campaign(name: &str, provider: &str, number: &str) -> String {
    format!(
        "\n[[campaign]]\nname = \"{name}\"\nprovider = \"{provider}\"\ndid_ports = [\"{number}\"]\n"
    )
}

fn daemon(port: u16, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smsgate.toml");
    std::fs::write(
        &config,
        common::config_text(port, &dir.path().join("state"), extra),
    )
    .unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    d
}

fn send(d: &Daemon, dialer: &str, to: &str, text: &str) -> i64 {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": dialer, "to": to, "text": text}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap()
}

fn message(d: &Daemon, id: i64) -> serde_json::Value {
    d.http()
        .get(d.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(VIEWER)
        .send()
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or_default()
}

fn wait_state(d: &Daemon, id: i64, states: &[&str]) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        last = message(d, id);
        states.iter().any(|s| last["state_name"] == *s)
    });
    assert!(ok, "message {id} never {states:?}: {last}");
    last
}

fn inbound(d: &Daemon, campaign: &str) -> Vec<serde_json::Value> {
    common::get(d, &format!("/api/v1/inbound?campaign={campaign}"))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sms_and_whatsapp_by_signed_callbacks_window_inbound_and_forgeries() {
    let rt = runtime();
    let port = common::free_port();
    let push = |gw: &str| Some(format!("http://127.0.0.1:{port}/api/v1/gateways/{gw}/push"));
    let sms = sim(&rt, SMS_NUMBER, push("tw-sms"));
    let wa = sim(&rt, WA_NUMBER, push("tw-wa"));
    let secrets = tempfile::tempdir().unwrap();
    let mut extra = gateway(
        &Gw {
            name: "tw-sms",
            sim: &sms,
            number: SMS_NUMBER,
            whatsapp: false,
            callbacks: Some(port),
            // Both ways at once: a message comes by webhook and by poll.
            extra: "inbound_poll_s = 1\n",
        },
        secrets.path(),
    );
    extra.push_str(&gateway(
        &Gw {
            name: "tw-wa",
            sim: &wa,
            number: WA_NUMBER,
            whatsapp: true,
            callbacks: Some(port),
            extra: "",
        },
        secrets.path(),
    ));
    extra.push_str(&dialer("dsms", "tw-sms"));
    extra.push_str(&dialer("dwa", "tw-wa"));
    extra.push_str(&campaign("ventas", "tw-sms", SMS_NUMBER));
    extra.push_str(&campaign("soporte", "tw-wa", WA_NUMBER));
    let mut d = daemon(port, &extra);

    // SMS: created with our id on the callback URL, DELIVERED by the
    // signed callbacks.
    let id = send(&d, "dsms", "+59899000010", "a & b = ñ 👍");
    let m = wait_state(&d, id, &["DELIVERED"]);
    let creates = sms.creates();
    assert_eq!(creates.len(), 1);
    let c = &creates[0];
    assert_eq!(c.user.as_deref(), Some(ACCOUNT));
    assert_eq!(c.field("To"), Some("+59899000010"));
    assert_eq!(c.field("From"), Some(SMS_NUMBER));
    assert_eq!(c.field("Body"), Some("a & b = ñ 👍"));
    assert_eq!(
        c.field("StatusCallback"),
        Some(format!("http://127.0.0.1:{port}/api/v1/gateways/tw-sms/push?m={id}").as_str())
    );
    assert_eq!(m["gateway_ref"], sms.messages()[0].sid.as_str(), "{m}");
    assert!(
        sms.callbacks().iter().all(|(_, s)| *s == 200),
        "{:?}",
        sms.callbacks()
    );

    // WhatsApp free text to a customer who never wrote: refused at the
    // API (422, the window this transport reports), and, when it comes by
    // an import, FAILED by the transport before any request: Twilio saw
    // nothing.
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": "dwa", "to": "+59899000001", "text": "hola"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422, "{:?}", r.text());
    let r = d
        .http()
        .post(d.url("/api/v1/imports?filename=WA.csv"))
        .bearer_auth(OPERATOR)
        .header("content-type", "text/csv")
        .body("dwa;+59899000001;hola desde la carga;9999;\r\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let mut failed = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(15), || {
            failed = common::get(&d, "/api/v1/messages?dialer=dwa&state=FAILED");
            failed["items"].as_array().is_some_and(|a| !a.is_empty())
        }),
        "{failed}"
    );
    let m = &failed["items"][0];
    assert!(m["error"].as_str().unwrap_or("").contains("24-hour"), "{m}");
    assert!(wa.creates().is_empty(), "{:?}", wa.creates());

    // A template goes outside the window: ContentSid and ContentVariables.
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({
            "dialer": "dwa",
            "to": "+59899000009",
            "template": {"name": "HX0123456789abcdef0123456789abcdef"},
            "variables": ["Ana", "mañana 10:30"],
        }))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let tid = r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    wait_state(&d, tid, &["DELIVERED"]);
    let c = &wa.creates()[0];
    assert_eq!(c.field("To"), Some("whatsapp:+59899000009"));
    assert_eq!(
        c.field("ContentSid"),
        Some("HX0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        c.field("ContentVariables"),
        Some(r#"{"1":"Ana","2":"mañana 10:30"}"#)
    );
    assert_eq!(c.field("Body"), None);

    // The customer writes in on WhatsApp: the webhook is answered with
    // empty TwiML, the message reaches the campaign's conversation.
    let (_, answer) = rt.block_on(wa.incoming("+59899000001", "quiero info", true, true));
    assert_eq!(answer, Some(200));
    assert!(wait_until(Duration::from_secs(10), || !inbound(
        &d, "soporte"
    )
    .is_empty()));
    let items = inbound(&d, "soporte");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["number"], "+59899000001");
    assert_eq!(items[0]["text"], "quiero info");
    let conversations = common::get(&d, "/api/v1/interactions?campaign=soporte");
    assert!(
        conversations.to_string().contains("+59899000001"),
        "{conversations}"
    );

    // Inside the window now: free text goes, with whatsapp: on both sides.
    let inside = send(&d, "dwa", "+59899000001", "gracias por escribir");
    wait_state(&d, inside, &["DELIVERED"]);
    let c = &wa.creates()[1];
    assert_eq!(c.field("To"), Some("whatsapp:+59899000001"));
    assert_eq!(c.field("From"), Some(&*format!("whatsapp:{WA_NUMBER}")));
    assert_eq!(c.field("Body"), Some("gracias por escribir"));

    // An SMS customer's message by webhook, also listed by the poll:
    // stored once.
    let list_before = sms.requests().iter().filter(|r| r.method == "GET").count();
    let (_, answer) = rt.block_on(sms.incoming("+59899000002", "hola sms", false, true));
    assert_eq!(answer, Some(200));
    assert!(wait_until(Duration::from_secs(10), || !inbound(
        &d, "ventas"
    )
    .is_empty()));
    assert!(wait_until(Duration::from_secs(10), || {
        sms.requests().iter().filter(|r| r.method == "GET").count() >= list_before + 2
    }));
    std::thread::sleep(Duration::from_millis(500));
    let items = inbound(&d, "ventas");
    assert_eq!(items.len(), 1, "stored once: {items:?}");
    assert_eq!(items[0]["text"], "hola sms");
    assert_eq!(items[0]["recipient"], SMS_NUMBER);

    // Forged webhooks: a wrong signature, none, a right one for another
    // URL. Each 403, nothing stored.
    let body =
        "MessageSid=SMforged&From=%2B59899000003&To=%2B15005550006&Body=forged&SmsStatus=received";
    let signed_elsewhere = smsgate_proto::twilio::signature(
        TOKEN,
        "https://elsewhere.example/push",
        &smsgate_proto::twilio::parse_form(body.as_bytes()),
    );
    for sig in [
        Some("AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        None,
        Some(&*signed_elsewhere),
    ] {
        let mut rb = d
            .http()
            .post(d.url("/api/v1/gateways/tw-sms/push"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(sig) = sig {
            rb = rb.header("X-Twilio-Signature", sig);
        }
        let r = rb.send().unwrap();
        assert_eq!(r.status(), 403, "{sig:?}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inbound(&d, "ventas").len(), 1);
    assert!(
        !common::get(&d, "/api/v1/inbound")
            .to_string()
            .contains("forged")
    );

    // Statuses out of order: "delivered" then "sent". DELIVERED stays.
    sms.set_out_of_order(true);
    let ooo = send(&d, "dsms", "+59899000011", "fuera de orden");
    let m = wait_state(&d, ooo, &["DELIVERED"]);
    let sid = m["gateway_ref"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), || sms
        .callbacks()
        .iter()
        .filter(|(u, _)| u.ends_with(&format!("m={ooo}")))
        .count()
        == 2));
    assert_eq!(rt.block_on(sms.callback_status(&sid, "sent")), Some(200));
    assert_eq!(rt.block_on(sms.callback_status(&sid, "queued")), Some(200));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(message(&d, ooo)["state_name"], "DELIVERED");

    // The token is in no log line.
    let log = d.drain_stderr().text_at_end(Duration::from_millis(200));
    assert!(log.contains("webhook refused"), "{log}");
    assert!(!log.contains(TOKEN), "the auth token leaked: {log}");
}

#[test]
fn with_callbacks_off_statuses_and_customers_are_polled() {
    let rt = runtime();
    let port = common::free_port();
    let sms = sim(&rt, SMS_NUMBER, None);
    let wa = sim(&rt, WA_NUMBER, None);
    let secrets = tempfile::tempdir().unwrap();
    let poll = "status_poll_s = 1\ninbound_poll_s = 1\n";
    let mut extra = gateway(
        &Gw {
            name: "tw-sms",
            sim: &sms,
            number: SMS_NUMBER,
            whatsapp: false,
            callbacks: None,
            extra: poll,
        },
        secrets.path(),
    );
    extra.push_str(&gateway(
        &Gw {
            name: "tw-wa",
            sim: &wa,
            number: WA_NUMBER,
            whatsapp: true,
            callbacks: None,
            extra: poll,
        },
        secrets.path(),
    ));
    extra.push_str(&dialer("dsms", "tw-sms"));
    extra.push_str(&dialer("dwa", "tw-wa"));
    extra.push_str(&campaign("soporte", "tw-wa", WA_NUMBER));
    let d = daemon(port, &extra);

    let id = send(&d, "dsms", "+59899000020", "por sondeo");
    wait_state(&d, id, &["DELIVERED"]);
    assert_eq!(sms.creates()[0].field("StatusCallback"), None);
    assert!(sms.callbacks().is_empty());
    let sid = &sms.messages()[0].sid;
    assert!(
        sms.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with(&format!("/Messages/{sid}.json"))),
        "fetched by its sid"
    );

    // A WhatsApp customer's message found by the poll opens the window.
    rt.block_on(wa.incoming("+59899000021", "hola", true, false));
    assert!(wait_until(Duration::from_secs(10), || !inbound(
        &d, "soporte"
    )
    .is_empty()));
    let id = send(&d, "dwa", "+59899000021", "respuesta");
    wait_state(&d, id, &["DELIVERED"]);
    assert_eq!(wa.creates()[0].field("To"), Some("whatsapp:+59899000021"));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(inbound(&d, "soporte").len(), 1, "listed again, stored once");
}

#[test]
fn a_timeout_after_twilio_took_the_message_does_not_send_it_twice_and_429s_are_retried() {
    let rt = runtime();
    let port = common::free_port();
    let sms = sim(&rt, SMS_NUMBER, None);
    let secrets = tempfile::tempdir().unwrap();
    let mut extra = gateway(
        &Gw {
            name: "tw-sms",
            sim: &sms,
            number: SMS_NUMBER,
            whatsapp: false,
            callbacks: None,
            // The timeout and two 429s would open the breaker (3 failures) for
            // breaker_probe_s: this test is about the retries, not the breaker.
            extra: "status_poll_s = 1\nbreaker_failures = 10\n",
        },
        secrets.path(),
    );
    extra.push_str(&dialer("dsms", "tw-sms"));
    let d = daemon(port, &extra);
    // Twilio creates it, then its answer comes after our 1 s timeout.
    sms.fault(Fault {
        hang_ms: Some(2500),
        times: Some(1),
        ..Default::default()
    });
    let id = send(&d, "dsms", "+59899000030", "una sola vez");
    let m = wait_state(&d, id, &["SENT", "DELIVERED"]);
    assert_eq!(m["gateway_ref"], sms.messages()[0].sid.as_str(), "{m}");
    wait_state(&d, id, &["DELIVERED"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sms.creates().len(), 1, "created once: {:?}", sms.creates());
    assert!(
        sms.requests().iter().any(|r| r.method == "GET"
            && r.query
                .as_deref()
                .unwrap_or("")
                .contains("To=%2B59899000030")),
        "asked by listing: {:?}",
        sms.requests()
    );

    // Too many requests, twice (Retry-After 1): the gateway waits, the
    // message is retried and sent by the third create.
    sms.fault(Fault {
        status: Some(429),
        code: Some(20429),
        message: Some("Too Many Requests".into()),
        retry_after: Some(1),
        times: Some(2),
        ..Default::default()
    });
    let slowed = send(&d, "dsms", "+59899000031", "despacio");
    let m = wait_state(&d, slowed, &["SENT", "DELIVERED"]);
    assert_eq!(m["attempts"], 3, "{m}");
    assert_eq!(sms.creates().len(), 4, "{:?}", sms.creates());
}

#[test]
fn opt_out_21610_goes_to_the_ledger_and_20003_stops_the_gateway() {
    let rt = runtime();
    let port = common::free_port();
    let sms = sim(&rt, SMS_NUMBER, None);
    let secrets = tempfile::tempdir().unwrap();
    let mut extra = gateway(
        &Gw {
            name: "tw-sms",
            sim: &sms,
            number: SMS_NUMBER,
            whatsapp: false,
            callbacks: None,
            extra: "",
        },
        secrets.path(),
    );
    extra.push_str(&dialer("dsms", "tw-sms"));
    let mut d = daemon(port, &extra);

    sms.fault(Fault {
        to: Some("+59899000040".into()),
        status: Some(400),
        code: Some(21610),
        message: Some("Attempt to send to unsubscribed recipient".into()),
        ..Default::default()
    });
    let id = send(&d, "dsms", "+59899000040", "promo");
    let m = wait_state(&d, id, &["FAILED"]);
    assert!(m["error"].as_str().unwrap_or("").contains("21610"), "{m}");
    let c = common::get(&d, "/api/v1/consent?phone=%2B59899000040");
    assert_eq!(c["opted_out"], true, "{c}");
    assert_eq!(c["history"][0]["action"], "opt_out", "{c}");
    let dncr = common::get(&d, "/api/v1/dncr?phone=%2B59899000040");
    assert!(
        dncr["items"].as_array().is_some_and(|a| !a.is_empty()),
        "{dncr}"
    );

    // Twilio refuses the account: every channel stops, saying why.
    sms.fault(Fault {
        status: Some(401),
        code: Some(20003),
        message: Some("Authenticate".into()),
        times: Some(1000),
        ..Default::default()
    });
    let held = send(&d, "dsms", "+59899000041", "retenido");
    let mut channels = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            channels = common::get(&d, "/api/v1/channels");
            let ours: Vec<&serde_json::Value> = channels["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["gateway"] == "tw-sms")
                .collect();
            ours.len() == 2
                && ours.iter().all(|c| {
                    c["usable"] == false && c["reason"].as_str().unwrap_or("").contains("20003")
                })
        }),
        "{channels}"
    );
    let m = message(&d, held);
    assert!(
        m["state_name"] == "TO_PROCESS" || m["state_name"] == "SENDING",
        "back in its queue, not failed: {m}"
    );
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(status.contains("20003"), "{status}");
    assert!(!status.contains(TOKEN));
    let log = d.drain_stderr().text_at_end(Duration::from_millis(300));
    let line = log
        .lines()
        .find(|l| l.contains("Twilio refused account"))
        .unwrap_or_else(|| panic!("no journal line: {log}"));
    assert!(
        line.contains("tw-sms") && line.contains("20003") && line.contains("Authenticate"),
        "{line}"
    );
    assert!(!log.contains(TOKEN), "the auth token leaked: {log}");
    let body = d
        .http()
        .get(d.url("/api/v1/status"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!body.contains(TOKEN));
}

#[test]
fn bad_twilio_configs_are_refused_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = format!(
        "[daemon]\nstate_dir = \"/tmp/x\"\n\n[[gateway]]\nname = \"t1\"\nkind = \"twilio\"\naccount_sid = \"{ACCOUNT}\"\nauth_token = \"x\"\nfrom = \"{SMS_NUMBER}\"\nmessaging_service_sid = \"MG0123456789abcdef0123456789abcdef\"\nchannel = \"fax\"\nmessaging_limit = 10\n\n[[gateway]]\nname = \"t2\"\nkind = \"twilio\"\naccount_sid = \"nope\"\napi_key_sid = \"SK0123456789abcdef0123456789abcdef\"\napi_key_secret_file = \"/nonexistent/secret\"\nfrom = \"099123\"\nstatus_callback_url = \"https://sms.example.com/api/v1/gateways/t2/push\"\n"
    );
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let p = path.display();
    for want in [
        format!("{p}:10:25: give either `from` or `messaging_service_sid`, not both"),
        format!("{p}:11:11: channel must be \"sms\" or \"whatsapp\", found \"fax\""),
        format!("{p}:12:19: messaging_limit is WhatsApp's"),
        format!("{p}:17:15: account_sid is the account's SID"),
        format!("{p}:19:23: cannot read api_key_secret file /nonexistent/secret"),
        format!("{p}:20:8: from must be our Twilio number in E.164"),
        format!("{p}:21:23: Twilio signs its webhooks with the account's auth token"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
}

/// The transport alone, against the simulator: what the daemon's API does
/// not yet send (templates) and what is hard to reach through it.
mod transport {
    use std::sync::Arc;

    use smsgate::config::{Secret, TwilioSettings};
    use smsgate::transport::twilio::TwilioTransport;
    use smsgate::transport::{
        Asked, BuildContext, Events, Outbound, Reconciled, SendError, Transport,
    };
    use smsgate_proto::twilio::{Channel, Sender};
    use smsgate_proto::whatsapp_rules::MessageTemplate;

    use super::*;

    fn settings(sim: &TwilioSimHandle, limit: Option<u32>) -> TwilioSettings {
        TwilioSettings {
            url: sim.base_url(),
            account_sid: ACCOUNT.into(),
            auth_token: Some(Secret::new(TOKEN)),
            api_key: None,
            sender: Sender::From(WA_NUMBER.into()),
            channel: Channel::WhatsApp,
            status_callback_url: None,
            timeout: Duration::from_secs(2),
            status_poll: None,
            status_poll_for: Duration::from_secs(60),
            inbound_poll: None,
            messaging_limit: limit,
        }
    }

    fn outbound(id: i64, to: &str, text: &str, template: Option<MessageTemplate>) -> Outbound {
        Outbound {
            message_id: id,
            port: 0,
            to: to.into(),
            text: text.into(),
            reference: id,
            template: template.map(Arc::new),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn templates_go_outside_the_window_within_the_messaging_limit() {
        let sim = smsgate_sim::twilio::start(TwilioSimConfig {
            account_sid: ACCOUNT.into(),
            auth_token: TOKEN.into(),
            number: WA_NUMBER.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let (events, _rx) = Events::channel();
        let ctx = BuildContext {
            events,
            stop: Default::default(),
            awaiting: Vec::new(),
            inbound_mark: None,
            default_country: "UY".into(),
            last_inbound: Vec::new(),
            templates_sent: Vec::new(),
        };
        let t = TwilioTransport::start("wa", 1, &settings(&sim, Some(1)), ctx).unwrap();
        let template = MessageTemplate {
            name: "HX0123456789abcdef0123456789abcdef".into(),
            language: None,
            variables: vec!["Ana".into(), "mañana \"10\"".into()],
        };
        let started = smsgate::now_ms();
        let acc = t
            .send(&outbound(1, "+59899000050", "", Some(template.clone())))
            .await
            .unwrap();
        let c = &sim.creates()[0];
        assert_eq!(c.field("To"), Some("whatsapp:+59899000050"));
        assert_eq!(c.field("ContentSid"), Some(template.name.as_str()));
        assert_eq!(
            c.field("ContentVariables"),
            Some(r#"{"1":"Ana","2":"mañana \"10\""}"#)
        );
        assert_eq!(c.field("Body"), None);
        assert_eq!(t.messaging_limit(), Some((1, Some(1))));
        assert!(!t.window("+59899000050").unwrap().open);

        // The limit of one customer is used: a template to another waits.
        let e = t
            .send(&outbound(2, "+59899000051", "", Some(template)))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Deferred { .. }), "{e}");
        // Free text outside the window: refused, no request.
        let e = t
            .send(&outbound(3, "+59899000051", "hola", None))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e}");
        assert_eq!(sim.creates().len(), 1);

        // Asked after an unclear send: found by number and time (a
        // template's body is Twilio's), or not there.
        let asked = |id: i64, to: &str, text: &str| Asked {
            message_id: id,
            port: 0,
            reference: id,
            to: to.into(),
            text: text.into(),
            started_ms: started,
        };
        assert_eq!(
            t.reconcile(&asked(1, "+59899000050", "[template HX...]"))
                .await,
            Reconciled::Sent {
                gateway_ref: acc.gateway_ref.clone()
            }
        );
        assert_eq!(
            t.reconcile(&asked(4, "+59899000059", "nunca enviado"))
                .await,
            Reconciled::NotSent
        );
    }
}

/// SIGKILL with a message SENT awaiting its status and another whose create
/// Twilio took but had not answered: the next start polls the first from
/// the store (resume window) and asks Twilio's list about the second; each
/// was created once and both reach DELIVERED.
#[test]
fn a_crash_loses_no_status_and_sends_nothing_twice() {
    let rt = runtime();
    let port = common::free_port();
    let sms = rt
        .block_on(smsgate_sim::twilio::start(TwilioSimConfig {
            account_sid: ACCOUNT.into(),
            auth_token: TOKEN.into(),
            number: SMS_NUMBER.into(),
            sent_after: Duration::from_millis(100),
            delivered_after: Duration::from_secs(4),
            ..Default::default()
        }))
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let mut extra = gateway(
        &Gw {
            name: "tw-sms",
            sim: &sms,
            number: SMS_NUMBER,
            whatsapp: false,
            callbacks: None,
            extra: "status_poll_s = 1\ninbound_poll_s = 0\n",
        },
        secrets.path(),
    );
    extra.push_str(&dialer("dsms", "tw-sms"));
    let d = daemon(port, &extra);
    let first = send(&d, "dsms", "+59899000070", "antes del corte");
    wait_state(&d, first, &["SENT"]);
    sms.fault(Fault {
        hang_ms: Some(30_000),
        times: Some(1),
        ..Default::default()
    });
    let second = send(&d, "dsms", "+59899000071", "durante el corte");
    assert!(wait_until(Duration::from_secs(10), || sms.creates().len() == 2));
    let mut d = d;
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let config = d.config.clone();
    drop(d);
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    wait_state(&d, first, &["DELIVERED"]);
    wait_state(&d, second, &["DELIVERED"]);
    assert_eq!(sms.creates().len(), 2, "{:?}", sms.creates());
}
