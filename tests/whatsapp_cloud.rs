//! The `whatsapp-cloud` kind in the real `smsgate` process, against the
//! simulated WhatsApp Cloud API on 127.0.0.1: Meta's verification
//! handshake and signed webhooks, the 24-hour window, templates, statuses
//! in any order, received messages reaching their campaign, the messaging
//! limit, and a refused token stopping the gateway.

mod common;
use common::runtime;

use std::time::Duration;

use common::{ADMIN, Daemon, LogDrain, OPERATOR, VIEWER, wait_until};
use serde_json::{Value, json};
use smsgate_sim::whatsapp_cloud::{
    Injection, Signing, StatusPlan, WhatsAppCloudHandle, WhatsAppCloudSim,
};

const ACCESS_TOKEN: &str = "EAAGm0PX4ZCpsBAsecret-access-token";
const APP_SECRET: &str = "app-secret-9f8e7d6c5b";
const VERIFY_TOKEN: &str = "verify-me-4242";
const PHONE_NUMBER_ID: &str = "106540352242922";
const OUR_NUMBER: &str = "+59829001000";

struct Setup {
    rt: tokio::runtime::Runtime,
    sim: WhatsAppCloudHandle,
    d: Daemon,
    log: LogDrain,
}

/// The simulator, and the daemon with a whatsapp-cloud gateway pointed at
/// it (secrets in files), a dialer `dw` and a campaign `ventas` routed by
/// our number.
fn start(gateway_extra: &str) -> Setup {
    let rt = runtime();
    let port = common::free_port();
    let sim = rt
        .block_on(
            WhatsAppCloudSim::builder()
                .phone_number_id(PHONE_NUMBER_ID)
                .display_number("59829001000")
                .access_token(ACCESS_TOKEN)
                .app_secret(APP_SECRET)
                .template("order_update", "es", 2)
                .webhook_url(Some(format!(
                    "http://127.0.0.1:{port}/api/v1/gateways/whatsapp/push"
                )))
                .statuses(StatusPlan {
                    statuses: vec!["sent".into(), "delivered".into(), "read".into()],
                    delay_ms: 20,
                    ..StatusPlan::default()
                })
                .start(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{value}\n")).unwrap();
        p.display().to_string()
    };
    let extra = format!(
        r#"
[[gateway]]
name = "whatsapp"
kind = "whatsapp-cloud"
phone_number_id = "{PHONE_NUMBER_ID}"
access_token_file = "{token}"
app_secret_file = "{secret}"
verify_token_file = "{verify}"
url = "{url}"
api_version = "v21.0"
ports = 4
timeout_ms = 1500
number = "{OUR_NUMBER}"
{gateway_extra}

[[dialer]]
name = "dw"
provider = "whatsapp"
interval_ms = 5
dncr = false
retry_backoff_ms = 200
max_attempts = 3

[[campaign]]
name = "ventas"
provider = "whatsapp"
did_ports = ["{OUR_NUMBER}"]
"#,
        token = file("wa.token", ACCESS_TOKEN),
        secret = file("wa.app_secret", APP_SECRET),
        verify = file("wa.verify_token", VERIFY_TOKEN),
        url = sim.base_url(),
    );
    let config = dir.path().join("smsgate.toml");
    std::fs::write(
        &config,
        common::config_text(port, &dir.path().join("state"), &extra),
    )
    .unwrap();
    let mut d = Daemon::start_with(dir, config, port, &[]);
    let log = d.drain_stderr();
    d.wait_ready();
    Setup { rt, sim, d, log }
}

fn send(d: &Daemon, body: Value) -> (u16, Value) {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

fn send_text(d: &Daemon, to: &str, text: &str) -> i64 {
    let (status, body) = send(d, json!({"dialer": "dw", "to": to, "text": text}));
    assert!((200..300).contains(&status), "{status} {body}");
    body["id"].as_i64().unwrap()
}

fn send_template(d: &Daemon, to: &str) -> i64 {
    let (status, body) = send(
        d,
        json!({"dialer": "dw", "to": to, "template": {"name": "order_update", "language": "es"}, "variables": ["Ana", "ñandú 😀"]}),
    );
    assert!((200..300).contains(&status), "{status} {body}");
    body["id"].as_i64().unwrap()
}

fn message(d: &Daemon, id: i64) -> Value {
    d.http()
        .get(d.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(VIEWER)
        .send()
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or_default()
}

fn wait_state(d: &Daemon, id: i64, state: &str) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(15), || {
        last = message(d, id);
        last["state_name"] == state
    });
    assert!(ok, "message {id} never {state}: {last}");
    last
}

/// The sends the simulator received (its API, not its control routes).
fn sends(sim: &WhatsAppCloudHandle) -> Vec<Value> {
    sim.requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .map(|r| serde_json::from_str(&r.body).unwrap_or_default())
        .collect()
}

fn inbound(d: &Daemon) -> Vec<Value> {
    common::get(d, "/api/v1/inbound?campaign=ventas")["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Meta's verification GET, and the signature of every event: right,
/// wrong or missing; verified over the raw bytes (accents and emoji); a
/// customer's message reaches its campaign's conversation, once however
/// often Meta sends it.
#[test]
fn the_handshake_and_signed_events_bring_a_message_to_its_campaign() {
    let Setup { rt, sim, d, log } = start("");
    let (status, body) = rt
        .block_on(sim.handshake(VERIFY_TOKEN, "1158201444"))
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "1158201444"));
    let (status, body) = rt.block_on(sim.handshake("not-it", "1158201444")).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("1158201444"), "{body}");
    // A GET that is no handshake at all.
    let r = d
        .http()
        .get(d.url("/api/v1/gateways/whatsapp/push"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    let text = "Año café 😀 ñandú, ¿hay turno?";
    let body = sim.incoming_body(
        "59899111222",
        "wamid.HBgLNTk4OTkxMTEyMjIVAgASGBQzQTk=",
        text,
    );
    for signing in [Signing::With("another-app-secret"), Signing::None] {
        let (status, answer) = rt
            .block_on(sim.post_webhook(body.clone(), signing))
            .unwrap();
        assert_eq!(status, 403, "{signing:?}: {answer}");
    }
    // The same JSON with its characters escaped is other bytes: its
    // signature (over the escaped bytes) verifies, the original's not.
    let escaped = String::from_utf8(body.clone())
        .unwrap()
        .replace('ñ', "\\u00f1")
        .into_bytes();
    let r = d
        .http()
        .post(d.url("/api/v1/gateways/whatsapp/push"))
        .header(
            "X-Hub-Signature-256",
            smsgate_proto::whatsapp_cloud::sign(APP_SECRET.as_bytes(), &body),
        )
        .header("content-type", "application/json")
        .body(escaped)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        inbound(&d).is_empty(),
        "nothing stored from a bad signature"
    );

    // Signed right, sent three times (Meta retries until it gets 200).
    for _ in 0..3 {
        let (status, answer) = rt
            .block_on(sim.post_webhook(body.clone(), Signing::Right))
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
    let items = inbound(&d);
    assert_eq!(items.len(), 1, "stored once, and before the 200: {items:?}");
    assert_eq!(items[0]["text"], text);
    assert_eq!(items[0]["number"], "+59899111222");
    assert_eq!(items[0]["recipient"], OUR_NUMBER);
    assert_eq!(items[0]["gateway"], "whatsapp");
    let conversations = common::get(&d, "/api/v1/interactions?campaign=ventas");
    assert!(
        conversations.to_string().contains("+59899111222"),
        "a conversation of the campaign: {conversations}"
    );
    // Other kinds of message are kept with a readable text.
    let r = d
        .http()
        .post(format!("{}/sim/incoming", sim.base_url()))
        .body(r#"{"from": "59899111222", "message": {"type": "image", "image": {"id": "m1", "caption": "la factura"}}}"#)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 200);
    assert!(
        wait_until(Duration::from_secs(5), || inbound(&d)
            .iter()
            .any(|m| m["text"] == "[image] la factura")),
        "{:?}",
        inbound(&d)
    );
    drop(d);
    let journal = log.text_at_end(Duration::from_secs(5));
    assert!(
        journal.contains("X-Hub-Signature-256 does not verify"),
        "{journal}"
    );
    assert!(
        journal.contains("webhook verification refused"),
        "{journal}"
    );
    for secret in [ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN] {
        assert!(!journal.contains(secret), "the journal shows a secret");
    }
}

/// Free text outside the window never leaves; after the customer writes,
/// it goes and is DELIVERED by signed status; a template goes outside the
/// window with its name, language and parameters.
#[test]
fn free_text_needs_the_window_and_a_template_goes_outside_it() {
    let Setup { rt, sim, d, .. } = start("");
    // At the API (single send): 422. Through an import: queued, then
    // refused by the transport before any request.
    let (status, body) = send(
        &d,
        json!({"dialer": "dw", "to": "+59899000001", "text": "hola"}),
    );
    assert_eq!(status, 422, "{body}");
    let r = d
        .http()
        .post(d.url("/api/v1/imports?filename=wa.csv"))
        .bearer_auth(OPERATOR)
        .header("content-type", "text/csv")
        .body("dw;+59899000001;hola desde el import;1;\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let mut id = None;
    assert!(wait_until(Duration::from_secs(5), || {
        id = common::get(&d, "/api/v1/messages?dialer=dw")["items"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|m| m["id"].as_i64());
        id.is_some()
    }));
    let m = wait_state(&d, id.unwrap(), "FAILED");
    let error = m["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("outside WhatsApp's 24-hour customer-service window"),
        "{m}"
    );
    assert!(sends(&sim).is_empty(), "nothing reached Meta");

    // A message Meta delivers two days late (its webhook retried while
    // smsgate was unreachable) is stored, but opens no window.
    let old = json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "59829001000", "phone_number_id": PHONE_NUMBER_ID},
        "messages": [{"from": "59899000005", "id": "wamid.OLD1", "timestamp": "1733000000", "type": "text", "text": {"body": "hace dos días"}}]
    }}]}]});
    let (status, answer) = rt
        .block_on(sim.post_webhook(old.to_string().into_bytes(), Signing::Right))
        .unwrap();
    assert_eq!(status, 200, "{answer}");
    let (status, body) = send(
        &d,
        json!({"dialer": "dw", "to": "+59899000005", "text": "hola"}),
    );
    assert_eq!(status, 422, "{body}");
    // An agent who takes that conversation sees the window closed, and
    // its free-text reply is refused before anything is queued.
    let admin = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut r = d.http().request(method, d.url(path)).bearer_auth(ADMIN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    let (s, v) = admin(
        reqwest::Method::PUT,
        "/api/v1/agents/a1",
        Some(json!({"name": "Ana"})),
    );
    assert!((200..300).contains(&s), "{v}");
    let (s, v) = admin(
        reqwest::Method::POST,
        "/api/v1/members",
        Some(json!({"campaigns": ["ventas"], "agents": ["a1"]})),
    );
    assert!((200..300).contains(&s), "{v}");
    let (s, v) = admin(reqwest::Method::POST, "/api/v1/agents/a1/login", None);
    assert!((200..300).contains(&s), "{v}");
    let mut conversation = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            conversation =
                common::get(&d, "/api/v1/interactions?customer=%2B59899000005")["items"][0].clone();
            conversation["agent"] == "a1"
        }),
        "the late customer's conversation goes to a1: {conversation}"
    );
    let cid = conversation["id"].as_i64().unwrap();
    let detail = common::get(&d, &format!("/api/v1/interactions/{cid}"));
    assert_eq!(detail["whatsapp_window"]["open"], false, "{detail}");
    let (s, v) = admin(
        reqwest::Method::POST,
        &format!("/api/v1/interactions/{cid}/messages"),
        Some(json!({"agent": "a1", "text": "hola"})),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["code"], "outside_window", "{v}");

    // The customer writes in: free text goes, and is delivered.
    let (status, answer) = rt.block_on(sim.incoming("59899000002", "hola")).unwrap();
    assert_eq!(status, 200, "{answer}");
    let id = send_text(&d, "+59899000002", "Buen día, ¿en qué le ayudo? 😀");
    let m = wait_state(&d, id, "DELIVERED");
    assert!(
        m["gateway_ref"].as_str().unwrap().starts_with("wamid."),
        "{m}"
    );
    let sent = sends(&sim);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0],
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "59899000002", "type": "text", "text": {"preview_url": false, "body": "Buen día, ¿en qué le ayudo? 😀"}})
    );
    let req = &sim.requests()[0];
    assert_eq!(req.path, format!("/v21.0/{PHONE_NUMBER_ID}/messages"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    let window = common::get(&d, "/api/v1/whatsapp?phone=%2B59899000002");
    assert_eq!(window["gateways"][0]["window"]["open"], true, "{window}");

    // A template to a customer who never wrote.
    let id = send_template(&d, "+59899000003");
    wait_state(&d, id, "DELIVERED");
    let sent = sends(&sim);
    assert_eq!(
        sent[1]["template"],
        json!({"name": "order_update", "language": {"code": "es"}, "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "ñandú 😀"}]}]}),
        "{sent:?}"
    );
    assert_eq!(sent[1]["to"], "59899000003");
    // One Meta does not know: 132001, failed for good with Meta's words.
    let (status, body) = send(
        &d,
        json!({"dialer": "dw", "to": "+59899000004", "template": {"name": "nope", "language": "es"}}),
    );
    assert!((200..300).contains(&status), "{body}");
    let m = wait_state(&d, body["id"].as_i64().unwrap(), "FAILED");
    assert!(
        m["error"].as_str().unwrap_or_default().contains("132001"),
        "{m}"
    );
}

/// Statuses come in any order: the first final one wins, "read" without
/// "delivered" is delivered, a late "sent" is history only, "failed" is
/// UNDELIVERED with Meta's error.
#[test]
fn statuses_in_any_order_settle_on_the_first_final_one() {
    let Setup {
        rt: _rt, sim, d, ..
    } = start("");
    let cases: [(&str, &[&str], &str); 4] = [
        ("+59899000011", &["sent", "read", "delivered"], "DELIVERED"),
        ("+59899000012", &["delivered", "sent"], "DELIVERED"),
        ("+59899000013", &["sent", "read"], "DELIVERED"),
        ("+59899000014", &["sent", "failed"], "UNDELIVERED"),
    ];
    for (to, statuses, _) in &cases {
        sim.set_statuses(StatusPlan {
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            delay_ms: 30,
            to: Some(to.trim_start_matches('+').to_string()),
            ..StatusPlan::default()
        });
    }
    let ids: Vec<i64> = cases.iter().map(|(to, ..)| send_template(&d, to)).collect();
    for ((to, statuses, state), id) in cases.iter().zip(&ids) {
        let m = wait_state(&d, *id, state);
        // Every status is in the history, in the order it came.
        let mut history = Vec::new();
        assert!(
            wait_until(Duration::from_secs(5), || {
                history = message(&d, *id)["history"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                history
                    .iter()
                    .filter(|h| {
                        h["detail"]
                            .as_str()
                            .is_some_and(|d| d.starts_with("whatsapp "))
                    })
                    .count()
                    == statuses.len()
            }),
            "{to}: {history:?}"
        );
        let m2 = message(&d, *id);
        assert_eq!(
            m2["state_name"], *state,
            "{to} moved after its final state: {m2}"
        );
        if *state == "UNDELIVERED" {
            assert!(
                m.to_string().contains("131026 Message undeliverable"),
                "{m}"
            );
        }
    }
    // The late "sent" after "delivered" is noted, not a change.
    let late = message(&d, ids[1])["history"].clone();
    let sent = late
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["detail"] == "whatsapp sent")
        .unwrap_or_else(|| panic!("{late}"));
    assert_eq!(sent["kind"], "noted", "{late}");
    assert_eq!(sent["state"], "DELIVERED", "{late}");
}

/// With messaging_limit = 250, the 251st new customer's template waits in
/// its queue (not failed, no attempt spent); the use is reported by
/// /metrics and the API. A customer inside their window costs nothing.
#[test]
fn the_messaging_limit_defers_templates_to_new_customers() {
    let Setup { rt, sim, d, .. } = start("messaging_limit = 250");
    let (status, _) = rt.block_on(sim.incoming("59899200000", "hola")).unwrap();
    assert_eq!(status, 200);
    sim.set_statuses(StatusPlan {
        statuses: vec![],
        ..StatusPlan::default()
    });
    let mut csv = "dw;+59899200000;Su pedido;1;template:order_update:es;Ana;0\n".to_string();
    for i in 0..251 {
        csv.push_str(&format!(
            "dw;+598991{i:05};Su pedido;1;template:order_update:es;Ana;{i}\n"
        ));
    }
    let r = d
        .http()
        .post(d.url("/api/v1/imports?filename=limit.csv"))
        .bearer_auth(OPERATOR)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    assert!(
        wait_until(Duration::from_secs(60), || sends(&sim).len() >= 251),
        "{} sent",
        sends(&sim).len()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let sent = sends(&sim);
    assert_eq!(
        sent.len(),
        251,
        "250 new customers and one in its window; the 251st new one waits"
    );
    assert!(
        sent.iter().any(|s| s["to"] == "59899200000"),
        "inside the window: not counted"
    );
    let all = common::get(&d, "/api/v1/messages?dialer=dw&limit=500");
    let waiting: Vec<&Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state_name"] == "TO_PROCESS")
        .collect();
    assert_eq!(waiting.len(), 1, "{all}");
    assert_eq!(waiting[0]["attempts"], 0, "{}", waiting[0]);
    let metrics = common::metrics(&d);
    assert!(
        metrics
            .lines()
            .any(|l| l == "smsgate_whatsapp_messaging_limit_used{gateway=\"whatsapp\"} 250"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "smsgate_whatsapp_messaging_limit{gateway=\"whatsapp\"} 250"),
        "{metrics}"
    );
    let wa = common::get(&d, "/api/v1/whatsapp");
    assert_eq!(
        wa["gateways"][0]["messaging_limit"],
        json!({"used": 250, "limit": 250}),
        "{wa}"
    );
}

/// Meta's 190 (the token expired) stops every channel of the gateway with
/// a clear line in the journal and the reason in `smsgate status`; the
/// message waits in its queue. A timeout after Meta took a message ends
/// UNKNOWN, sent once. No secret anywhere.
#[test]
fn an_expired_token_stops_the_gateway_and_a_lost_answer_is_unknown() {
    let Setup { rt, sim, d, log } = start("");
    // Accepted, then no answer: it may have gone, and Meta cannot be asked.
    sim.inject(Injection {
        code: 0,
        http_status: None,
        times: Some(1),
        to: None,
        hang: true,
    });
    let id = send_template(&d, "+59899000021");
    let m = wait_state(&d, id, "UNKNOWN");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sends(&sim).len(), 1, "not sent twice: {m}");

    sim.inject(Injection {
        code: 190,
        http_status: None,
        times: Some(1),
        to: None,
        hang: false,
    });
    let refused = send_template(&d, "+59899000022");
    let mut channels = Value::Null;
    assert!(
        wait_until(Duration::from_secs(10), || {
            channels = common::get(&d, "/api/v1/channels");
            let wa: Vec<&Value> = channels["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["gateway"] == "whatsapp")
                .collect();
            wa.len() == 4
                && wa.iter().all(|c| {
                    c["usable"] == false
                        && c["reason"]
                            .as_str()
                            .unwrap_or("")
                            .contains("Meta refused the access token")
                })
        }),
        "every channel stops, saying why: {channels}"
    );
    let m = message(&d, refused);
    assert!(
        m["state_name"] == "TO_PROCESS" || m["state_name"] == "SENDING",
        "back in its queue, not failed: {m}"
    );
    assert_eq!(sends(&sim).len(), 2, "no more sends with a refused token");
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(table.contains("Meta refused the access token"), "{table}");
    assert!(table.contains("190"), "{table}");
    for path in [
        format!("/api/v1/messages/{refused}"),
        "/api/v1/channels".to_string(),
        "/api/v1/status".to_string(),
        "/api/v1/whatsapp".to_string(),
    ] {
        let body = d
            .http()
            .get(d.url(&path))
            .bearer_auth(ADMIN)
            .send()
            .unwrap()
            .text()
            .unwrap();
        for secret in [ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN] {
            assert!(!body.contains(secret), "{path} shows a secret: {body}");
        }
    }
    for secret in [ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN] {
        assert!(!table.contains(secret), "status shows a secret");
    }
    drop(rt);
    drop(d);
    let journal = log.text_at_end(Duration::from_secs(5));
    assert!(
        journal.contains("WhatsApp Cloud API refused our credentials"),
        "{journal}"
    );
    for secret in [ACCESS_TOKEN, APP_SECRET, VERIFY_TOKEN] {
        assert!(!journal.contains(secret), "the journal shows a secret");
    }
}

/// Every problem of a whatsapp-cloud gateway at its file:line:col, no
/// secret echoed.
#[test]
fn whatsapp_cloud_config_problems_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"[daemon]
state_dir = "/tmp/x"

[[gateway]]
name = "wa"
kind = "whatsapp-cloud"
phone_number_id = "12ab"
access_token = "EAAG-inline-secret"
app_secret_file = "/nonexistent/app.secret"
api_version = "21.0"
messaging_limit = 1000
number = "59829001000"
url = "ftp://graph.facebook.com"

[[gateway]]
name = "sms"
kind = "sim"
api_version = "v21.0"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for want in [
        ":7:19: phone_number_id is the number's id",
        ":9:19: cannot read app_secret file /nonexistent/app.secret",
        ":10:15: api_version is v<major>.<minor>",
        ":11:19: messaging_limit is one of Meta's tiers",
        ":12:10: number is our WhatsApp number in E.164",
        ":13:7: url must be http:// or https://",
        ":5:8: verify_token is missing",
        ":18:15: `api_version` is a key of gateway kind whatsapp-cloud, not of kind \"sim\"",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    assert!(!err.contains("EAAG-inline-secret"), "{err}");
}
