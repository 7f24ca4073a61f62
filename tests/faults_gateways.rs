//! The fault matrix, gateway side (docs/failure-modes.md, "Fault matrix"):
//! each fault of a gateway or provider, met by the real daemon process
//! against our simulators on 127.0.0.1 (a pseudo-terminal for the modem),
//! with a real SQLite store. Every test shows three things:
//! (a) no message lost: each one accepted ends SENT/DELIVERED, or in the
//!     state the fault calls for (UNKNOWN when it may have left and cannot
//!     be asked about);
//! (b) none sent twice, by the simulator's own record of what it sent,
//!     not the daemon's word: exactly once when SENT/DELIVERED, at most
//!     once otherwise;
//! (c) the API still serving while the fault lasts: `GET /api/v1/status`
//!     and a new `POST /api/v1/messages` answer (that message counts too).

mod common;
use common::runtime;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use common::{Daemon, api_serves, usable_channels, wait_message, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{DinstarSim, DinstarSimBuilder, HttpFault, SimHandle};

/// Long enough for any fault here to clear and its messages to settle.
const SETTLE: Duration = Duration::from_secs(30);
/// The API answers within this while a fault lasts.
const PROMPT: Duration = Duration::from_secs(3);
const DONE: &[&str] = &["SENT", "DELIVERED"];

fn post(d: &Daemon, dialer: &str, to: &str, text: &str) -> i64 {
    common::send_message(d, dialer, to, text)
}

// ------------------------------------------------------------------ Dinstar

struct Dinstar {
    _rt: tokio::runtime::Runtime,
    sim: SimHandle,
    d: Daemon,
}

/// Short timeouts, so a fault's grace (three times `timeout_ms`) passes
/// quickly; a breaker that comes back after a second.
fn dinstar_config(sim: &SimHandle, password: &str) -> String {
    format!(
        r#"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "{password}"
timeout_ms = 300
result_poll_ms = 100
port_poll_s = 1
incoming_poll_s = 60
breaker_probe_s = 1

[[dialer]]
name = "dd"
provider = "gw"
interval_ms = 10
dncr = false
retry_backoff_ms = 100
max_attempts = 10
"#,
        url = sim.base_url()
    )
}

fn dinstar(tweak: impl FnOnce(DinstarSimBuilder) -> DinstarSimBuilder, password: &str) -> Dinstar {
    let rt = runtime();
    let sim = rt
        .block_on(tweak(DinstarSim::builder().ports(4)).start())
        .unwrap();
    let d = Daemon::start(&dinstar_config(&sim, password), &[]);
    d.wait_ready();
    Dinstar { _rt: rt, sim, d }
}

fn wait_usable(d: &Daemon, gateway: &str, n: usize) {
    assert!(
        wait_until(Duration::from_secs(15), || usable_channels(d, gateway) >= n),
        "{gateway}: {n} channels never usable"
    );
}

/// Every message ends SENT or DELIVERED, and went on air exactly once by
/// the gateway's own record (by its text; a send the gateway took and
/// then failed, e.g. its SIM was pulled, never went on air and may go
/// again); no user_id is ever taken twice.
fn dinstar_each_sent_once(run: &Dinstar, ids: &HashMap<i64, String>) {
    let on_air = |text: &str| -> Vec<smsgate_sim::dinstar::SentSms> {
        run.sim
            .sends_with_status()
            .into_iter()
            .filter(|(s, status)| s.text == text && *status != "FAILED")
            .map(|(s, _)| s)
            .collect()
    };
    for (&id, text) in ids {
        let m = wait_message(&run.d, id, DONE, SETTLE);
        let taken = on_air(text);
        assert_eq!(taken.len(), 1, "{text:?} on air once: {taken:?}");
        assert_eq!(
            taken[0].user_id.map(|u| u.to_string()),
            m["gateway_ref"].as_str().map(str::to_string),
            "{m}"
        );
    }
    // Give a wrong resend every chance before the final count.
    std::thread::sleep(Duration::from_millis(1500));
    let mut user_ids = std::collections::HashSet::new();
    let sends = run.sim.sends_with_status();
    for (s, _) in &sends {
        assert!(
            user_ids.insert(s.user_id),
            "a user_id went out twice: {s:?}"
        );
    }
    let aired = sends.iter().filter(|(_, st)| *st != "FAILED").count();
    assert_eq!(aired, ids.len(), "nothing else went on air: {sends:?}");
}

fn post_many(d: &Daemon, prefix: &str, n: usize, ids: &mut HashMap<i64, String>) {
    for i in 0..n {
        let text = format!("{prefix} {i}");
        ids.insert(post(d, "dd", &format!("+5989900{i:04}"), &text), text);
    }
}

/// Requests that time out: a gateway that never answers (and never acts)
/// and one that answers, and acts, only after our 300 ms timeout. The
/// first goes again once the grace has passed; the second is found by
/// user_id and never sent again.
#[test]
fn dinstar_timeouts_lose_none_and_send_none_twice() {
    let run = dinstar(|b| b, "admin");
    wait_usable(&run.d, "gw", 4);
    run.sim.fault_next_on("/api/send_sms", HttpFault::Hang, 2);
    for _ in 0..3 {
        run.sim.hold_next_send(Duration::from_millis(600));
    }
    let mut ids = HashMap::new();
    post_many(&run.d, "demora", 8, &mut ids);
    let id = api_serves(&run.d, "dd", "+59899111000", "durante la demora", PROMPT);
    ids.insert(id, "durante la demora".into());
    dinstar_each_sent_once(&run, &ids);
    let requests = run.sim.requests_to("/api/send_sms").len();
    assert!(
        requests >= ids.len() + 2,
        "the two unanswered requests were made again: {requests}"
    );
}

/// 5xx: an HTML 500 page (the gateway did not act) and `error_code` 500
/// in its JSON (a temporary refusal); both go again, once each.
#[test]
fn dinstar_5xx_lose_none_and_send_none_twice() {
    let run = dinstar(|b| b, "admin");
    wait_usable(&run.d, "gw", 4);
    run.sim
        .fault_next_on("/api/send_sms", HttpFault::Http500, 2);
    run.sim.script_next_send_any(500);
    run.sim.script_next_send_any(500);
    // Questions about them meet 500s too for a while.
    run.sim.fault_on_for(
        "/api/query_sms_result",
        HttpFault::Http500,
        Duration::from_secs(1),
    );
    let mut ids = HashMap::new();
    post_many(&run.d, "cinco", 8, &mut ids);
    let id = api_serves(&run.d, "dd", "+59899111001", "durante los 500", PROMPT);
    ids.insert(id, "durante los 500".into());
    dinstar_each_sent_once(&run, &ids);
    let refused = run
        .sim
        .requests_to("/api/send_sms")
        .iter()
        .filter(|r| r.status == Some(500) || r.error_code == Some(500))
        .count();
    assert_eq!(refused, 4, "the four 500s were met");
}

/// Malformed and truncated JSON after the gateway took the message (it
/// went out; only the answer is broken), a non-JSON page before it acted,
/// and broken answers to the questions about them: the taken ones are
/// found by user_id and never sent again, the other goes again.
#[test]
fn dinstar_malformed_and_truncated_json_lose_none_and_send_none_twice() {
    let run = dinstar(|b| b, "admin");
    wait_usable(&run.d, "gw", 4);
    run.sim
        .fault_next_on("/api/send_sms", HttpFault::TruncatedJson, 2);
    run.sim
        .fault_next_on("/api/send_sms", HttpFault::MalformedJson, 2);
    run.sim
        .fault_next_on("/api/send_sms", HttpFault::Garbage, 1);
    run.sim
        .fault_next_on("/api/query_sms_result", HttpFault::TruncatedJson, 2);
    run.sim
        .fault_next_on("/api/query_sms_result", HttpFault::MalformedJson, 2);
    let mut ids = HashMap::new();
    post_many(&run.d, "roto", 8, &mut ids);
    let id = api_serves(&run.d, "dd", "+59899111002", "durante el JSON roto", PROMPT);
    ids.insert(id, "durante el JSON roto".into());
    dinstar_each_sent_once(&run, &ids);
    // The page that was not JSON came before the gateway acted: that one
    // message was asked for again. The four taken ones were not.
    let requests = run.sim.requests_to("/api/send_sms");
    let not_json = requests.iter().filter(|r| r.error_code.is_none()).count();
    assert_eq!(not_json, 1, "{requests:?}");
    assert_eq!(requests.len(), ids.len() + 1, "{requests:?}");
}

/// A wrong password: one refusal, then smsgate backs off rather than
/// reach the gateway's lock-out (2 failures here). Once the gateway has
/// locked our address out anyway (a second wrong password), smsgate does
/// not hammer it. Messages wait, none failed; fixed by a reload, each
/// goes once.
#[test]
fn dinstar_wrong_password_and_lockout_back_off_and_lose_none() {
    let run = dinstar(
        |b| {
            b.credentials("admin", "la-buena")
                .lockout_after(2)
                .lockout_for(Some(Duration::from_secs(600)))
        },
        "la-mala",
    );
    let me: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let mut ids = HashMap::new();
    post_many(&run.d, "clave", 4, &mut ids);
    // Port, result and incoming polls would make a dozen logins a second
    // without the backoff.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(run.sim.bad_auth_count(), 1, "{:?}", run.sim.auth_counts());
    assert!(!run.sim.is_locked_out(me), "never reached the lock-out");
    let id = api_serves(
        &run.d,
        "dd",
        "+59899111003",
        "durante la clave mala",
        PROMPT,
    );
    ids.insert(id, "durante la clave mala".into());
    for &id in ids.keys() {
        let m = common::message(&run.d, id);
        assert_eq!(m["state_name"], "TO_PROCESS", "kept, not failed: {m}");
    }

    // Another wrong password: the gateway restarts, fails again, and the
    // box locks us out.
    let config = std::fs::read_to_string(&run.d.config).unwrap();
    std::fs::write(&run.d.config, config.replace("la-mala", "la-peor")).unwrap();
    run.d.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || run.sim.is_locked_out(me)),
        "{:?}",
        run.sim.auth_counts()
    );
    let requests = run.sim.requests().len();
    std::thread::sleep(Duration::from_secs(3));
    let hammering = run.sim.requests().len() - requests;
    assert!(
        hammering <= 1,
        "{hammering} requests to a gateway that locked us out: {:?}",
        run.sim.auth_counts()
    );
    let id = api_serves(&run.d, "dd", "+59899111004", "durante el bloqueo", PROMPT);
    ids.insert(id, "durante el bloqueo".into());
    assert!(run.sim.sends().is_empty());

    // The lock-out ends (the box's timer, or its admin) and the operator
    // fixes the password.
    run.sim.clear_lockouts();
    std::fs::write(&run.d.config, config.replace("la-mala", "la-buena")).unwrap();
    run.d.signal("HUP");
    dinstar_each_sent_once(&run, &ids);
}

