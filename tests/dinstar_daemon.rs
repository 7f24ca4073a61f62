//! The `dinstar` transport in the real `smsgate` process: a kill while a
//! send is in flight, and the `probe` and `ussd` commands, against the
//! simulated gateway on 127.0.0.1.

mod common;
use common::runtime;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, OPERATOR, VIEWER, config_text, free_port, wait_until};
use smsgate::runtime::Heartbeat;
use smsgate::store::Store;
use smsgate::store::spool::{self, State};
use smsgate_sim::dinstar::{DinstarSim, SimHandle};

fn gateway_block(sim: &SimHandle, password: &str) -> String {
    format!(
        r#"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "{password}"
timeout_ms = 10000
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 1

[[dialer]]
name = "dd"
provider = "gw"
dial = "0"
interval_ms = 10
dncr = false
"#,
        url = sim.base_url()
    )
}

fn message_in(state_dir: &std::path::Path, id: i64) -> spool::Message {
    let store = Store::open(state_dir, Heartbeat::detached()).unwrap();
    let m = store
        .read_blocking(move |c| spool::get(c, id))
        .unwrap()
        .unwrap();
    store.close();
    m
}

#[test]
fn a_kill_during_sending_reconciles_by_user_id_without_a_second_send() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(&gateway_block(&sim, "admin"), &[]);
    d.wait_ready();
    let http = d.http();
    // The channel is in use once the first port poll has read port 0.
    assert!(wait_until(Duration::from_secs(10), || {
        http.get(d.url("/api/v1/channels"))
            .bearer_auth(VIEWER)
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .is_some_and(|v| {
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["id"] == "gw:0" && c["usable"] == true)
            })
    }));
    // Over the gateway's 670 characters: refused at submission.
    let r = http
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": "dd", "to": "+59899123456", "text": "a".repeat(671)}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: serde_json::Value = r.json().unwrap();
    assert_eq!(p["code"], "text_too_long");
    assert!(p["detail"].as_str().unwrap_or("").contains("670"), "{p}");
    // The gateway takes the message but answers only after 5 s: the
    // daemon dies in that window.
    sim.set_reply_delay(Duration::from_secs(5));
    let r = http
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": "dd", "to": "+59899123456", "text": "Llegó una sola vez ✅"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let id = r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || sim.sends().len() == 1),
        "the gateway got the send"
    );
    d.signal("KILL");
    d.wait_exit(Duration::from_secs(5));
    sim.set_reply_delay(Duration::ZERO);

    let state_dir = d.dir.path().join("state");
    let m = message_in(&state_dir, id);
    assert_eq!(
        m.state,
        State::Sending.code(),
        "in flight at the kill: {m:?}"
    );

    // Restart on the same state and config.
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let (config, port) = (d.config.clone(), d.port);
    drop(d);
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    let http = d.http();
    let mut last = serde_json::Value::Null;
    let left = wait_until(Duration::from_secs(15), || {
        last = http
            .get(d.url(&format!("/api/v1/messages/{id}")))
            .bearer_auth(VIEWER)
            .send()
            .ok()
            .and_then(|r| r.json().ok())
            .unwrap_or_default();
        last["state_name"] == "SENT" || last["state_name"] == "DELIVERED"
    });
    assert!(left, "reconciled as sent: {last}");
    // Give a wrong resend every chance to happen before counting.
    std::thread::sleep(Duration::from_secs(2));
    let sends = sim.sends();
    assert_eq!(sends.len(), 1, "never sent twice: {sends:?}");
    assert_eq!(
        sends[0].user_id.map(|u| u.to_string()).as_deref(),
        last["gateway_ref"].as_str()
    );
    assert_eq!(sends[0].handset_text, "Llegó una sola vez ✅");
}

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("smsgate.toml");
    std::fs::write(&path, config_text(free_port(), &dir.join("state"), extra)).unwrap();
    path
}

