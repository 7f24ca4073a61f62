//! Receiving, end to end (issue 12): the real `smsgate` process against
//! the Dinstar simulator (pushing to the daemon's push route and answering
//! its polls on 127.0.0.1) and the fake modem on a real pty. Each message
//! is stored once however it comes (push, poll, both, a retried push),
//! multi-part messages arrive as one text (+CMTI, +CMT, Dinstar), routing
//! by DID-port and by our number, unrouted messages kept, listed and
//! counted, the list's filters and pages, and the status history of sent
//! messages whose reports come late or fail on one part.

mod common;
use common::runtime;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, VIEWER, config_text, free_port, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{Arrival, DinstarSim, IncomingSchedule, SimHandle};
use smsgate_sim::modem::{FakeModem, ModemState, ReceiveSchedule};

/// A Dinstar gateway; `push` takes pushes from 127.0.0.1.
fn dinstar_gateway(name: &str, sim: &SimHandle, push: bool, incoming_poll_s: u64) -> String {
    format!(
        r#"
[[gateway]]
name = "{name}"
kind = "dinstar"
ports = {ports}
url = "{url}"
user = "admin"
password = "admin"
timeout_ms = 5000
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = {incoming_poll_s}
{push}
"#,
        ports = sim.port_count(),
        url = sim.base_url(),
        push = if push {
            r#"push_allow = ["127.0.0.1"]"#
        } else {
            ""
        },
    )
}

fn modem_gateway(link: &Path) -> String {
    format!(
        r#"
[[gateway]]
name = "modem1"
kind = "at"
device = "{}"
timeout_ms = 1500
port_poll_s = 1
send_timeout_s = 5
"#,
        link.display()
    )
}

fn push_url(port: u16, gateway: &str) -> String {
    format!("http://127.0.0.1:{port}/api/v1/gateways/{gateway}/push")
}

/// The daemon on `port`, known before it starts so the simulators can
/// push to it.
fn start_on(port: u16, extra: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("smsgate.toml");
    std::fs::write(&config, config_text(port, &dir.path().join("state"), extra)).unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    d
}

