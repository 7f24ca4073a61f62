//! The inbound engine in the real `smsgate` process, against the simulated
//! Dinstar gateway on 127.0.0.1: customers write in on a port, the
//! campaign of that port takes them into an interaction; outside the
//! campaign's schedule the out-of-hours message goes back once per period
//! on the port they wrote to; opt-out and opt-in keywords change the DNCR
//! lists and the consent ledger and are confirmed once; conversations are
//! searched, read, downloaded and closed through the API.

mod common;
use common::runtime;

use std::time::Duration;

use common::{Daemon, OPERATOR, VIEWER, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{DinstarSim, SimHandle};

const OUT_OF_HOURS: &str = "Estamos cerrados 🌙, le respondemos mañana";
const OPT_OUT_REPLY: &str = "Baja confirmada";
const OPT_IN_REPLY: &str = "Alta confirmada";

/// A gateway of four ports and three campaigns: `noche` on port 0, whose
/// schedule is closed today (and the days around it, whatever the time
/// zone of the machine), `dia` on port 1, open all week, and `apagada` on
/// port 2, disabled. Port 3 belongs to no campaign.
fn setup(sim: &SimHandle, every_s: u64) -> String {
    let days = jiff::Timestamp::now().as_second() / 86_400;
    let mut closed = String::new();
    for d in [-1, 0, 1] {
        let date = jiff::civil::date(1970, 1, 1)
            .checked_add(jiff::Span::new().days(days + d))
            .unwrap();
        closed.push_str(&format!(
            "[[schedule.closed.exception]]\ndate = \"{date}\"\nclosed = true\n"
        ));
    }
    format!(
        r#"
[inbound]
out_of_hours_every_s = {every_s}
reply_interval_ms = 0
opt_out_reply = "{OPT_OUT_REPLY}"
opt_in_reply = "{OPT_IN_REPLY}"

[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "admin"
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 1

[[dialer]]
name = "promo"
provider = "gw"
dial = "0-3"
interval_ms = 0

[[dialer]]
name = "otro"
provider = "gw"
dial = "3"
interval_ms = 0

[schedule.closed]
time_zone = "UTC"
[[schedule.closed.window]]
days = "mon-sun"
from = "00:00"
to = "24:00"
{closed}

[schedule.open]
time_zone = "UTC"
[[schedule.open.window]]
days = "mon-sun"
from = "00:00"
to = "24:00"

[[campaign]]
name = "noche"
provider = "gw"
did_ports = ["gw:0"]
schedule = "closed"
out_of_hours_message = "{OUT_OF_HOURS}"

[[campaign]]
name = "dia"
provider = "gw"
did_ports = ["gw:1"]
schedule = "open"
out_of_hours_message = "never sent: the campaign is open"

[[campaign]]
name = "apagada"
provider = "gw"
did_ports = ["gw:2"]
enabled = false
out_of_hours_message = "never sent: the campaign is disabled"
"#,
        url = sim.base_url()
    )
}

/// The daemon's URL of `path` with `query` encoded.
fn url(d: &Daemon, path: &str, query: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(&d.url(path), query).unwrap()
}

fn get(d: &Daemon, path: &str, query: &[(&str, &str)]) -> Value {
    let r = d
        .http()
        .get(url(d, path, query))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path} {query:?}");
    r.json().unwrap()
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready(d: &Daemon) {
    d.wait_ready();
    assert!(
        wait_until(Duration::from_secs(15), || {
            items(&get(d, "/api/v1/channels", &[]))
                .iter()
                .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("gw:")))
                .all(|c| c["usable"] == true)
        }),
        "the gateway's ports are usable"
    );
}

/// Sends to `number` (digits only, as the gateway writes them) with `text`.
fn sends_to(sim: &SimHandle, digits: &str, text: &str) -> Vec<u8> {
    sim.sends()
        .into_iter()
        .filter(|s| s.number.trim_start_matches('+') == digits && s.text == text)
        .map(|s| s.port)
        .collect()
}