/// A port loses its SIM mid-run: its messages move to the other ports;
/// none is lost or sent twice, and nothing leaves the port without a SIM.
#[test]
fn dinstar_port_losing_its_sim_mid_run_moves_messages_and_loses_none() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    // Slower pacing, so the run is still going when the SIM goes.
    let config = dinstar_config(&sim, "admin").replace("interval_ms = 10", "interval_ms = 300");
    let d = Daemon::start(&config, &[]);
    d.wait_ready();
    let run = Dinstar { _rt: rt, sim, d };
    wait_usable(&run.d, "gw", 4);
    let mut ids = HashMap::new();
    post_many(&run.d, "con sim", 30, &mut ids);
    assert!(
        wait_until(Duration::from_secs(15), || run.sim.sends().len() >= 8),
        "the run started"
    );
    run.sim.set_port_sim(1, false);
    let removed = std::time::Instant::now();
    post_many(&run.d, "sin sim", 30, &mut ids);
    let id = api_serves(&run.d, "dd", "+59899111005", "sin la sim", PROMPT);
    ids.insert(id, "sin la sim".into());
    assert!(
        wait_until(Duration::from_secs(10), || usable_channels(&run.d, "gw")
            == 3),
        "port 1 taken out of use"
    );
    dinstar_each_sent_once(&run, &ids);
    let sends = run.sim.sends();
    assert!(
        sends.iter().all(|s| s.port != 1 || s.at < removed),
        "nothing left port 1 after its SIM went"
    );
    let on_1 = sends.iter().filter(|s| s.port == 1).count();
    let later = sends.iter().filter(|s| s.at > removed).count();
    assert!(
        on_1 > 0 && later > 10,
        "port 1 in use before, and the run went on over the others: {on_1} on port 1, {later} of {} after",
        sends.len()
    );
}