fn smsgate(args: &[&str], config: &std::path::Path) -> (Option<i32>, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn probe_prints_the_simulators_ports_and_fails_when_refused_or_unreachable() {
    let rt = runtime();
    let sim = rt
        .block_on(
            DinstarSim::builder()
                .ports(4)
                .credentials("admin", "s3cret-pw")
                .start(),
        )
        .unwrap();
    sim.set_port_sim(2, false);
    sim.set_port_number(0, "+59899000000");
    sim.set_port_signal(1, 11);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &gateway_block(&sim, "s3cret-pw"));
    let (code, out, err) = smsgate(&["probe", "gw"], &config);
    assert_eq!(code, Some(0), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("gateway gw"), "{out}");
    assert!(out.contains("authentication OK"), "{out}");
    let p0 = sim.port(0).unwrap();
    let line0 = out
        .lines()
        .find(|l| l.starts_with("0 "))
        .expect("port 0 row");
    assert!(
        line0.contains(&p0.imsi) && line0.contains("+59899000000") && line0.contains("REGISTER_OK"),
        "{line0}"
    );
    let line1 = out
        .lines()
        .find(|l| l.starts_with("1 "))
        .expect("port 1 row");
    assert!(line1.contains("11/31"), "{line1}");
    let line2 = out
        .lines()
        .find(|l| l.starts_with("2 "))
        .expect("port 2 row");
    assert!(
        line2.contains("NO_SIM") && line2.contains(" no "),
        "{line2}"
    );
    assert!(!out.contains("s3cret-pw") && !err.contains("s3cret-pw"));
    assert_eq!(sim.bad_auth_count(), 0);

    // A wrong password: non-zero, says so, and costs one refused login.
    let config = write_config(dir.path(), &gateway_block(&sim, "wrong-pw"));
    let (code, out, err) = smsgate(&["probe", "gw"], &config);
    assert_ne!(code, Some(0));
    assert!(out.contains("REFUSES OUR PASSWORD"), "{out}{err}");
    assert!(!out.contains("wrong-pw") && !err.contains("wrong-pw"));
    assert_eq!(sim.bad_auth_count(), 1);

    // Nobody listening.
    let dead = format!(
        r#"
[[gateway]]
name = "gone"
kind = "dinstar"
ports = 2
url = "http://127.0.0.1:{}"
user = "admin"
password = "x"
timeout_ms = 2000
"#,
        free_port()
    );
    let config = write_config(dir.path(), &dead);
    let (code, out, _) = smsgate(&["probe", "gone"], &config);
    assert_ne!(code, Some(0));
    assert!(out.contains("UNREACHABLE"), "{out}");
}

#[test]
fn ussd_prints_the_reply() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &gateway_block(&sim, "admin"));
    let (code, out, err) = smsgate(&["ussd", "gw", "1", "*100#"], &config);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("Su saldo es") && out.contains("*100#"),
        "{out}"
    );
    let sent = sim.requests_to("/api/send_ussd");
    assert!(sent.iter().any(|r| r.ports == vec![1]));
    // A port without a SIM: a clear error, non-zero.
    sim.set_port_sim(3, false);
    let (code, _, err) = smsgate(&["ussd", "gw", "3", "*100#"], &config);
    assert_ne!(code, Some(0));
    assert!(err.contains("not registered"), "{err}");
}