fn get(d: &Daemon, path: &str) -> (u16, Value) {
    let r = d
        .http()
        .get(d.url(path))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

/// One page of `GET /api/v1/inbound{query}`.
fn inbound(d: &Daemon, query: &str) -> Value {
    let (status, body) = get(d, &format!("/api/v1/inbound{query}"));
    assert_eq!(status, 200, "{query}: {body}");
    body
}

/// The texts of one page, sorted.
fn texts(d: &Daemon, query: &str) -> Vec<String> {
    let mut t: Vec<String> = inbound(d, query)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

fn wait_count(d: &Daemon, query: &str, n: usize, within: Duration) {
    assert!(
        wait_until(within, || texts(d, query).len() >= n),
        "{n} received messages for {query:?} within {within:?}: {}",
        inbound(d, query)
    );
}

/// `smsgate_inbound_messages_total{gateway,routed}` now.
fn counted(d: &Daemon, gateway: &str, routed: bool) -> Option<u64> {
    let text = common::metrics(d);
    let head =
        format!(r#"smsgate_inbound_messages_total{{gateway="{gateway}",routed="{routed}"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .map(|n| n.trim().parse().unwrap())
}

/// One number from the daemon's database (read-only, beside the daemon).
fn db_count(d: &Daemon, sql: &str) -> i64 {
    let db = d.dir.path().join("state").join("smsgate.db");
    let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The `incoming_sms_id` a recorded `query_incoming_sms` asked from.
fn asked_from(r: &smsgate_sim::dinstar::RecordedRequest) -> Option<u64> {
    let q = r.query.as_deref().unwrap_or("");
    q.split('&')
        .find_map(|kv| kv.strip_prefix("incoming_sms_id="))
        .and_then(|v| v.parse().ok())
        .or_else(|| {
            r.body
                .as_ref()
                .and_then(|b| b.get("incoming_sms_id"))
                .and_then(Value::as_u64)
        })
}

/// Waits until the daemon has polled `sim`'s received messages once.
fn wait_first_poll(sim: &SimHandle) {
    assert!(
        wait_until(Duration::from_secs(10), || !sim
            .requests_to("/api/query_incoming_sms")
            .is_empty()),
        "the daemon never polled the received messages"
    );
}

/// A three-part UCS-2 text (emoji and accents outside GSM 7-bit), whose
/// parts split inside words and next to the emoji.
fn three_part_text(tag: &str) -> String {
    let text = format!(
        "¡Hola! Soy la ñandú 😀 de Piriápolis ({tag}). Quiero saber si el pedido 4471 sale mañana \
         o pasado, y si el envío al interior cuesta lo mismo 🚚. ¿Me avisan por acá? Gracias, ñandú 🙏🏽 fin"
    );
    assert_eq!(
        smsgate_sim::modem::deliver_pdus("+59899000000", &text, 1).len(),
        3,
        "{} UTF-16 units",
        text.encode_utf16().count()
    );
    text
}

// ------------------------------------------------ push, poll, duplicates

/// Three Dinstar gateways in one daemon: one delivers by push alone (its
/// poll is an hour away), one by polling alone (no push URL), one both
/// ways. Every message is stored once and evented once; a retried push
/// adds nothing.
#[test]
fn push_and_poll_both_deliver_and_each_message_is_stored_once() {
    let rt = runtime();
    let port = free_port();
    let sim = |sn: &str, push: Option<&str>| {
        rt.block_on(
            DinstarSim::builder()
                .ports(2)
                .sn(sn)
                .push_url(push.map(|g| push_url(port, g)))
                .start(),
        )
        .unwrap()
    };
    let push = sim("push-0001", Some("gwpush"));
    let poll = sim("poll-0001", None);
    let both = sim("both-0001", Some("gwboth"));
    let d = start_on(
        port,
        &[
            dinstar_gateway("gwpush", &push, true, 3600),
            dinstar_gateway("gwpoll", &poll, false, 1),
            dinstar_gateway("gwboth", &both, true, 1),
        ]
        .concat(),
    );
    for s in [&push, &poll, &both] {
        wait_first_poll(s);
    }
    let injected_at = Instant::now();
    for (s, name) in [(&push, "push"), (&poll, "poll"), (&both, "both")] {
        s.inject_incoming(0, "59899100001", &format!("{name}: uno"));
        s.inject_incoming(1, "59899100002", &format!("{name}: dos 😀"));
    }
    wait_count(&d, "", 6, Duration::from_secs(15));
    let all = texts(&d, "");
    assert_eq!(
        all,
        [
            "both: dos 😀",
            "both: uno",
            "poll: dos 😀",
            "poll: uno",
            "push: dos 😀",
            "push: uno"
        ]
    );
    // gwpush had only its pushes: no poll since the messages came.
    assert!(
        push.requests_to("/api/query_incoming_sms")
            .iter()
            .all(|r| r.at < injected_at),
        "gwpush polled after the injection; the push is not what delivered"
    );
    let sms_pushes = |s: &SimHandle| -> Vec<_> {
        s.pushes()
            .into_iter()
            .filter(|p| p.body.get("sms").is_some())
            .collect()
    };
    assert!(
        sms_pushes(&push).iter().all(|p| p.outcome == Ok(200)) && sms_pushes(&push).len() == 2,
        "{:?}",
        sms_pushes(&push)
    );
    // gwboth: pushed, and polled too: the poller asked from below them
    // and moved its mark past both once they were (already) stored.
    assert!(sms_pushes(&both).iter().all(|p| p.outcome == Ok(200)));
    assert!(
        wait_until(Duration::from_secs(10), || both
            .requests_to("/api/query_incoming_sms")
            .iter()
            .any(|r| r.at > injected_at && asked_from(r) == Some(2))),
        "gwboth's poller never took the pushed messages: {:?}",
        both.requests_to("/api/query_incoming_sms")
            .iter()
            .map(|r| r.query.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        both.requests_to("/api/query_incoming_sms")
            .iter()
            .any(|r| r.at > injected_at && asked_from(r) == Some(0)),
        "gwboth's poller fetched the pushed messages"
    );

    // A retried push: the gateway posts the same message again.
    let first = sms_pushes(&push)[0].body.clone();
    let r = d
        .http()
        .post(d.url("/api/v1/gateways/gwpush/push"))
        .json(&first)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Events are taken in order: once a later message is stored, the
    // retried one has been handled.
    push.inject_incoming(0, "59899100003", "push: tres");
    wait_count(&d, "?gateway=gwpush", 3, Duration::from_secs(10));
    assert_eq!(texts(&d, "").len(), 7, "{}", inbound(&d, ""));
    assert_eq!(
        db_count(
            &d,
            "SELECT count(*) FROM event WHERE kind = 'message.received'"
        ),
        7,
        "one event per message"
    );
    for (gw, n) in [("gwpush", 3), ("gwpoll", 2), ("gwboth", 2)] {
        assert_eq!(counted(&d, gw, false), Some(n), "{gw}");
    }
    // Polls keep coming on the polled gateways; nothing more is stored.
    let polls = both.requests_to("/api/query_incoming_sms").len();
    assert!(wait_until(Duration::from_secs(5), || both
        .requests_to("/api/query_incoming_sms")
        .len()
        >= polls + 2));
    assert_eq!(
        db_count(&d, "SELECT count(*) FROM inbound"),
        7,
        "every message once"
    );
}

// ------------------------------------------------------- multi-part

/// A three-part message with emoji and ñ arrives as one text through the
/// fake modem, stored on the SIM and announced (+CMTI, then read and
/// deleted) and handed over directly (+CMT, two senders' parts interleaved
/// under the same reference), and through Dinstar.
#[test]
fn a_three_part_message_arrives_whole_through_the_modem_and_dinstar() {
    let rt = runtime();
    let port = free_port();
    let sim = rt
        .block_on(
            DinstarSim::builder()
                .ports(2)
                .push_url(Some(push_url(port, "gw")))
                .start(),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGSM0");
    let modem = FakeModem::start(&link, ModemState::default()).unwrap();
    let d = start_on(
        port,
        &[
            dinstar_gateway("gw", &sim, true, 3600),
            modem_gateway(&link),
        ]
        .concat(),
    );
    wait_first_poll(&sim);
    // The modem session is set up: new messages are announced by +CMTI.
    assert!(
        wait_until(Duration::from_secs(15), || {
            let st = modem.state();
            st.cnmi[1] == 1 && st.commands.iter().any(|c| c == "AT+CMGL=4")
        }),
        "the modem was never set up"
    );
    let cmgr = || {
        modem
            .state()
            .commands
            .iter()
            .filter(|c| c.starts_with("AT+CMGR="))
            .count()
    };

    // +CMTI: stored on the SIM, read part by part, deleted once stored.
    let a = three_part_text("por el SIM");
    let before = cmgr();
    let pdus = modem.receive("+59899200001", &a, 7);
    assert_eq!(pdus.len(), 3);
    wait_count(&d, "?gateway=modem1", 1, Duration::from_secs(15));
    let got = &inbound(&d, "?gateway=modem1")["items"][0];
    assert_eq!(got["text"], a.as_str());
    assert_eq!(got["sender"], "+59899200001");
    assert_eq!(got["number"], "+59899200001");
    assert_eq!(cmgr() - before, 3, "each part read from the SIM");
    assert!(
        wait_until(Duration::from_secs(5), || modem.state().stored().is_empty()),
        "the parts stay on the SIM: {:?}",
        modem.state().stored()
    );

    // +CMT: the PDUs come with the announcement, nothing on the SIM. Two
    // customers' messages with the same reference, parts interleaved.
    modem.state().deliver_direct = true;
    let (b, c) = (three_part_text("directo, B"), three_part_text("directo, C"));
    let pb = smsgate_sim::modem::deliver_pdus("+59899200002", &b, 9);
    let pc = smsgate_sim::modem::deliver_pdus("+59899200003", &c, 9);
    for i in [0usize, 1, 2] {
        modem.receive_pdu(&pc[2 - i]);
        modem.receive_pdu(&pb[i]);
    }
    wait_count(&d, "?gateway=modem1", 3, Duration::from_secs(15));
    let mut want = vec![a.clone(), b.clone(), c.clone()];
    want.sort();
    assert_eq!(texts(&d, "?gateway=modem1"), want);
    assert_eq!(texts(&d, "?gateway=modem1&number=%2B59899200003"), [c]);
    assert_eq!(cmgr() - before, 3, "+CMT parts are not read from the SIM");
    assert!(modem.state().stored().is_empty());

    // The modem's schedule, stored and announced again: a short message
    // and a long one, from two customers in turn.
    modem.state().deliver_direct = false;
    let long = three_part_text("programado");
    modem
        .receive_every(ReceiveSchedule {
            every: Duration::from_millis(200),
            from: vec!["+59899200005".into(), "+59899200006".into()],
            texts: vec!["corto ñ".into(), long.clone()],
            count: Some(2),
            first_ref: 30,
        })
        .unwrap();
    wait_count(&d, "?gateway=modem1", 5, Duration::from_secs(15));
    assert_eq!(texts(&d, "?number=%2B59899200005"), ["corto ñ"]);
    assert_eq!(texts(&d, "?number=%2B59899200006"), [long]);
    assert_eq!(cmgr() - before, 7, "1 + 3 parts read from the SIM");

    // Dinstar: the box hands over the whole text.
    let dtext = three_part_text("por Dinstar");
    sim.inject_incoming_on(&Arrival::Port(1), "59899200004", &dtext)
        .unwrap();
    wait_count(&d, "?gateway=gw", 1, Duration::from_secs(10));
    let got = &inbound(&d, "?gateway=gw")["items"][0];
    assert_eq!(got["text"], dtext.as_str());
    assert_eq!(got["port"], 1);
    assert_eq!(got["number"], "+59899200004");
    assert_eq!(counted(&d, "modem1", false), Some(5));
    assert_eq!(counted(&d, "gw", false), Some(1));
}

// ------------------------------------------- routing, filters, pages

/// Two campaigns on two ports of one gateway, one on our number (the SIM's
/// number the gateway reports), a disabled one whose traffic is unrouted;
/// what each took, the unrouted message listed and counted, and the list's
/// filters and pages. Customers write in through the simulator's control
/// route and its schedule.
#[test]
fn messages_are_routed_by_did_port_and_number_and_listed_with_filters() {
    let rt = runtime();
    let port = free_port();
    let sim = rt
        .block_on(
            DinstarSim::builder()
                .ports(4)
                .push_url(Some(push_url(port, "gw")))
                .start(),
        )
        .unwrap();
    sim.set_port_number(2, "+59829001000");
    let campaigns = r#"
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0"]

[[campaign]]
name = "soporte"
provider = "gw"
did_ports = ["gw:1"]

[[campaign]]
name = "linea"
provider = "gw"
did_ports = ["+59829001000"]

[[campaign]]
name = "pausada"
provider = "gw"
did_ports = ["gw:3"]
enabled = false
"#;
    let d = start_on(
        port,
        &format!("{}{campaigns}", dinstar_gateway("gw", &sim, true, 1)),
    );
    wait_first_poll(&sim);
    // The gateway's port 2 reports its SIM's number.
    assert!(
        wait_until(Duration::from_secs(10), || {
            get(&d, "/api/v1/channels").1["items"]
                .as_array()
                .is_some_and(|a| {
                    a.iter().any(|c| {
                        c["gateway"] == "gw"
                            && c["port"] == 2
                            && c["health"]["number"] == "+59829001000"
                    })
                })
        }),
        "{}",
        get(&d, "/api/v1/channels").1
    );
    let http = d.http();
    let write_in = |body: Value| -> (u16, Value) {
        let r = http
            .post(format!("{}/sim/incoming", sim.base_url()))
            .json(&body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    // An unknown number is refused, clearly.
    let (status, e) = write_in(json!({"number": "+59829009999", "from": "1", "text": "x"}));
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("+59829009999"), "{e}");

    // The first batch: one message each way in.
    for body in [
        json!({"port": 0, "from": "099100001", "text": "v1"}),
        json!({"port": 1, "from": "099100002", "text": "s1"}),
        json!({"number": "+598 2900 1000", "from": "099100003", "text": "l1"}),
        json!({"port": 3, "from": "099100004", "text": "p1"}),
    ] {
        let (status, r) = write_in(body);
        assert_eq!(status, 200, "{r}");
    }
    assert_eq!(
        write_in(json!({"number": "59829001000", "from": "1", "text": "l0"})).1["port"],
        2,
        "a number selects its port"
    );
    wait_count(&d, "", 5, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(50));
    let between = jiff::Timestamp::now();
    std::thread::sleep(Duration::from_millis(50));

    // The second batch: a schedule on our number, and one more on port 0.
    let (status, r) = write_in(json!({
        "number": "+59829001000", "every_s": 0.1, "count": 3,
        "senders": ["099100005", "099100006"], "texts": ["l2", "l3", "l4"],
    }));
    assert_eq!(status, 200, "{r}");
    let schedule = sim
        .schedule_incoming(IncomingSchedule {
            on: Arrival::Port(0),
            every: Duration::from_millis(100),
            from: vec!["+59899100001".into()],
            texts: vec!["v2".into()],
            count: Some(1),
        })
        .unwrap();
    wait_count(&d, "", 9, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(schedule.injected(), 1);
    assert_eq!(texts(&d, "").len(), 9, "the schedules ended");

    // What each campaign took; the disabled one nothing.
    assert_eq!(texts(&d, "?campaign=ventas"), ["v1", "v2"]);
    assert_eq!(texts(&d, "?campaign=soporte"), ["s1"]);
    assert_eq!(texts(&d, "?campaign=linea"), ["l0", "l1", "l2", "l3", "l4"]);
    assert!(texts(&d, "?campaign=pausada").is_empty());
    assert_eq!(texts(&d, "?unrouted=true"), ["p1"]);
    assert_eq!(texts(&d, "?unrouted=false").len(), 8);
    let linea = inbound(&d, "?campaign=linea");
    assert!(
        linea["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["recipient"] == "+59829001000" && m["port"] == 2),
        "{linea}"
    );
    for (name, n) in [("ventas", 2), ("soporte", 1), ("linea", 5), ("pausada", 0)] {
        let (status, c) = get(&d, &format!("/api/v1/campaigns/{name}"));
        assert_eq!(status, 200, "{c}");
        assert_eq!(c["received"], n, "{name}: {c}");
    }
    assert_eq!(get(&d, "/api/v1/campaigns").1["unrouted"], 1);
    assert_eq!(counted(&d, "gw", true), Some(8));
    assert_eq!(counted(&d, "gw", false), Some(1));

    // Filters.
    assert_eq!(texts(&d, "?gateway=gw").len(), 9);
    assert!(texts(&d, "?gateway=nope").is_empty());
    assert_eq!(texts(&d, "?port=2"), ["l0", "l1", "l2", "l3", "l4"]);
    assert_eq!(texts(&d, "?port=3"), ["p1"]);
    // The sender in another written form (national, then E.164).
    assert_eq!(texts(&d, "?number=099100001"), ["v1", "v2"]);
    assert_eq!(texts(&d, "?number=%2B59899100005"), ["l2", "l4"]);
    assert_eq!(texts(&d, "?port=2&number=099100006"), ["l3"]);
    let at = between.to_string().replace('+', "%2B");
    assert_eq!(texts(&d, &format!("?from={at}")), ["l2", "l3", "l4", "v2"]);
    assert_eq!(
        texts(&d, &format!("?to={at}")),
        ["l0", "l1", "p1", "s1", "v1"]
    );
    assert_eq!(texts(&d, &format!("?to={at}&campaign=linea")), ["l0", "l1"]);
    // Pages of two, newest first, to the end: every message once.
    let all: Vec<Value> = inbound(&d, "")["items"].as_array().unwrap().clone();
    let mut paged = Vec::new();
    let mut pages = 0;
    let mut cursor = String::new();
    loop {
        let page = inbound(&d, &format!("?limit=2{cursor}"));
        pages += 1;
        paged.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(paged, all);
    assert_eq!(pages, 5);
    let ids: Vec<i64> = all.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
}

// ------------------------------------------------------ status history

fn message(d: &Daemon, id: i64) -> Value {
    let (status, m) = get(d, &format!("/api/v1/messages/{id}"));
    assert_eq!(status, 200, "{m}");
    m
}

fn wait_state(d: &Daemon, id: i64, state: &str, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let m = message(d, id);
        if m["state_name"] == state {
            return m;
        }
        assert!(t.elapsed() < within, "message {id} not {state}: {m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The history's changes of state as (from, to) state names, after its
/// first entry, the queueing, which is checked here: from nothing to
/// TO_PROCESS, at the message's creation, on no channel.
fn moves(m: &Value) -> Vec<(String, String)> {
    let h = m["history"].as_array().unwrap();
    let first = &h[0];
    assert_eq!(first["kind"], "queued", "{m}");
    assert!(first["from"].is_null(), "{m}");
    assert_eq!(first["state"], "TO_PROCESS", "{m}");
    assert!(first["channel"].is_null(), "{m}");
    let (at, created) = (
        first["at"].as_i64().unwrap(),
        m["created_at"].as_i64().unwrap(),
    );
    assert!(at <= created && at > created - 1000, "{m}");
    h[1..]
        .iter()
        .filter(|c| c["kind"] == "changed")
        .map(|c| {
            (
                c["from"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The reports noted in the history (they changed nothing): (the state
/// the message was and stayed in, the report's words), in order.
fn noted(m: &Value) -> Vec<(String, String)> {
    m["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "noted")
        .map(|c| {
            assert_eq!(c["from"], c["state"], "{m}");
            (
                c["state"].as_str().unwrap().to_string(),
                c["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The history's entries as (kind, state), to check the order of changes
/// and notes.
fn kinds(m: &Value) -> Vec<(String, String)> {
    m["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn detail_of<'a>(m: &'a Value, state: &str) -> &'a str {
    m["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["state"] == state && c["kind"] == "changed")
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_else(|| panic!("no {state} with a detail in {m}"))
}

fn wait_noted(d: &Daemon, id: i64, n: usize, within: Duration) -> Value {
    let t = Instant::now();
    loop {
        let m = message(d, id);
        if noted(&m).len() >= n {
            return m;
        }
        assert!(
            t.elapsed() < within,
            "message {id} has not {n} reports noted: {m}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Through the Dinstar simulator: a pending report (TP-Status 48, read
/// again at every poll) is noted once while the message stays SENT; a
/// report that fails after DELIVERED, a delivered one after UNDELIVERED,
/// and a result pushed again after DELIVERED move nothing. The history
/// holds the queueing, every state the message went through, in order,
/// with the report that moved it, and each report that changed nothing
/// with its code.
#[test]
fn late_reports_never_move_a_final_state_and_the_history_keeps_each_change() {
    let rt = runtime();
    let port = free_port();
    let sim = rt
        .block_on(
            DinstarSim::builder()
                .ports(1)
                .push_url(Some(push_url(port, "gw")))
                // Reports only when the test says.
                .deliver_delay(None)
                .start(),
        )
        .unwrap();
    let dialer = r#"
[[dialer]]
name = "dd"
provider = "gw"
dial = "0"
interval_ms = 10
dncr = false
"#;
    let d = start_on(
        port,
        &format!("{}{dialer}", dinstar_gateway("gw", &sim, true, 1)),
    );
    let a = common::send_message(&d, "dd", "+59899300001", "mensaje A");
    let b = common::send_message(&d, "dd", "+59899300002", "mensaje B");
    wait_state(&d, a, "SENT", Duration::from_secs(15));
    wait_state(&d, b, "SENT", Duration::from_secs(15));
    let user_id = |text: &str| {
        sim.sends()
            .into_iter()
            .find(|s| s.text == text)
            .and_then(|s| s.user_id)
            .unwrap()
    };
    let (ua, ub) = (user_id("mensaje A"), user_id("mensaje B"));
    // Waits until the daemon took every push the simulator made so far.
    let pushed = || {
        let n = sim.pushes().len();
        move |sim: &SimHandle| {
            assert!(
                wait_until(Duration::from_secs(5), || {
                    let p = sim.pushes();
                    p.len() > n && p[n..].iter().all(|p| p.outcome == Ok(200))
                }),
                "{:?}",
                sim.pushes()
            );
        }
    };

    // A: still pending (the SMSC keeps trying), then delivered, then a late
    // failure report.
    assert!(sim.deliver(ua, 48));
    let ma = wait_noted(&d, a, 1, Duration::from_secs(10));
    assert_eq!(ma["state_name"], "SENT", "{ma}");
    // The poller reads the pending report again every 200 ms: still one.
    std::thread::sleep(Duration::from_secs(1));
    let ma = message(&d, a);
    assert_eq!(ma["state_name"], "SENT", "{ma}");
    let s = |x: &str| x.to_string();
    assert_eq!(
        noted(&ma),
        [(
            s("SENT"),
            s("delivery report: not delivered yet, the network is still trying (status 48)")
        )],
        "{ma}"
    );
    assert!(sim.deliver(ua, 0));
    let ma = wait_state(&d, a, "DELIVERED", Duration::from_secs(10));
    let before = moves(&ma);
    let wait = pushed();
    assert!(sim.deliver(ua, 100));
    wait(&sim);
    // B: undelivered, then a late delivered report.
    assert!(sim.deliver(ub, 100));
    let mb = wait_state(&d, b, "UNDELIVERED", Duration::from_secs(10));
    let wait = pushed();
    assert!(sim.deliver(ub, 0));
    wait(&sim);
    // A's result pushed again (sent after delivered).
    let result = sim
        .pushes()
        .into_iter()
        .find(|p| p.body.get("sms_result").is_some())
        .unwrap()
        .body;
    let r = d
        .http()
        .post(d.url("/api/v1/gateways/gw/push"))
        .json(&result)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Longer than the daemon tries to match a report to its message.
    std::thread::sleep(Duration::from_secs(3));

    let ma = message(&d, a);
    assert_eq!(ma["state_name"], "DELIVERED", "{ma}");
    assert_eq!(moves(&ma), before, "no change added: {ma}");
    assert_eq!(
        moves(&ma),
        [
            (s("TO_PROCESS"), s("SENDING")),
            (s("SENDING"), s("SENT")),
            (s("SENT"), s("DELIVERED")),
        ],
        "{ma}"
    );
    assert_eq!(
        noted(&ma),
        [
            (
                s("SENT"),
                s("delivery report: not delivered yet, the network is still trying (status 48)")
            ),
            (
                s("DELIVERED"),
                s("late delivery report: not delivered (status 100)")
            ),
        ],
        "the pending and the late report, once each; the result pushed again is not a report: {ma}"
    );
    assert_eq!(
        kinds(&ma),
        [
            (s("queued"), s("TO_PROCESS")),
            (s("changed"), s("SENDING")),
            (s("changed"), s("SENT")),
            (s("noted"), s("SENT")),
            (s("changed"), s("DELIVERED")),
            (s("noted"), s("DELIVERED")),
        ],
        "{ma}"
    );
    assert!(
        ma["history"].as_array().unwrap()[1..]
            .iter()
            .all(|c| c["channel"] == "gw:0"),
        "{ma}"
    );
    assert!(
        detail_of(&ma, "DELIVERED").contains("received by the handset (status 0)"),
        "{ma}"
    );

    let mb2 = message(&d, b);
    assert_eq!(mb2["state_name"], "UNDELIVERED", "{mb2}");
    assert_eq!(moves(&mb2), moves(&mb), "{mb2}");
    assert_eq!(moves(&mb2).last().unwrap(), &(s("SENT"), s("UNDELIVERED")));
    assert!(
        detail_of(&mb2, "UNDELIVERED").contains("status 100"),
        "{mb2}"
    );
    assert_eq!(
        noted(&mb2),
        [(
            s("UNDELIVERED"),
            s("late delivery report: received by the handset (status 0)")
        )],
        "{mb2}"
    );
    // Notes are not changes of state: no message.state event for them,
    // one for each change.
    for (id, changes) in [(a, 3), (b, 3)] {
        let events = db_count(
            &d,
            &format!(
                "SELECT count(*) FROM event WHERE kind = 'message.state' \
                 AND json_extract(data, '$.message') = {id}"
            ),
        );
        assert_eq!(events, changes, "message {id}");
    }
}

/// Through the fake modem: a three-part message whose first part's status
/// report is temporary (the service centre still trying), whose second
/// part's is a permanent failure, and whose third part is delivered after
/// that: UNDELIVERED, the temporary report noted while it was SENT, and
/// part three's report noted after, changing nothing.
#[test]
fn a_multi_part_message_whose_second_part_fails_is_undelivered() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGSM0");
    let mut st = ModemState::default();
    // 0x20: congestion, still trying; 0x41: incompatible destination,
    // permanent (TS 23.040 9.2.3.15).
    st.report_script = [0x20, 0x41, 0x00].into();
    // Time for the message to be SENT before the first report.
    st.report_delay = Duration::from_millis(500);
    let modem = FakeModem::start(&link, st).unwrap();
    let dialer = r#"
[[dialer]]
name = "gsm"
provider = "modem1"
dial = "0"
interval_ms = 10
dncr = false
"#;
    let d = start_on(free_port(), &format!("{}{dialer}", modem_gateway(&link)));
    let text = three_part_text("saliente");
    let id = common::send_message(&d, "gsm", "+59899400001", &text);
    let m = wait_state(&d, id, "UNDELIVERED", Duration::from_secs(30));
    assert_eq!(modem.state().submits().len(), 3, "three parts went out");
    // Part three's delivered report comes after part two's failure.
    let later = wait_noted(&d, id, 2, Duration::from_secs(10));
    assert!(modem.state().report_script.is_empty(), "all three reported");
    assert_eq!(later["state_name"], "UNDELIVERED", "{later}");
    assert_eq!(moves(&later), moves(&m));
    let s = |x: &str| x.to_string();
    assert_eq!(
        moves(&later),
        [
            (s("TO_PROCESS"), s("SENDING")),
            (s("SENDING"), s("SENT")),
            (s("SENT"), s("UNDELIVERED")),
        ],
        "{later}"
    );
    let detail = detail_of(&later, "UNDELIVERED");
    assert!(
        detail.contains("part 2") && detail.contains("0x41"),
        "{detail}"
    );
    assert_eq!(
        noted(&later),
        [
            (
                s("SENT"),
                s("part 1 of 3: congestion; still trying (TP-ST 0x20)")
            ),
            (
                s("UNDELIVERED"),
                s(
                    "late report, part 3 of 3: received by the recipient (TP-ST 0x00); the message was already settled"
                )
            ),
        ],
        "{later}"
    );
    assert_eq!(
        kinds(&later)[3..],
        [
            (s("noted"), s("SENT")),
            (s("changed"), s("UNDELIVERED")),
            (s("noted"), s("UNDELIVERED")),
        ],
        "{later}"
    );
}