// ---------------------------------------------------------------- AT modem

use smsgate_sim::modem::{FakeModem, ModemState};

struct Modem {
    _dir: tempfile::TempDir,
    modem: FakeModem,
    d: Daemon,
}

fn modem() -> Modem {
    let dir = tempfile::tempdir().unwrap();
    let link: PathBuf = dir.path().join("ttyGSM0");
    let modem = FakeModem::start(&link, ModemState::default()).unwrap();
    let config = format!(
        r#"
[[gateway]]
name = "modem1"
kind = "at"
device = "{}"
timeout_ms = 300
port_poll_s = 1
send_timeout_s = 1

[[dialer]]
name = "gsm"
provider = "modem1"
interval_ms = 10
dncr = false
retry_backoff_ms = 100
max_attempts = 20
"#,
        link.display()
    );
    let d = Daemon::start(&config, &[]);
    d.wait_ready();
    wait_usable(&d, "modem1", 1);
    Modem {
        _dir: dir,
        modem,
        d,
    }
}

/// The texts of the PDUs the modem took, with how many times each.
fn modem_sent(m: &Modem) -> HashMap<String, usize> {
    let mut by_text = HashMap::new();
    for s in m.modem.state().submits() {
        *by_text
            .entry(s.user_data.body.text().unwrap_or_default())
            .or_insert(0) += 1;
    }
    by_text
}