/// Received messages are listed by `GET /api/v1/inbound`, newest first,
/// each filter narrowing the list alone and together, paged by cursor.
#[test]
fn received_messages_are_listed_with_filters_and_pages() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let before = jiff::Timestamp::now();
    sim.inject_incoming(0, "59899111222", "Buenos días, ¿cuánto cuesta?");
    sim.inject_incoming(3, "59899111222", "¿Hola? 👋");
    sim.inject_incoming(3, "59899333444", "Gracias, Ñandú");
    sim.inject_incoming(1, "BANCO", "Su código es 1234");
    let d = Daemon::start(&gateway_block(&sim, "admin"), &[]);
    d.wait_ready();
    let http = d.http();
    let list = |query: &str| -> serde_json::Value {
        let r = http
            .get(d.url(&format!("/api/v1/inbound{query}")))
            .bearer_auth(VIEWER)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(status, 200, "{query}: {body}");
        body
    };
    let texts = |v: &serde_json::Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || list("")["items"]
            .as_array()
            .is_some_and(|a| a.len() == 4)),
        "the four messages are stored: {}",
        list("")
    );
    let all = list("");
    assert_eq!(all["next"], serde_json::Value::Null);
    let first = &all["items"][3];
    assert_eq!(first["text"], "Buenos días, ¿cuánto cuesta?");
    assert_eq!(first["gateway"], "gw");
    assert_eq!(first["port"], 0);
    assert_eq!(first["number"], "+59899111222");
    assert_eq!(first["campaign"], serde_json::Value::Null);

    // The number in another written form, alone and with a port.
    assert_eq!(texts(&list("?number=099111222")).len(), 2);
    assert_eq!(
        texts(&list("?number=%2B598%2099%20111%20222&port=3")),
        ["¿Hola? 👋"]
    );
    assert_eq!(texts(&list("?port=3")).len(), 2);
    assert_eq!(texts(&list("?number=BANCO")), ["Su código es 1234"]);
    assert_eq!(texts(&list("?gateway=gw&port=1")), ["Su código es 1234"]);
    assert!(texts(&list("?gateway=other")).is_empty());
    // No campaign takes anything yet: all unrouted.
    assert_eq!(texts(&list("?unrouted=true")).len(), 4);
    assert!(texts(&list("?unrouted=false")).is_empty());
    assert!(texts(&list("?campaign=ventas")).is_empty());
    // A time range: everything since before the test, nothing before it.
    let since = before.to_string().replace('+', "%2B");
    assert_eq!(texts(&list(&format!("?from={since}"))).len(), 4);
    assert!(texts(&list(&format!("?to={since}"))).is_empty());
    // Pages of one, newest first, to the end.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = list(&format!("?limit=1{cursor}"));
        seen.extend(texts(&page));
        match page["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(seen, texts(&all));
    // A bad time says how to write it.
    let r = http
        .get(d.url("/api/v1/inbound?from=yesterday"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let p: serde_json::Value = r.json().unwrap();
    assert_eq!(p["code"], "invalid_query");
    assert!(p["detail"].as_str().unwrap().contains("RFC 3339"), "{p}");
    // A viewer token is needed.
    let r = http.get(d.url("/api/v1/inbound")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Counted once each (however often they were polled), as unrouted.
    let metrics = http.get(d.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"smsgate_inbound_messages_total{gateway="gw",routed="false"} 4"#),
        "{metrics}"
    );
}

/// Received messages go to the enabled campaign whose DID-ports they
/// arrived on; a disabled campaign's port and an unclaimed port leave them
/// unrouted, kept and counted. The campaigns route shows each campaign's
/// configuration and what it received.
#[test]
fn received_messages_are_routed_by_did_port_and_campaigns_are_listed() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    for (port, text) in [(0u8, "uno"), (1, "dos"), (2, "tres"), (3, "cuatro")] {
        sim.inject_incoming(port, "59899111222", text);
    }
    let config = format!(
        r#"{}
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0", "gw:3"]
canned_responses = ["Gracias por escribirnos."]

[[campaign]]
name = "pausada"
provider = "gw"
did_ports = ["gw:1"]
enabled = false
"#,
        gateway_block(&sim, "admin")
    );
    let d = Daemon::start(&config, &[]);
    d.wait_ready();
    let http = d.http();
    let get = |path: &str| -> (u16, serde_json::Value) {
        let r = http.get(d.url(path)).bearer_auth(VIEWER).send().unwrap();
        (r.status().as_u16(), r.json().unwrap_or_default())
    };
    let texts = |path: &str| -> Vec<String> {
        let mut t: Vec<String> = get(path).1["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect();
        t.sort();
        t
    };
    assert!(
        wait_until(Duration::from_secs(10), || texts("/api/v1/inbound").len()
            == 4),
        "{:?}",
        get("/api/v1/inbound")
    );
    assert_eq!(texts("/api/v1/inbound?campaign=ventas"), ["cuatro", "uno"]);
    assert_eq!(texts("/api/v1/inbound?unrouted=true"), ["dos", "tres"]);
    assert!(texts("/api/v1/inbound?campaign=pausada").is_empty());

    let (status, list) = get("/api/v1/campaigns");
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["unrouted"], 2, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let (status, ventas) = get("/api/v1/campaigns/ventas");
    assert_eq!(status, 200, "{ventas}");
    assert_eq!(ventas, items[0]);
    assert_eq!(ventas["received"], 2);
    assert_eq!(ventas["did_ports"], serde_json::json!(["gw:0", "gw:3"]));
    assert_eq!(ventas["strategy"], "round_robin");
    assert_eq!(ventas["enabled"], true);
    assert_eq!(ventas["in_schedule"], true);
    assert_eq!(ventas["service_level_percent"], 80);
    assert_eq!(
        ventas["canned_responses"],
        serde_json::json!(["Gracias por escribirnos."])
    );
    assert_eq!(items[1]["name"], "pausada");
    assert_eq!(items[1]["enabled"], false);
    assert_eq!(items[1]["received"], 0);
    let (status, p) = get("/api/v1/campaigns/nope");
    assert_eq!(status, 404, "{p}");

    let metrics = http.get(d.url("/metrics")).send().unwrap().text().unwrap();
    for (routed, n) in [("true", 2), ("false", 2)] {
        let line =
            format!(r#"smsgate_inbound_messages_total{{gateway="gw",routed="{routed}"}} {n}"#);
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
}