fn state_of(d: &Daemon, id: i64) -> String {
    get(d, &format!("/api/v1/messages/{id}"), &[])["state_name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn received_from(d: &Daemon, number: &str) -> usize {
    items(&get(d, "/api/v1/inbound", &[("number", number)])).len()
}

#[test]
fn out_of_hours_replies_once_per_period_on_the_port_the_customer_wrote_to() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let d = Daemon::start(&setup(&sim, 4), &[]);
    ready(&d);

    // Three texts in a row at night: one reply, on port 0.
    for text in ["hola", "¿hay alguien?", "hola??"] {
        sim.inject_incoming(0, "59899000111", text);
    }
    assert!(wait_until(Duration::from_secs(10), || received_from(
        &d,
        "+59899000111"
    ) == 3));
    assert!(wait_until(Duration::from_secs(10), || !sends_to(
        &sim,
        "59899000111",
        OUT_OF_HOURS
    )
    .is_empty()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sends_to(&sim, "59899000111", OUT_OF_HOURS), [0]);

    // The conversation holds the three texts and the system's reply, with
    // the reply's delivery state.
    let list = items(&get(&d, "/api/v1/interactions", &[("campaign", "noche")]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["customer"], "+59899000111");
    assert_eq!(list[0]["channel"], "gw:0");
    assert_eq!(list[0]["messages"], 4);
    let id = list[0]["id"].as_i64().unwrap();
    let detail = get(&d, &format!("/api/v1/interactions/{id}"), &[]);
    let msgs = detail["messages"].as_array().unwrap();
    let senders: Vec<&str> = msgs.iter().map(|m| m["sender"].as_str().unwrap()).collect();
    assert_eq!(senders, ["customer", "system", "customer", "customer"]);
    let reply = &msgs[1];
    assert_eq!(reply["direction"], "out");
    assert_eq!(reply["channel"], "gw:0");
    assert_eq!(reply["text"], OUT_OF_HOURS);
    let reply_id = reply["message"].as_i64().unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        matches!(state_of(&d, reply_id).as_str(), "SENT" | "DELIVERED")
    }));
    let m = get(&d, &format!("/api/v1/messages/{reply_id}"), &[]);
    assert_eq!(m["dialer"], "system:replies");
    assert!(
        m["history"].as_array().is_some_and(|h| h.len() >= 2),
        "the reply has its status history: {m}"
    );

    // The period over, the next text gets a reply again.
    std::thread::sleep(Duration::from_secs(3));
    sim.inject_incoming(0, "59899000111", "¿abren hoy?");
    assert!(wait_until(Duration::from_secs(10), || sends_to(
        &sim,
        "59899000111",
        OUT_OF_HOURS
    )
    .len()
        == 2));

    // Another customer has their own period.
    sim.inject_incoming(0, "59899000112", "buenas noches");
    assert!(wait_until(Duration::from_secs(10), || sends_to(
        &sim,
        "59899000112",
        OUT_OF_HOURS
    )
    .len()
        == 1));

    // An open campaign answers nothing on its own; a disabled campaign's
    // port and a port of no campaign are unrouted, kept and counted.
    sim.inject_incoming(1, "59899000113", "de día");
    sim.inject_incoming(2, "59899000114", "campaña apagada");
    sim.inject_incoming(3, "59899000115", "sin campaña");
    assert!(wait_until(Duration::from_secs(10), || {
        received_from(&d, "+59899000113") == 1
            && received_from(&d, "+59899000114") == 1
            && received_from(&d, "+59899000115") == 1
    }));
    let unrouted: Vec<String> = items(&get(&d, "/api/v1/inbound", &[("unrouted", "true")]))
        .iter()
        .map(|m| m["number"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        unrouted.contains(&"+59899000114".to_string()),
        "{unrouted:?}"
    );
    assert!(
        unrouted.contains(&"+59899000115".to_string()),
        "{unrouted:?}"
    );
    assert!(
        !unrouted.contains(&"+59899000113".to_string()),
        "{unrouted:?}"
    );
    let dia = items(&get(&d, "/api/v1/interactions", &[("campaign", "dia")]));
    assert_eq!(dia.len(), 1);
    assert_eq!(dia[0]["messages"], 1, "no reply in hours");
    assert!(items(&get(&d, "/api/v1/interactions", &[("campaign", "apagada")])).is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sim.sends()
            .iter()
            .all(|s| !s.text.starts_with("never sent"))
    );
    let campaign = get(&d, "/api/v1/campaigns/noche", &[]);
    assert_eq!(campaign["open_interactions"], 2);
    assert_eq!(campaign["in_schedule"], false);
    // The technician sees the campaigns at a glance.
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["noche", "yes", "no", "2", "5"]),
        "{table}"
    );
    assert!(table.contains("unrouted received: 2"), "{table}");
    let metrics = common::metrics(&d);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("smsgate_inbound_messages_total")
                && l.contains("routed=\"false\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );
}