/// A modem that stops answering mid-CMGS: after giving the `>` prompt
/// (the PDU never left), and after taking the PDU (it left; no `+CMGS`
/// came). Either way smsgate cannot know, so the message is UNKNOWN and
/// never sent again; messages queued meanwhile go once the modem answers
/// again.
#[test]
fn modem_silent_mid_cmgs_is_unknown_never_resent_and_the_rest_go() {
    let m = modem();
    let mut done = Vec::new();
    for (fault, text) in [("prompt", "tras el prompt"), ("pdu", "tras el PDU")] {
        {
            let mut st = m.modem.state();
            match fault {
                "prompt" => st.faults.silent_after_prompt = 1,
                _ => st.faults.silent_after_pdu = 1,
            }
        }
        let id = post(&m.d, "gsm", "+59899123456", text);
        let v = wait_message(&m.d, id, &["UNKNOWN"], SETTLE);
        assert_eq!(v["state"], 9, "{v}");
        // Still silent: the API serves, and what is queued now waits.
        let waiting = format!("mientras calla ({fault})");
        let w = api_serves(&m.d, "gsm", "+59899123456", &waiting, PROMPT);
        assert!(m.modem.state().faults.silent);
        m.modem.state().faults.silent = false;
        wait_message(&m.d, w, DONE, SETTLE);
        done.push(waiting);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let sent = modem_sent(&m);
    assert_eq!(
        sent.get("tras el prompt"),
        None,
        "dropped by the modem: {sent:?}"
    );
    assert_eq!(sent.get("tras el PDU"), Some(&1), "{sent:?}");
    for t in &done {
        assert_eq!(sent.get(t), Some(&1), "{t}: {sent:?}");
    }
    assert_eq!(sent.len(), 3, "{sent:?}");
}

/// A modem answering binary noise: its channel is taken out of use and
/// the port reopened; messages wait and then go, once each.
#[test]
fn modem_sending_garbage_loses_none_and_sends_none_twice() {
    let m = modem();
    m.modem.state().faults.garbage = true;
    let mut ids = vec![
        post(&m.d, "gsm", "+59899123456", "ruido 1"),
        post(&m.d, "gsm", "+59899123456", "ruido 2"),
    ];
    assert!(
        wait_until(Duration::from_secs(10), || usable_channels(&m.d, "modem1")
            == 0),
        "the garbling modem is out of use"
    );
    ids.push(api_serves(&m.d, "gsm", "+59899123456", "ruido 3", PROMPT));
    m.modem.state().faults.garbage = false;
    for &id in &ids {
        wait_message(&m.d, id, DONE, SETTLE);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let sent = modem_sent(&m);
    for t in ["ruido 1", "ruido 2", "ruido 3"] {
        assert_eq!(sent.get(t), Some(&1), "{t}: {sent:?}");
    }
    assert_eq!(sent.len(), 3, "{sent:?}");
}

/// The modem disappears (USB unplug: the pty closes) right after taking a
/// PDU, and later with nothing in flight for a while before it comes
/// back: the first message is UNKNOWN and never resent; those queued
/// while it is gone wait and go once it is back.
#[test]
fn modem_unplugged_and_back_loses_none_and_sends_none_twice() {
    let m = modem();
    {
        let mut st = m.modem.state();
        st.faults.unplug_on_pdu = Some(1);
        st.faults.replug_after = Duration::from_millis(800);
    }
    let a = post(&m.d, "gsm", "+59899123456", "desenchufado");
    wait_message(&m.d, a, &["UNKNOWN"], SETTLE);

    wait_usable(&m.d, "modem1", 1);
    m.modem.unplug(None);
    assert!(
        wait_until(Duration::from_secs(10), || usable_channels(&m.d, "modem1")
            == 0),
        "the unplugged modem is out of use"
    );
    let mut ids = vec![post(&m.d, "gsm", "+59899123456", "sin modem 1")];
    ids.push(api_serves(
        &m.d,
        "gsm",
        "+59899123456",
        "sin modem 2",
        PROMPT,
    ));
    std::thread::sleep(Duration::from_millis(500));
    for &id in &ids {
        let v = common::message(&m.d, id);
        assert!(
            v["state_name"] == "TO_PROCESS" || v["state_name"] == "SENDING",
            "waits while the modem is gone: {v}"
        );
    }
    m.modem.replug().unwrap();
    for &id in &ids {
        wait_message(&m.d, id, DONE, SETTLE);
    }
    std::thread::sleep(Duration::from_millis(1000));
    let sent = modem_sent(&m);
    for t in ["desenchufado", "sin modem 1", "sin modem 2"] {
        assert_eq!(sent.get(t), Some(&1), "{t}: {sent:?}");
    }
    assert_eq!(sent.len(), 3, "{sent:?}");
}

// --------------------------------------------------------------------- DWG

use smsgate_sim::dwg::{CutFrame, DwgSim, DwgSimHandle};

/// The DWG gateway's connection drops mid-frame (half a frame written,
/// then the socket closes), at three points: the answer to a send request
/// (the gateway took the message: UNKNOWN, never resent), the send result
/// that follows (the message stays SENT), and a received SMS (the gateway
/// had no ack, sends it again after reconnecting: stored once). Messages
/// sent after the reconnect go once.
#[test]
fn dwg_connection_dropped_mid_frame_loses_none_and_sends_none_twice() {
    let listen = common::free_port();
    let config = format!(
        r#"
[[gateway]]
name = "dwg1"
kind = "dinstar-dwg"
ports = 4
listen = "127.0.0.1:{listen}"
user = "smsgate"
password = "dwg-secret-1"

[[dialer]]
name = "dw"
provider = "dwg1"
interval_ms = 10
dncr = false
retry_backoff_ms = 100
max_attempts = 10
"#
    );
    let d = Daemon::start(&config, &[]);
    d.wait_ready();
    let rt = runtime();
    let sim: DwgSimHandle = rt.block_on(async {
        let sim = DwgSim::builder()
            .connect(format!("127.0.0.1:{listen}").parse().unwrap())
            .credentials("smsgate", "dwg-secret-1")
            .ports(4)
            .reconnect(Some(Duration::from_millis(200)))
            .result_delay(Some(Duration::from_millis(50)))
            .receipt_delay(Some(Duration::from_millis(50)))
            .start();
        assert!(sim.wait_connected(Duration::from_secs(10)).await);
        sim
    });
    wait_usable(&d, "dwg1", 4);
    let took = |text: &str| {
        sim.sends()
            .iter()
            .filter(|s| s.text == text && s.answer == smsgate_proto::dwg::SendCode::Succeed)
            .count()
    };

    // The answer to the send request is cut off.
    sim.cut_next(CutFrame::SendResponse);
    let a = post(&d, "dw", "+59899123456", "respuesta cortada");
    let v = wait_message(&d, a, &["UNKNOWN"], SETTLE);
    assert_eq!(v["state"], 9, "{v}");
    let after = api_serves(&d, "dw", "+59899123457", "tras el corte", PROMPT);
    wait_message(&d, after, DONE, SETTLE);

    // The send result is cut off: the message was answered, so SENT.
    wait_usable(&d, "dwg1", 4);
    sim.cut_next(CutFrame::SendResult);
    let b = post(&d, "dw", "+59899123458", "resultado cortado");
    wait_message(&d, b, DONE, SETTLE);
    assert!(wait_until(Duration::from_secs(10), || sim.cuts_done() == 2));

    // A received SMS is cut off: no ack, so the gateway sends it again.
    // (Each cut ends a connection; wait for the next one's login, not the
    // flag of the one that just ended.)
    let session = |n: u64| {
        assert!(
            wait_until(Duration::from_secs(10), || sim.connections() >= n),
            "connection {n}"
        );
        assert!(rt.block_on(sim.wait_connected(Duration::from_secs(10))));
    };
    session(3);
    wait_usable(&d, "dwg1", 4);
    let sms = DwgSimHandle::incoming_sms(2, "+59899555111", "entrante cortado");
    sim.cut_next(CutFrame::ReceivedSms);
    assert!(
        rt.block_on(sim.inject_sms(sms.clone())).is_err(),
        "cut, no ack"
    );
    assert_eq!(sim.cuts_done(), 3, "the received SMS was cut");
    session(4);
    let ack = rt
        .block_on(sim.inject_sms(sms))
        .expect("acked when sent again");
    assert!(ack.ok(), "{ack:?}");
    let c = api_serves(&d, "dw", "+59899123459", "al final", PROMPT);
    wait_message(&d, c, DONE, SETTLE);

    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(sim.cuts_done(), 3);
    let inbound = common::get(&d, "/api/v1/inbound");
    let stored = inbound["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"] == "entrante cortado")
        .count();
    assert_eq!(stored, 1, "stored once: {inbound}");
    for t in [
        "respuesta cortada",
        "tras el corte",
        "resultado cortado",
        "al final",
    ] {
        assert_eq!(took(t), 1, "{t}: {:?}", sim.sends());
    }
    sim.shutdown();
}

// ---------------------------------------------------------------- Twilio

use smsgate_sim::twilio::{Fault, TwilioSimConfig};

const TW_ACCOUNT: &str = "AC00000000000000000000000000000001";
const TW_TOKEN: &str = "sim-auth-token";
const TW_NUMBER: &str = "+15005550006";

/// Twilio answers 5xx, then 429 with Retry-After, then takes a message
/// but its answer never comes in time: the first two are retried (after
/// the 429, no request before Retry-After has passed), the last is found
/// in Twilio's message list and not created again. Twilio's own record
/// shows each message created once.
#[test]
fn twilio_5xx_429_and_a_lost_answer_lose_none_and_send_none_twice() {
    let rt = runtime();
    let sim = rt
        .block_on(smsgate_sim::twilio::start(TwilioSimConfig {
            account_sid: TW_ACCOUNT.into(),
            auth_token: TW_TOKEN.into(),
            number: TW_NUMBER.into(),
            ..Default::default()
        }))
        .unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("twilio.token");
    std::fs::write(&token, format!("{TW_TOKEN}\n")).unwrap();
    let config = format!(
        r#"
[[gateway]]
name = "tw"
kind = "twilio"
account_sid = "{TW_ACCOUNT}"
auth_token_file = "{token}"
from = "{TW_NUMBER}"
url = "{url}"
ports = 2
timeout_ms = 500
status_poll_s = 1
breaker_failures = 20

[[dialer]]
name = "dt"
provider = "tw"
interval_ms = 10
dncr = false
retry_backoff_ms = 100
max_attempts = 6
"#,
        token = token.display(),
        url = sim.base_url()
    );
    let d = Daemon::start(&config, &[]);
    d.wait_ready();
    let created = |text: &str| {
        sim.messages()
            .iter()
            .filter(|m| m.direction == "outbound-api" && m.body == text)
            .count()
    };

    sim.fault(Fault {
        status: Some(503),
        code: Some(20500),
        message: Some("Service Unavailable".into()),
        times: Some(2),
        ..Default::default()
    });
    let a = post(&d, "dt", "+59899000040", "tras dos 503");
    let m = wait_message(&d, a, DONE, SETTLE);
    assert_eq!(m["attempts"], 3, "{m}");

    sim.fault(Fault {
        status: Some(429),
        code: Some(20429),
        message: Some("Too Many Requests".into()),
        retry_after: Some(2),
        times: Some(1),
        ..Default::default()
    });
    let b = post(&d, "dt", "+59899000041", "tras un 429");
    assert!(
        wait_until(Duration::from_secs(10), || sim.creates().len() >= 4),
        "the 429 was met"
    );
    // The gateway waits Retry-After; the API does not.
    let b2 = api_serves(&d, "dt", "+59899000042", "durante el 429", PROMPT);
    assert!(
        wait_until(Duration::from_secs(10), || sim.creates().len() >= 5),
        "the gateway sends again"
    );
    let creates = sim.creates();
    let pause = creates[4].at - creates[3].at;
    assert!(
        pause >= Duration::from_secs(2),
        "no create within Retry-After (2 s) of the 429, on Twilio's clock: {pause:?}"
    );

    // Twilio creates it, then answers after our timeout.
    wait_message(&d, b, DONE, SETTLE);
    wait_message(&d, b2, DONE, SETTLE);
    sim.fault(Fault {
        hang_ms: Some(3000),
        times: Some(1),
        ..Default::default()
    });
    let c = post(&d, "dt", "+59899000043", "respuesta perdida");
    assert!(
        wait_until(Duration::from_secs(10), || created("respuesta perdida")
            == 1),
        "Twilio took it"
    );
    let c2 = api_serves(&d, "dt", "+59899000044", "durante la espera", PROMPT);
    let m = wait_message(&d, c, DONE, SETTLE);
    wait_message(&d, c2, DONE, SETTLE);
    let sid = sim
        .messages()
        .iter()
        .find(|x| x.body == "respuesta perdida")
        .map(|x| x.sid.clone());
    assert_eq!(m["gateway_ref"].as_str(), sid.as_deref(), "{m}");

    std::thread::sleep(Duration::from_millis(1500));
    for t in [
        "tras dos 503",
        "tras un 429",
        "durante el 429",
        "respuesta perdida",
        "durante la espera",
    ] {
        assert_eq!(created(t), 1, "{t}: {:?}", sim.messages());
    }
    sim.stop();
}

// ------------------------------------------------------- WhatsApp Cloud

use smsgate_sim::whatsapp_cloud::{Injection, StatusPlan, WhatsAppCloudSim};

const WA_TOKEN: &str = "EAAGfaults-access-token";
const WA_SECRET: &str = "app-secret-faults";
const WA_PHONE_ID: &str = "106540352242999";

/// Meta answers 5xx, then 429 (its throughput limit, 130429), then takes
/// a message and never answers: the first two are retried and taken once;
/// the last is UNKNOWN (Meta cannot be asked by our id) and not sent
/// again. The simulator's record of the messages it took shows each once.
#[test]
fn whatsapp_5xx_429_and_a_lost_answer_lose_none_and_send_none_twice() {
    let rt = runtime();
    let port = common::free_port();
    let sim = rt
        .block_on(
            WhatsAppCloudSim::builder()
                .phone_number_id(WA_PHONE_ID)
                .display_number("59829001999")
                .access_token(WA_TOKEN)
                .app_secret(WA_SECRET)
                .template("order_update", "es", 1)
                .webhook_url(Some(format!(
                    "http://127.0.0.1:{port}/api/v1/gateways/wa/push"
                )))
                .statuses(StatusPlan {
                    statuses: vec!["sent".into(), "delivered".into()],
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
name = "wa"
kind = "whatsapp-cloud"
phone_number_id = "{WA_PHONE_ID}"
access_token_file = "{token}"
app_secret_file = "{secret}"
verify_token_file = "{verify}"
url = "{url}"
api_version = "v21.0"
ports = 2
timeout_ms = 500
number = "+59829001999"
breaker_failures = 20

[[dialer]]
name = "dw"
provider = "wa"
interval_ms = 10
dncr = false
retry_backoff_ms = 100
max_attempts = 6
"#,
        token = file("wa.token", WA_TOKEN),
        secret = file("wa.secret", WA_SECRET),
        verify = file("wa.verify", "verify-faults"),
        url = sim.base_url(),
    );
    let config = dir.path().join("smsgate.toml");
    std::fs::write(
        &config,
        common::config_text(port, &dir.path().join("state"), &extra),
    )
    .unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    let template = |to: &str, var: &str| -> i64 {
        let r = d
            .http()
            .post(d.url("/api/v1/messages"))
            .bearer_auth(common::OPERATOR)
            .json(&json!({"dialer": "dw", "to": to, "template": {"name": "order_update", "language": "es"}, "variables": [var]}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text());
        r.json::<Value>().unwrap()["id"].as_i64().unwrap()
    };
    let taken = |var: &str| {
        sim.accepted()
            .iter()
            .filter(|a| a.body.to_string().contains(var))
            .count()
    };
    let inject = |code: i64, http_status: Option<u16>, times: u32, hang: bool| {
        sim.inject(Injection {
            code,
            http_status,
            times: Some(times),
            to: None,
            hang,
        })
    };

    inject(2, Some(503), 1, false);
    inject(1, Some(500), 1, false);
    let a = template("+59899000050", "tras-5xx");
    let m = wait_message(&d, a, DONE, SETTLE);
    assert_eq!(m["attempts"], 3, "{m}");

    inject(130429, None, 1, false);
    let b = template("+59899000051", "tras-429");
    let m = wait_message(&d, b, DONE, SETTLE);
    assert_eq!(m["attempts"], 2, "{m}");

    // Taken, and the answer never comes.
    inject(0, None, 1, true);
    let c = template("+59899000052", "respuesta-perdida");
    assert!(
        wait_until(Duration::from_secs(10), || taken("respuesta-perdida") == 1),
        "Meta took it"
    );
    // While the request hangs, the API serves (a free-text message to a
    // customer outside the window would be refused: a template instead).
    let http = d.http_waiting(PROMPT);
    let r = http
        .get(d.url("/api/v1/status"))
        .bearer_auth(common::VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let c2 = template("+59899000053", "durante-la-espera");
    let m = wait_message(&d, c, &["UNKNOWN"], SETTLE);
    assert_eq!(m["state"], 9, "{m}");
    wait_message(&d, c2, DONE, SETTLE);

    std::thread::sleep(Duration::from_millis(1500));
    for v in [
        "tras-5xx",
        "tras-429",
        "respuesta-perdida",
        "durante-la-espera",
    ] {
        assert_eq!(taken(v), 1, "{v}: {:?}", sim.accepted());
    }
    sim.stop();
}