fn consent(d: &Daemon, phone: &str) -> Value {
    get(d, "/api/v1/consent", &[("phone", phone)])
}

#[test]
fn opt_out_and_opt_in_keywords_change_the_dncr_lists_and_the_ledger() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let d = Daemon::start(&setup(&sim, 3600), &[]);
    ready(&d);
    let customer = "59899000222";

    // The dialer `promo` texts the customer.
    let first = common::send_message(&d, "promo", "+59899000222", "Oferta de la semana");
    assert!(wait_until(Duration::from_secs(10), || state_of(&d, first)
        != "TO_PROCESS"
        && state_of(&d, first) != "SENDING"));

    // "Stop." is an opt-out: the number goes on promo's list (the dialer
    // that texted it), the ledger keeps the text, and a confirmation goes
    // back on the port it came in on, though the number is now listed.
    sim.inject_incoming(1, customer, "Stop.");
    assert!(wait_until(Duration::from_secs(10), || consent(
        &d,
        "099000222"
    )["opted_out"]
        == true));
    let c = consent(&d, "099000222");
    assert_eq!(c["key"], "+59899000222");
    let history = c["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{c}");
    assert_eq!(history[0]["action"], "opt_out");
    assert_eq!(history[0]["source"], "keyword");
    assert_eq!(history[0]["dialer"], "promo");
    assert_eq!(history[0]["who"], "+59899000222");
    assert_eq!(history[0]["detail"], "Stop.");
    assert!(wait_until(Duration::from_secs(10), || sends_to(
        &sim,
        customer,
        OPT_OUT_REPLY
    ) == [1]));

    // A keyword inside a sentence is a conversation; a second STOP changes
    // nothing and is not confirmed again.
    for text in [
        "STOP this bill",
        "no me des de baja",
        "baja el precio",
        "stop",
    ] {
        sim.inject_incoming(1, customer, text);
    }
    assert!(wait_until(Duration::from_secs(10), || received_from(
        &d,
        "+59899000222"
    ) == 5));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        consent(&d, customer)["history"].as_array().unwrap().len(),
        1
    );
    assert_eq!(sends_to(&sim, customer, OPT_OUT_REPLY).len(), 1);

    // The next message from promo, in any written form, is BLOCKED; a
    // dialer that never texted the number still may.
    let blocked = common::send_message(&d, "promo", "099 000 222", "Otra oferta");
    assert!(wait_until(Duration::from_secs(10), || state_of(
        &d, blocked
    ) == "BLOCKED"));
    let other = common::send_message(&d, "otro", "+59899000222", "Su factura");
    assert!(wait_until(Duration::from_secs(10), || matches!(
        state_of(&d, other).as_str(),
        "SENT" | "DELIVERED"
    )));
    assert!(sends_to(&sim, customer, "Otra oferta").is_empty());

    // "¡Alta!" takes it back: the ledger shows both, the number is free
    // again, and the opt-in is confirmed once.
    sim.inject_incoming(1, customer, "¡Alta!");
    assert!(wait_until(Duration::from_secs(10), || consent(
        &d, customer
    )["opted_out"]
        == false));
    let c = consent(&d, "+598 99 000 222");
    let actions: Vec<&str> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["opt_out", "opt_in"], "{c}");
    assert_eq!(c["history"][1]["detail"], "¡Alta!");
    assert!(wait_until(Duration::from_secs(10), || sends_to(
        &sim,
        customer,
        OPT_IN_REPLY
    ) == [1]));
    let again = common::send_message(&d, "promo", "+59899000222", "Bienvenido de nuevo");
    assert!(wait_until(Duration::from_secs(10), || matches!(
        state_of(&d, again).as_str(),
        "SENT" | "DELIVERED"
    )));

    // The conversation holds the keywords and the confirmations, sent by
    // the system.
    let list = items(&get(
        &d,
        "/api/v1/interactions",
        &[("customer", "099000222")],
    ));
    assert_eq!(list.len(), 1);
    let detail = get(&d, &format!("/api/v1/interactions/{}", list[0]["id"]), &[]);
    let system: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender"] == "system")
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(system, [OPT_OUT_REPLY, OPT_IN_REPLY]);

    // A national registry's list names the registry and who uploaded it;
    // an operator's opt-in does not take a registry's entry back.
    let r = d
        .http()
        .post(url(
            &d,
            "/api/v1/dncr",
            &[("filename", "nollame.csv"), ("registry", "no-llame")],
        ))
        .bearer_auth(OPERATOR)
        .body("59899000333;;\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let c = consent(&d, "099000333");
    assert_eq!(c["opted_out"], true);
    assert_eq!(c["history"][0]["source"], "registry");
    assert_eq!(c["history"][0]["registry"], "no-llame");
    assert_eq!(c["history"][0]["who"], "api:operator");
    let r = d
        .http()
        .post(d.url("/api/v1/consent"))
        .bearer_auth(OPERATOR)
        .json(&json!({"phone": "099000333", "action": "opt_in"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["changed"], false);
    assert_eq!(v["opted_out"], true);

    // An operator's opt-out and a removal through the DNCR route are in
    // the ledger with the token's name, never its secret.
    let r = d
        .http()
        .post(d.url("/api/v1/consent"))
        .bearer_auth(OPERATOR)
        .json(&json!({"phone": "+59899000444", "action": "opt_out", "note": "pidió por teléfono"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["changed"], true);
    let r = d
        .http()
        .delete(d.url("/api/v1/dncr/099000444"))
        .bearer_auth(OPERATOR)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = common::metrics(&d);
    for (line, n) in [
        (
            "smsgate_consent_changes_total{action=\"opt_out\",source=\"keyword\"}",
            1,
        ),
        (
            "smsgate_consent_changes_total{action=\"opt_in\",source=\"keyword\"}",
            1,
        ),
        (
            "smsgate_consent_changes_total{action=\"opt_out\",source=\"api\"}",
            1,
        ),
        (
            "smsgate_consent_changes_total{action=\"opt_in\",source=\"api\"}",
            1,
        ),
        (
            "smsgate_automatic_replies_total{kind=\"opt_out_confirmation\"}",
            1,
        ),
        (
            "smsgate_automatic_replies_total{kind=\"opt_in_confirmation\"}",
            1,
        ),
    ] {
        assert!(
            metrics.lines().any(|l| l == format!("{line} {n}")),
            "{line} {n}: {metrics}"
        );
    }
    let c = consent(&d, "099000444");
    let rows: Vec<(String, String, String)> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["action"].as_str().unwrap().to_string(),
                h["source"].as_str().unwrap().to_string(),
                h["who"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("opt_out".into(), "api".into(), "api:operator".into()),
            ("opt_in".into(), "api".into(), "api:operator".into())
        ]
    );
    assert!(!c.to_string().contains(OPERATOR));
    let r = d
        .http()
        .get(url(&d, "/api/v1/consent", &[("phone", "abc")]))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Bad input is refused with what to fix, and changes nothing.
    let before = consent(&d, "099000555");
    for (body, code) in [
        (
            json!({"phone": "099000555", "action": "maybe"}),
            "invalid_body",
        ),
        (
            json!({"phone": "abc", "action": "opt_out"}),
            "invalid_number",
        ),
        (
            json!({"phone": "099000555", "action": "opt_out", "dialer": "nadie"}),
            "unknown_dialer",
        ),
        (
            json!({"phone": "099000555", "action": "opt_out", "note": "x".repeat(501)}),
            "invalid_body",
        ),
        (json!({"phone": "099000555"}), "invalid_body"),
    ] {
        let r = d
            .http()
            .post(d.url("/api/v1/consent"))
            .bearer_auth(OPERATOR)
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let p: Value = r.json().unwrap();
        assert_eq!(p["code"], code, "{p}");
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
    }
    let r = d
        .http()
        .post(d.url("/api/v1/consent"))
        .bearer_auth(VIEWER)
        .json(&json!({"phone": "099000555", "action": "opt_out"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = d
        .http()
        .post(url(
            &d,
            "/api/v1/dncr",
            &[("filename", "nollame2.csv"), ("registry", "no llame!")],
        ))
        .bearer_auth(OPERATOR)
        .body("59899000555;;\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["code"], "invalid_query");
    assert_eq!(consent(&d, "099000555"), before, "nothing changed");
    assert_eq!(before["opted_out"], false);
}

#[test]
fn conversations_are_searched_read_downloaded_and_closed() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let d = Daemon::start(&setup(&sim, 3600), &[]);
    ready(&d);
    let before = jiff::Timestamp::now();
    sim.inject_incoming(0, "59899000501", "=HYPERLINK(\"http://x\",\"clic\")");
    sim.inject_incoming(1, "59899000502", "hola ñandú 😀");
    sim.inject_incoming(0, "59899000503", "@SUM(1+1) y\nuna segunda línea");
    assert!(wait_until(Duration::from_secs(10), || items(&get(
        &d,
        "/api/v1/interactions",
        &[]
    ))
    .len()
        == 3));
    let after = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1);
    let (b, a) = (before.to_string(), after.to_string());
    let customers = |q: &[(&str, &str)]| -> Vec<String> {
        let mut v: Vec<String> = items(&get(&d, "/api/v1/interactions", q))
            .iter()
            .map(|i| i["customer"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let all = ["+59899000501", "+59899000502", "+59899000503"];
    assert_eq!(customers(&[]), all);
    // Each filter alone.
    assert_eq!(customers(&[("campaign", "noche")]), [all[0], all[2]]);
    assert_eq!(customers(&[("campaign", "noche,dia")]), all);
    assert_eq!(customers(&[("origin", "099000502")]), [all[1]]);
    assert_eq!(customers(&[("customer", "+598 99 000 503")]), [all[2]]);
    assert_eq!(customers(&[("from", &b)]), all);
    assert!(customers(&[("from", &a)]).is_empty());
    assert!(customers(&[("to", &b)]).is_empty());
    assert!(customers(&[("agent", "ana")]).is_empty());
    assert!(customers(&[("agent", "ana,beto")]).is_empty());
    // Together.
    assert_eq!(
        customers(&[
            ("campaign", "noche"),
            ("origin", "099000503"),
            ("from", &b),
            ("to", &a)
        ]),
        [all[2]]
    );
    assert!(customers(&[("campaign", "dia"), ("origin", "099000503")]).is_empty());
    // Paged.
    let page = get(&d, "/api/v1/interactions", &[("limit", "2")]);
    assert_eq!(items(&page).len(), 2);
    let next = page["next"].as_str().unwrap().to_string();
    let rest = get(
        &d,
        "/api/v1/interactions",
        &[("limit", "2"), ("cursor", &next)],
    );
    assert_eq!(items(&rest).len(), 1);
    assert!(rest["next"].is_null());
    let r = d
        .http()
        .get(url(&d, "/api/v1/interactions", &[("from", "yesterday")]))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Downloads: the whole conversation in each format, formulas
    // neutralised in the CSV.
    let first = items(&get(&d, "/api/v1/interactions", &[("origin", "099000501")]))[0]["id"]
        .as_i64()
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || get(
        &d,
        &format!("/api/v1/interactions/{first}"),
        &[]
    )["messages"]
        .as_array()
        .is_some_and(|m| m.len() == 2)));
    let download = |format: &str| {
        let r = d
            .http()
            .get(url(
                &d,
                &format!("/api/v1/interactions/{first}/download"),
                &[("format", format)],
            ))
            .bearer_auth(VIEWER)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{format}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        let cd = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            cd.contains(&format!("interaction-{first}.{format}")),
            "{cd}"
        );
        (ct, r.text().unwrap())
    };
    let (ct, txt) = download("txt");
    assert!(ct.starts_with("text/plain"), "{ct}");
    assert!(
        txt.contains("<- customer: =HYPERLINK(\"http://x\",\"clic\")"),
        "{txt}"
    );
    assert!(txt.contains("-> system"), "{txt}");
    assert!(txt.contains(OUT_OF_HOURS), "{txt}");
    let (ct, json_text) = download("json");
    assert_eq!(ct, "application/json");
    let j: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(j["customer"], "+59899000501");
    assert_eq!(j["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        j["messages"][0]["text"],
        "=HYPERLINK(\"http://x\",\"clic\")"
    );
    let (ct, csv) = download("csv");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two messages: {csv}");
    assert!(lines[1].contains("'+59899000501"), "{csv}");
    assert!(
        lines[1].contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"clic\"\")\""),
        "{csv}"
    );
    assert!(
        !csv.contains(",=") && !csv.contains(",+") && !csv.contains(",@"),
        "{csv}"
    );
    let third = items(&get(&d, "/api/v1/interactions", &[("origin", "099000503")]))[0]["id"]
        .as_i64()
        .unwrap();
    let r = d
        .http()
        .get(d.url(&format!("/api/v1/interactions/{third}/download?format=csv")))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    let csv = r.text().unwrap();
    assert!(csv.contains("\"'@SUM(1+1) y\nuna segunda línea\""), "{csv}");
    let r = d
        .http()
        .get(d.url(&format!("/api/v1/interactions/{first}/download?format=xml")))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Close: a viewer may not; an operator closes it once, and again
    // changes nothing; the customer's next message opens a new one.
    let close = |token: &str| {
        d.http()
            .post(d.url(&format!("/api/v1/interactions/{first}/close")))
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    assert_eq!(close(VIEWER).status(), 403);
    let r = close(OPERATOR);
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["already_closed"], false);
    assert_eq!(v["closed_by"], "api:operator");
    assert!(v["closed"].is_string());
    assert_eq!(
        close(OPERATOR).json::<Value>().unwrap()["already_closed"],
        true
    );
    assert_eq!(customers(&[("open", "false")]), [all[0]]);
    sim.inject_incoming(0, "59899000501", "vuelvo a escribir");
    assert!(wait_until(Duration::from_secs(10), || items(&get(
        &d,
        "/api/v1/interactions",
        &[("origin", "099000501")]
    ))
    .len()
        == 2));
    // origin and customer are one filter under two names: given both, an
    // interaction matches both (the OpenAPI document cannot state "equal
    // if both are given", so two different customers match nothing).
    let both = |a: &str, b: &str| {
        items(&get(
            &d,
            "/api/v1/interactions",
            &[("origin", a), ("customer", b)],
        ))
        .len()
    };
    assert_eq!(both("099000501", "+59899000501"), 2);
    assert_eq!(both("099000501", "099000502"), 0);
    let r = d
        .http()
        .get(d.url("/api/v1/interactions/999999"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    for (path, query) in [
        ("/api/v1/interactions/abc", vec![]),
        ("/api/v1/interactions", vec![("cursor", "x")]),
        ("/api/v1/interactions", vec![("open", "maybe")]),
    ] {
        let r = d
            .http()
            .get(url(&d, path, &query))
            .bearer_auth(VIEWER)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{path} {query:?}");
        let p: Value = r.json().unwrap();
        assert!(
            matches!(p["code"].as_str(), Some("invalid_query" | "invalid_path")),
            "{p}"
        );
    }
}
