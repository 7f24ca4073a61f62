//! Issue 15's fault matrix, second half: receivers, the clock and crashes,
//! through the real binary. Each test shows, on the receiving side (a
//! webhook receiver on 127.0.0.1 that verifies every signature, the
//! Dinstar simulator's own record, the store read after the process
//! died), that nothing is lost, nothing goes twice beyond what the docs
//! allow, and that the API answers while the process lives.
//!
//! - a webhook receiver that hangs, answers 500, or is down (connections
//!   refused), each until it recovers;
//! - a receiver down longer than `dead_letter_after_s` (the "hour": the
//!   dead-letter clock is monotonic, so a short `dead_letter_after_s` is
//!   the same rule at a smaller scale), its dead letters replayed;
//! - the wall clock stepped forward and back (an NTP step) under
//!   libfaketime while a paced dialer with a schedule sends;
//! - SIGKILL during a CSV import, during a webhook delivery, and during
//!   the ACD's assignments.
//!
//! docs/failure-modes.md, "Receivers, clock and crashes", lists each
//! fault with its test.

mod common;
use common::{kill, runtime};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, VIEWER, get, send_message, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::DinstarSim;

const SECRET: &str = "webhook-secret-for-fault-tests-0123456789";

// ---------------------------------------------------------------------------
// A webhook receiver whose behaviour the test switches.

const OK: u8 = 0;
/// Answers 500 at once.
const FAIL: u8 = 1;
/// Reads the request and does not answer (until the mode changes; then
/// 503, long after smsgate gave up).
const HANG: u8 = 2;

/// One verified request as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    seq: i64,
    kind: String,
    interaction: Option<i64>,
    /// `X-Smsgate-Delivery`.
    id: String,
    replay: bool,
    body: Value,
}

#[derive(Default)]
struct Seen {
    /// Every request with a good signature, on arrival.
    arrived: Mutex<Vec<Delivery>>,
    /// Those answered 2xx: what the receiver took.
    taken: Mutex<Vec<Delivery>>,
    bad_signatures: AtomicUsize,
}

/// A receiver on a fixed loopback port that can be taken down (its port
/// closed: connections refused) and brought back.
struct Hook {
    port: u16,
    mode: Arc<AtomicU8>,
    seen: Arc<Seen>,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Hook {
    fn start() -> Self {
        let mut h = Self {
            port: common::free_port(),
            mode: Arc::new(AtomicU8::new(OK)),
            seen: Arc::default(),
            server: None,
        };
        h.up();
        h
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn arrived(&self) -> Vec<Delivery> {
        self.seen.arrived.lock().unwrap().clone()
    }

    fn taken(&self) -> Vec<Delivery> {
        self.seen.taken.lock().unwrap().clone()
    }

    fn up(&mut self) {
        assert!(self.server.is_none());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (mode, seen, port) = (self.mode.clone(), self.seen.clone(), self.port);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = loop {
                    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        Ok(l) => break l,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                };
                ready_tx.send(()).unwrap();
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
                            let (mode, seen) = (mode.clone(), seen.clone());
                            async move { answer(&mode, &seen, &headers, &body).await }
                        },
                    ),
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        self.server = Some((stop_tx, thread));
    }

    /// Closes the port; kept-alive connections end with it.
    fn down(&mut self) {
        if let Some((stop, thread)) = self.server.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        // Hung handlers end once the mode changes.
        self.set(OK);
        self.down();
    }
}

async fn answer(
    mode: &AtomicU8,
    seen: &Seen,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> axum::http::StatusCode {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    if smsgate_proto::webhook::verify(SECRET.as_bytes(), &h("x-smsgate-signature"), body, now, 300)
        .is_err()
    {
        seen.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(body).unwrap();
    let d = Delivery {
        seq: v["seq"].as_i64().unwrap(),
        kind: v["kind"].as_str().unwrap().to_string(),
        interaction: v["interaction"].as_i64(),
        id: h("x-smsgate-delivery"),
        replay: h("x-smsgate-replay") == "true",
        body: v,
    };
    seen.arrived.lock().unwrap().push(d.clone());
    loop {
        match mode.load(Ordering::SeqCst) {
            OK => {
                seen.taken.lock().unwrap().push(d);
                return axum::http::StatusCode::OK;
            }
            FAIL => return axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// The daemon and its event log.

/// `[[webhook]] portal` to `url`, quick retries, and `extra` keys.
fn webhook(url: &str, extra: &str) -> String {
    format!(
        r#"
[events]
heartbeat_s = 1

[[webhook]]
name = "portal"
url = "{url}"
secret = "{SECRET}"
retry_initial_ms = 100
retry_max_s = 1
{extra}
"#
    )
}

/// The sim gateway's customers write in every second, to campaign ventas:
/// events with interactions (`message.received`, `interaction.opened`)
/// besides the sends' `message.state`.
fn start_with_customers(extra: &str) -> (Daemon, common::LogDrain) {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("smsgate.toml");
    let text = common::config_text(
        port,
        &dir.path().join("state"),
        &format!(
            r#"
[[campaign]]
name = "ventas"
provider = "sim1"
did_ports = ["sim1:0", "sim1:1", "sim1:2", "sim1:3"]
{extra}"#
        ),
    )
    .replace(
        "latency_ms = 0\n",
        "latency_ms = 0\ninbound_every_s = 1\ninbound_from = [\"+59899111001\", \"+59899111002\", \"+59899111003\"]\ninbound_texts = [\"hola\", \"precio?\", \"gracias\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    ready(Daemon::start_with(dir, config, port, &[]))
}

/// Ready, its log read on a thread of its own (a full pipe would stall
/// it).
fn ready(mut d: Daemon) -> (Daemon, common::LogDrain) {
    let log = d.drain_stderr();
    d.wait_ready();
    (d, log)
}

fn start_again((dir, config, port): (tempfile::TempDir, PathBuf, u16)) -> Daemon {
    ready(Daemon::start_with(dir, config, port, &[])).0
}

/// One event of the log: (seq, kind, interaction).
type Logged = (i64, String, Option<i64>);

/// The event log after `after`, read from `GET /api/v1/events` up to its
/// first heartbeat (everything kept is sent before one).
fn event_log(d: &Daemon, after: i64) -> Vec<Logged> {
    let resp = d
        .http_waiting(Duration::from_secs(30))
        .get(d.url(&format!("/api/v1/events?after={after}")))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut out = Vec::new();
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if line.starts_with(": heartbeat") {
            break;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(data).unwrap();
            out.push((
                v["seq"].as_i64().unwrap(),
                v["kind"].as_str().unwrap().to_string(),
                v["interaction"].as_i64(),
            ));
        }
    }
    out
}

fn newest_seq(d: &Daemon) -> i64 {
    event_log(d, 0).last().map_or(0, |e| e.0)
}

fn portal(d: &Daemon) -> Value {
    get(d, "/api/v1/webhooks")["items"][0].clone()
}

/// Waits until every event of `wanted` was taken (or, with `dead`, is
/// among the dead letters' seqs); the receiver's takes.
fn wait_taken(hook: &Hook, wanted: &[Logged], dead: impl Fn() -> BTreeSet<i64>) -> Vec<Delivery> {
    let missing = || {
        let taken: BTreeSet<i64> = hook.taken().iter().map(|g| g.seq).collect();
        let dead = dead();
        wanted
            .iter()
            .filter(|e| !taken.contains(&e.0) && !dead.contains(&e.0))
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || missing().is_empty()),
        "events never taken by the receiver: {:?}",
        missing()
    );
    assert_eq!(hook.seen.bad_signatures.load(Ordering::SeqCst), 0);
    hook.taken()
}

/// Checks the takes of `wanted`: the delivery id `portal:<seq>`, the kind
/// and interaction the log has, and per interaction (and for the events
/// with none) the first take of each event in the log's order. Counts of
/// takes per seq.
fn check_order(taken: &[Delivery], wanted: &[Logged]) -> BTreeMap<i64, usize> {
    let log: BTreeMap<i64, &Logged> = wanted.iter().map(|e| (e.0, e)).collect();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    let mut order: BTreeMap<Option<i64>, Vec<i64>> = BTreeMap::new();
    for g in taken.iter().filter(|g| log.contains_key(&g.seq)) {
        let e = log[&g.seq];
        assert_eq!(g.id, format!("portal:{}", g.seq));
        assert_eq!((&g.kind, g.interaction), (&e.1, e.2), "{g:?}");
        let n = counts.entry(g.seq).or_default();
        *n += 1;
        if *n == 1 && !g.replay {
            order.entry(g.interaction).or_default().push(g.seq);
        }
    }
    for (interaction, seqs) in &order {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "interaction {interaction:?} out of order: {seqs:?}"
        );
    }
    assert!(
        order.keys().filter(|k| k.is_some()).count() >= 2,
        "events of customers' interactions were delivered: {:?}",
        order.keys()
    );
    counts
}

#[derive(Clone, Copy, Debug)]
enum ReceiverFault {
    Hang,
    Fails,
    Down,
}

/// The receiver fails as `fault` for 5 s while events keep coming: the
/// API answers throughout (sends accepted, `GET /api/v1/webhooks` shows
/// the failure), nothing is dead-lettered (`dead_letter_after_s` is the
/// default day), and once the receiver is back every event reaches it
/// exactly once, in order per interaction.
fn receiver_fails_then_recovers(fault: ReceiverFault) {
    let mut hook = Hook::start();
    // A hung request is cut at timeout_s; the others keep the default,
    // so a loaded machine's slow answer is not taken for a failure (and
    // sent twice).
    let timeout = match fault {
        ReceiverFault::Hang => "timeout_s = 3",
        _ => "",
    };
    let (d, log) = start_with_customers(&webhook(&hook.url(), timeout));
    let first = newest_seq(&d);
    for i in 0..5 {
        send_message(&d, "campsms", "099111222", &format!("before {i}"));
    }
    assert!(wait_until(Duration::from_secs(20), || hook.taken().len() >= 10));

    match fault {
        ReceiverFault::Hang => hook.set(HANG),
        ReceiverFault::Fails => hook.set(FAIL),
        ReceiverFault::Down => hook.down(),
    }
    let arrived_before = hook.arrived().len();
    let began = Instant::now();
    let mut i = 0;
    while began.elapsed() < Duration::from_secs(5) {
        // The API serves while deliveries fail: each call answers within
        // the client's 10 s, a send is accepted.
        send_message(&d, "campsms", "099111222", &format!("during {i}"));
        get(&d, "/api/v1/status");
        let ready = d.http().get(d.url("/readyz")).send().unwrap().status();
        assert_eq!(ready, 200);
        i += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let w = portal(&d);
    assert_eq!(w["failing"], true, "{w}");
    assert!(w["backlog"].as_i64().unwrap() > 0, "{w}");
    let error = w["last_error"].as_str().unwrap().to_string();
    let expected = match fault {
        ReceiverFault::Hang => "no answer within 3 s",
        ReceiverFault::Fails => "HTTP 500",
        ReceiverFault::Down => "connect",
    };
    assert!(error.contains(expected), "{fault:?}: {w}");
    if !matches!(fault, ReceiverFault::Down) {
        assert!(
            hook.arrived().len() > arrived_before,
            "deliveries reached the failing receiver"
        );
    }

    match fault {
        ReceiverFault::Down => hook.up(),
        _ => hook.set(OK),
    }
    for i in 0..5 {
        send_message(&d, "campsms", "099111222", &format!("after {i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let wanted = event_log(&d, first);
    let taken = wait_taken(&hook, &wanted, BTreeSet::new);
    let counts = check_order(&taken, &wanted);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{fault:?}: taken twice: {twice:?}");
    let kinds: BTreeSet<&str> = taken.iter().map(|g| g.kind.as_str()).collect();
    for k in ["message.state", "message.received", "interaction.opened"] {
        assert!(kinds.contains(k), "{kinds:?}");
    }
    let w = portal(&d);
    assert_eq!(w["dead_letters_total"], 0, "{w}");
    assert!(wait_until(Duration::from_secs(5), || log
        .text()
        .contains("webhook receiver recovered")));
    assert_eq!(
        log.text().matches("webhook receiver failing").count(),
        1,
        "one journal line per episode"
    );
    eprintln!(
        "{fault:?}: {} events, {} requests reached the receiver, each event taken once",
        wanted.len(),
        hook.arrived().len()
    );
}

#[test]
fn a_hanging_webhook_receiver_gets_every_event_once_in_order_after_it_recovers() {
    receiver_fails_then_recovers(ReceiverFault::Hang);
}

#[test]
fn a_webhook_receiver_answering_500_gets_every_event_once_in_order_after_it_recovers() {
    receiver_fails_then_recovers(ReceiverFault::Fails);
}

#[test]
fn a_webhook_receiver_down_gets_every_event_once_in_order_when_it_is_back() {
    receiver_fails_then_recovers(ReceiverFault::Down);
}

/// The seqs of the webhook's dead letters not replayed yet.
fn open_dead_letters(d: &Daemon) -> BTreeSet<i64> {
    let mut seqs = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            d,
            &format!("/api/v1/webhooks/portal/dead-letters?open=true&limit=1000{cursor}"),
        );
        for item in page["items"].as_array().unwrap() {
            seqs.insert(item["seq"].as_i64().unwrap());
        }
        match page["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => return seqs,
        }
    }
}

/// A receiver down for longer than `dead_letter_after_s` (2 s here, a day
/// by default; the rule is the same at any scale, its clock monotonic):
/// the outbox dead-letters what it owes and moves on, the API answers,
/// deliveries resume when the receiver is back, and a replay of the dead
/// letters completes the record: every event of the log taken exactly
/// once, either delivered or replayed (`X-Smsgate-Replay`), never both.
#[test]
fn a_webhook_receiver_down_past_dead_letter_after_gets_the_rest_by_replay() {
    let mut hook = Hook::start();
    let (d, _log) = start_with_customers(&webhook(&hook.url(), "dead_letter_after_s = 2"));
    let first = newest_seq(&d);
    for i in 0..3 {
        send_message(&d, "campsms", "099111222", &format!("before {i}"));
    }
    assert!(wait_until(Duration::from_secs(20), || hook.taken().len() >= 6));

    hook.down();
    let began = Instant::now();
    let mut i = 0;
    while began.elapsed() < Duration::from_secs(6) {
        send_message(&d, "campsms", "099111222", &format!("during {i}"));
        i += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let w = portal(&d);
    assert!(w["dead_letters"].as_i64().unwrap() > 5, "{w}");
    // The outbox moved on: it does not hold a day's backlog.
    assert!(w["backlog"].as_i64().unwrap() < 10, "{w}");

    hook.up();
    for i in 0..3 {
        send_message(&d, "campsms", "099111222", &format!("after {i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let wanted = event_log(&d, first);
    wait_taken(&hook, &wanted, || open_dead_letters(&d));
    let dead = open_dead_letters(&d);
    assert!(!dead.is_empty());

    let r = d
        .http()
        .post(d.url("/api/v1/webhooks/portal/dead-letters/replay"))
        .bearer_auth(OPERATOR)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert!(v["stopped_at"].is_null(), "{v}");
    assert!(open_dead_letters(&d).is_empty());

    let taken = wait_taken(&hook, &wanted, BTreeSet::new);
    let counts = check_order(&taken, &wanted);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "taken twice: {twice:?}");
    for g in taken.iter().filter(|g| counts.contains_key(&g.seq)) {
        assert_eq!(
            g.replay,
            dead.contains(&g.seq),
            "seq {}: replayed exactly when it was dead-lettered",
            g.seq
        );
    }
    eprintln!(
        "down past dead_letter_after_s: {} events, {} dead-lettered and replayed",
        wanted.len(),
        dead.len()
    );
}

/// SIGKILL while the receiver holds deliveries unanswered (in flight):
/// after the restart each of them is delivered again with the same
/// `X-Smsgate-Delivery`, nothing of the log is missing, the order per
/// interaction holds, and only deliveries the receiver took since the
/// last saved position come twice (at least once, as documented).
#[test]
fn a_sigkill_during_a_webhook_delivery_delivers_it_again_with_the_same_id() {
    let hook = Hook::start();
    let (d, _log) = start_with_customers(&webhook(&hook.url(), "timeout_s = 30"));
    let first = newest_seq(&d);
    for i in 0..3 {
        send_message(&d, "campsms", "099111222", &format!("before {i}"));
    }
    assert!(wait_until(Duration::from_secs(20), || hook.taken().len() >= 6));

    hook.set(HANG);
    for i in 0..3 {
        send_message(&d, "campsms", "099111222", &format!("held {i}"));
    }
    let in_flight = || {
        let taken: BTreeSet<i64> = hook.taken().iter().map(|g| g.seq).collect();
        hook.arrived()
            .into_iter()
            .filter(|g| !taken.contains(&g.seq))
            .collect::<Vec<_>>()
    };
    assert!(wait_until(Duration::from_secs(10), || in_flight().len() >= 2));
    let held = in_flight();
    let taken_before: BTreeSet<i64> = hook.taken().iter().map(|g| g.seq).collect();
    let stopped = kill(d);
    hook.set(OK);
    let arrived_at_kill = hook.arrived().len();

    let d = start_again(stopped);
    for i in 0..3 {
        send_message(&d, "campsms", "099111222", &format!("after {i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    let wanted = event_log(&d, first);
    let taken = wait_taken(&hook, &wanted, BTreeSet::new);
    let counts = check_order(&taken, &wanted);
    let after_restart = &hook.arrived()[arrived_at_kill..];
    for h in &held {
        assert!(
            after_restart
                .iter()
                .any(|g| g.seq == h.seq && g.id == h.id && g.body == h.body),
            "the delivery in flight at the kill ({}) came again, the same",
            h.id
        );
        assert_eq!(counts[&h.seq], 1, "{}: taken once", h.id);
    }
    for (seq, n) in &counts {
        assert!(
            *n == 1 || taken_before.contains(seq),
            "seq {seq} taken {n} times, but not before the kill"
        );
    }
    eprintln!(
        "SIGKILL during delivery: {} in flight, {} events, {} taken twice (since the last saved position)",
        held.len(),
        wanted.len(),
        counts.values().filter(|n| **n > 1).count()
    );
}

// ---------------------------------------------------------------------------
// SIGKILL during an import.

/// Message rows per import, read from the store while no daemon runs.
fn imports_in(state_dir: &Path) -> (Vec<(i64, i64)>, i64) {
    let store =
        smsgate::store::Store::open(state_dir, smsgate::runtime::Heartbeat::detached()).unwrap();
    let out = store
        .read_blocking(|c| {
            let mut stmt = c.prepare(
                "SELECT i.id, (SELECT count(*) FROM message m WHERE m.import_id = i.id) \
                 FROM import i ORDER BY i.id",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(i64, i64)>, _>>()?;
            let all: i64 = c.query_row(
                "SELECT count(*) FROM message WHERE dialer = 'bulk'",
                [],
                |r| r.get(0),
            )?;
            Ok((rows, all))
        })
        .unwrap();
    store.close();
    out
}

/// A large CSV upload killed (SIGKILL) at moments spread over its
/// receiving and importing: after each restart the store holds every
/// import whole or not at all (no message without its import, no import
/// short of a line), and uploading the file again works.
#[test]
fn a_sigkill_during_an_import_leaves_all_of_it_or_none_and_it_can_be_sent_again() {
    const LINES: usize = 20_000;
    let mut csv = String::with_capacity(LINES * 40);
    for i in 0..LINES {
        csv.push_str(&format!("bulk;09{:07};import {i};9999;\n", 1_000_000 + i));
    }
    let csv = bytes::Bytes::from(csv);
    // A dialer that does not send: the import is all that moves.
    let extra =
        "\n[[dialer]]\nname = \"bulk\"\nprovider = \"sim1\"\ndial = \"0\"\nenabled = false\n";
    let upload = |d: &Daemon| {
        let (url, body) = (d.url("/api/v1/imports?filename=FAULTS.csv"), csv.clone());
        let http = d.http_waiting(Duration::from_secs(60));
        std::thread::spawn(move || {
            http.post(url)
                .bearer_auth(OPERATOR)
                .header("content-type", "text/csv")
                .body(body)
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let (d, _log) = ready(Daemon::start(extra, &[]));
    // One whole import, timed: the kills are spread over this time.
    let t = Instant::now();
    assert_eq!(upload(&d).join().unwrap().unwrap(), 201);
    let whole = t.elapsed();
    let mut stopped = kill(d);
    let (imports, _) = imports_in(&stopped.0.path().join("state"));
    assert_eq!(imports, [(imports[0].0, LINES as i64)]);

    let mut imported = 1;
    let mut cut = 0;
    for tenth in [1, 3, 5, 7, 9, 11] {
        let d = start_again(stopped);
        let at = whole * tenth / 10;
        let up = upload(&d);
        std::thread::sleep(at);
        stopped = kill(d);
        let answered = up.join().unwrap();
        let (imports, messages) = imports_in(&stopped.0.path().join("state"));
        for (id, n) in &imports {
            assert_eq!(*n, LINES as i64, "import {id} is whole");
        }
        assert_eq!(
            messages,
            imports.len() as i64 * LINES as i64,
            "no message without its import"
        );
        match answered {
            Ok(s) => {
                assert_eq!(s, 201);
                imported += 1;
                assert_eq!(imports.len(), imported, "an answered import is kept");
            }
            Err(_) => {
                cut += 1;
                assert!(
                    imports.len() == imported || imports.len() == imported + 1,
                    "{imports:?}"
                );
                imported = imports.len();
            }
        }
        eprintln!(
            "killed {at:?} into an import of {whole:?}: answered {:?}, {} imports",
            answered.map_err(|e| e.to_string()),
            imports.len()
        );
    }
    assert!(cut >= 2, "the kills cut uploads in flight");
    // Uploading the file again works.
    let d = start_again(stopped);
    assert_eq!(upload(&d).join().unwrap().unwrap(), 201);
    let dash = get(&d, "/api/v1/dialers/bulk");
    assert_eq!(
        dash["not_processed"].as_i64().unwrap() + dash["others"].as_i64().unwrap(),
        ((imported + 1) * LINES) as i64,
        "{dash}"
    );
}

// ---------------------------------------------------------------------------
// SIGKILL during the ACD's assignments.

const SUPERVISOR: &str = "test-supervisor-token-0123456789";

fn call(d: &Daemon, method: &str, path: &str, body: Option<Value>) -> Value {
    let http = d.http();
    let mut r = match method {
        "POST" => http.post(d.url(path)),
        "PUT" => http.put(d.url(path)),
        "DELETE" => http.delete(d.url(path)),
        _ => http.get(d.url(path)),
    }
    .bearer_auth(SUPERVISOR);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    let v = r.json().unwrap_or(Value::Null);
    assert!(
        (200..300).contains(&status),
        "{method} {path}: {status} {v}"
    );
    v
}

fn interactions(d: &Daemon) -> Vec<Value> {
    call(
        d,
        "GET",
        "/api/v1/interactions?campaign=ventas&limit=1000",
        None,
    )["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Thirty customers wait; agents with room for one each log in, and later
/// their interactions are closed so the next ones are given out; the
/// daemon is SIGKILLed a few milliseconds after each of those steps, while
/// the assigner hands out work. After every restart no agent holds more
/// than its cap and no customer is lost; at the end every customer was
/// assigned exactly once, to one agent: the webhook receiver took one
/// `interaction.assigned` per interaction (by seq; a repeated delivery of
/// the same seq is the outbox's at-least-once), naming the agent the API
/// shows.
#[test]
fn sigkills_during_assignments_assign_each_interaction_once_to_one_agent() {
    const CUSTOMERS: usize = 30;
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let hook = Hook::start();
    let agents: Vec<String> = (1..=5).map(|i| format!("a{i:02}")).collect();
    let config = format!(
        r#"
[[api.tokens]]
name = "supervisor"
token = "{SUPERVISOR}"
role = "supervisor"

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

[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0"]
max_interactions_per_agent = 1
{hooks}
"#,
        url = sim.base_url(),
        hooks = webhook(&hook.url(), "events = [\"interaction.*\"]"),
    );
    let (mut d, _log) = ready(Daemon::start(&config, &[]));
    for id in &agents {
        call(
            &d,
            "PUT",
            &format!("/api/v1/agents/{id}"),
            Some(json!({"name": format!("Agent {id}")})),
        );
    }
    call(
        &d,
        "POST",
        "/api/v1/members",
        Some(json!({"campaigns": ["ventas"], "agents": agents})),
    );
    for i in 0..CUSTOMERS {
        sim.inject_incoming(0, &format!("5989{:07}", 2_000_000 + i), "hola");
    }
    assert!(
        wait_until(Duration::from_secs(30), || call(
            &d,
            "GET",
            "/api/v1/campaigns/ventas/monitor",
            None
        )["waiting_count"]
            == CUSTOMERS),
        "every customer waits"
    );

    let mut seed = 0x5eed_u64;
    // The request is received, committed, and wakes the assigner, whose
    // pass takes a few milliseconds more: kills from 2 to 14 ms after it
    // is sent fall before, between and after those commits (the test
    // prints where they fell).
    let mut delay = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        Duration::from_micros(2_000 + (seed >> 33) % 12_000)
    };
    let check = |d: &Daemon| {
        let all = interactions(d);
        assert_eq!(all.len(), CUSTOMERS, "no customer lost");
        let mut open_per_agent: HashMap<String, usize> = HashMap::new();
        for i in all.iter().filter(|i| i["closed"].is_null()) {
            if let Some(a) = i["agent"].as_str() {
                *open_per_agent.entry(a.to_string()).or_default() += 1;
            }
        }
        assert!(
            open_per_agent.values().all(|n| *n <= 1),
            "an agent above its cap: {open_per_agent:?}"
        );
        all
    };
    let ms = || jiff::Timestamp::now().as_millisecond();
    let members = json!({"campaigns": ["ventas"], "agents": agents});
    for id in &agents {
        call(&d, "POST", &format!("/api/v1/agents/{id}/login"), None);
    }
    // Per round: when the request that sets off the assignments was sent,
    // and when the daemon was killed.
    let mut rounds: Vec<(i64, i64)> = Vec::new();
    for _ in 0..10 {
        // Nobody may take work while the held interactions are closed...
        call(&d, "DELETE", "/api/v1/members", Some(members.clone()));
        for i in check(&d) {
            if i["closed"].is_null() && i["agent"].is_string() {
                call(
                    &d,
                    "POST",
                    &format!("/api/v1/interactions/{}/close", i["id"]),
                    None,
                );
            }
        }
        // ...then all five may, in one request and one assignment pass,
        // and the daemon is killed a few milliseconds after it is sent.
        let (http, url, body) = (d.http(), d.url("/api/v1/members"), members.clone());
        let began = ms();
        let sent = std::thread::spawn(move || {
            http.post(url)
                .bearer_auth(SUPERVISOR)
                .json(&body)
                .send()
                .map(|r| r.status().as_u16())
        });
        std::thread::sleep(delay());
        rounds.push((began, ms()));
        d = start_again(kill(d));
        let _ = sent.join();
        check(&d);
    }
    // The last kill may have come before the members were added.
    call(&d, "POST", "/api/v1/members", Some(members.clone()));
    let settling = ms();
    // Settle: close what is held until every customer was served.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let all = check(&d);
            for i in &all {
                if i["closed"].is_null() && i["agent"].is_string() {
                    call(
                        &d,
                        "POST",
                        &format!("/api/v1/interactions/{}/close", i["id"]),
                        None,
                    );
                }
            }
            all.iter().all(|i| !i["closed"].is_null())
        }),
        "every customer assigned and closed"
    );

    let wanted: Vec<Logged> = event_log(&d, 0)
        .into_iter()
        .filter(|e| e.1.starts_with("interaction."))
        .collect();
    let taken = wait_taken(&hook, &wanted, BTreeSet::new);
    let mut assigned: BTreeMap<i64, BTreeMap<i64, String>> = BTreeMap::new();
    for g in taken.iter().filter(|g| g.kind == "interaction.assigned") {
        assigned
            .entry(g.interaction.unwrap())
            .or_default()
            .insert(g.seq, g.body["data"]["agent"].as_str().unwrap().to_string());
    }
    let all = interactions(&d);
    for i in &all {
        let id = i["id"].as_i64().unwrap();
        let got = assigned.get(&id).cloned().unwrap_or_default();
        assert_eq!(got.len(), 1, "interaction {id} assigned once: {got:?}");
        let agent = got.values().next().unwrap();
        assert_eq!(i["agent"].as_str(), Some(agent.as_str()), "{i}");
        assert_eq!(
            i["closed_by"], "api:supervisor",
            "closed by us, not abandoned: {i}"
        );
    }
    // Where the kills fell: a round whose assignments came all before its
    // kill, all after the restart (the kill came first), or both.
    let (mut before, mut after, mut both) = (0, 0, 0);
    for (r, (began, killed)) in rounds.iter().enumerate() {
        let end = rounds.get(r + 1).map_or(settling, |n| n.0);
        let ats: Vec<i64> = taken
            .iter()
            .filter(|g| g.kind == "interaction.assigned")
            .filter_map(|g| g.body["at"].as_i64())
            .filter(|at| (*began..end).contains(at))
            .collect();
        match (
            ats.iter().any(|at| at <= killed),
            ats.iter().any(|at| at > killed),
        ) {
            (true, false) => before += 1,
            (false, true) => after += 1,
            (true, true) => both += 1,
            (false, false) => {}
        }
    }
    eprintln!(
        "{} kills during assignments: {} interactions, each assigned once; rounds assigned before the kill {before}, after the restart {after}, both {both}",
        rounds.len(),
        all.len()
    );
}

// ---------------------------------------------------------------------------
// The wall clock stepped (NTP) under libfaketime.

/// libfaketime's multi-threaded library, where Debian's `faketime`
/// package puts it for this machine's architecture.
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")])
        .find(|p| p.exists());
    found.expect(
        "libfaketime is missing: install the Debian package faketime (tests/run-all.sh does)",
    )
}

fn day_name(w: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match w {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

fn hhmm(minute: i64) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// A schedule in UTC open from 150 minutes before now to 180 minutes
/// after (split at midnight as schedules require), so closed 6 hours
/// either side of now.
fn schedule_around_now() -> String {
    let now = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now());
    let m = i64::from(now.hour()) * 60 + i64::from(now.minute());
    let (from, to) = (m - 150, m + 180);
    let window = |day: &str, from: i64, to: i64| {
        format!(
            "[[schedule.office.window]]\ndays = \"{day}\"\nfrom = \"{}\"\nto = \"{}\"\n",
            hhmm(from),
            if to >= 24 * 60 {
                "24:00".into()
            } else {
                hhmm(to)
            }
        )
    };
    let mut s = "[schedule.office]\ntime_zone = \"UTC\"\n".to_string();
    s.push_str(&window(
        day_name(now.weekday()),
        from.max(0),
        to.min(24 * 60),
    ));
    if from < 0 {
        s.push_str(&window(
            day_name(now.weekday().previous()),
            24 * 60 + from,
            24 * 60,
        ));
    }
    if to > 24 * 60 {
        s.push_str(&window(day_name(now.weekday().next()), 0, to - 24 * 60));
    }
    s
}

/// The smsgate binary under libfaketime with its wall clock (only) read
/// from a file the test rewrites: an NTP step, forward and back, while a
/// paced dialer with a schedule sends through the Dinstar simulator.
/// Steps of an hour during sending: no burst (no two sends on a port
/// closer than `interval_ms`, measured by the simulator's monotonic
/// clock), none sent twice, none lost. Steps of six hours out of the
/// schedule and back: nothing is sent while the stepped clock says
/// closed, everything once it says open again, still paced. The steps
/// are shown to reach the process: the messages' `created_at` and the
/// dialer's `in_schedule` follow the stepped clock, not the real one.
#[test]
fn ntp_steps_neither_burst_nor_repeat_nor_lose_and_the_schedule_follows_them() {
    const INTERVAL_MS: u64 = 250;
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(2).start()).unwrap();
    let config = format!(
        r#"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = 2
url = "{url}"
user = "admin"
password = "admin"
timeout_ms = 5000
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 1

[[api.tokens]]
name = "supervisor"
token = "{SUPERVISOR}"
role = "supervisor"

[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:1"]

[[dialer]]
name = "paced"
provider = "gw"
dial = "0.1"
interval_ms = {INTERVAL_MS}
dncr = false
schedule = "office"

[[dialer]]
name = "probe"
provider = "gw"
dial = "0"
enabled = false

{schedule}
"#,
        url = sim.base_url(),
        schedule = schedule_around_now(),
    );
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("faketime.rc");
    std::fs::write(&clock, "+0\n").unwrap();
    let lib = libfaketime();
    let (d, _log) = ready(Daemon::start(
        &config,
        &[
            ("LD_PRELOAD", lib.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            // Read the file again at most a second after it changes.
            ("FAKETIME_CACHE_DURATION", "1"),
            // Only the wall clock steps, as with NTP: CLOCK_MONOTONIC
            // (tokio's timers, Instant) stays true.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
            ("DONT_FAKE_MONOTONIC", "1"),
        ],
    ));
    assert!(wait_until(Duration::from_secs(15), || {
        get(&d, "/api/v1/channels")["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("gw:")))
            .all(|c| c["usable"] == true)
    }));
    // The daemon's wall clock less the real one, in seconds: what it
    // stamps a message with (one to a disabled dialer, never sent). Not
    // the HTTP Date header: hyper refreshes it only once its clock passes
    // the next second it expected, so after a backward step it stays
    // frozen until the clock catches up.
    let skew_s = || {
        let real = jiff::Timestamp::now().as_millisecond();
        let r = d
            .http()
            .post(d.url("/api/v1/messages"))
            .bearer_auth(OPERATOR)
            .json(&json!({"dialer": "probe", "to": "099111222", "text": "clock"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        let stamped = r.json::<Value>().unwrap()["created_at"].as_i64().unwrap();
        (stamped - real) as f64 / 1000.0
    };
    let step = |offset_s: i64| {
        // Written whole and renamed: libfaketime never reads half a file.
        let tmp = clock.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset_s:+}\n")).unwrap();
        std::fs::rename(&tmp, &clock).unwrap();
        // libfaketime reads the file again within FAKETIME_CACHE_DURATION.
        let mut last = 0.0;
        assert!(
            wait_until(Duration::from_secs(10), || {
                last = skew_s();
                (last - offset_s as f64).abs() < 5.0
            }),
            "the daemon's clock did not step to real {offset_s:+} s (it reads {last:+.0} s)"
        );
    };
    let dialer = || get(&d, "/api/v1/dialers/paced");
    let mut n = 0;
    // Submits `count` messages; asserts the daemon's clock reads real
    // time plus `offset_s` (within 5 s) through their created_at.
    let mut submit = |count: usize, tag: &str, offset_s: i64| {
        for _ in 0..count {
            let real = jiff::Timestamp::now().as_millisecond();
            let id = send_message(
                &d,
                "paced",
                &format!("+59899{:06}", n),
                &format!("{tag} {n}"),
            );
            let m = get(&d, &format!("/api/v1/messages/{id}"));
            let skew = m["created_at"].as_i64().unwrap() - real - offset_s * 1000;
            assert!(
                skew.abs() < 5000,
                "the daemon's clock is {skew} ms off real time + {offset_s} s: {m}"
            );
            n += 1;
        }
    };
    assert_eq!(dialer()["in_schedule"], true);
    // Three customers wait for an agent who is not logged in; none may be
    // closed as abandoned by a step (abandon_s is 300 s, the test lasts
    // well under that).
    call(
        &d,
        "PUT",
        "/api/v1/agents/a01",
        Some(json!({"name": "Agent a01"})),
    );
    call(
        &d,
        "POST",
        "/api/v1/members",
        Some(json!({"campaigns": ["ventas"], "agents": ["a01"]})),
    );
    for i in 0..3 {
        sim.inject_incoming(1, &format!("5989{:07}", 3_000_000 + i), "hola");
    }
    let monitor = || call(&d, "GET", "/api/v1/campaigns/ventas/monitor", None);
    assert!(wait_until(
        Duration::from_secs(15),
        || monitor()["waiting_count"] == 3
    ));

    // Steps of an hour while it sends, both ways.
    submit(12, "step", 0);
    assert!(wait_until(Duration::from_secs(10), || sim.sends_count() >= 4));
    step(3600);
    submit(12, "step", 3600);
    step(-3600);
    submit(12, "step", -3600);
    assert!(wait_until(Duration::from_secs(30), || sim.sends_count() >= 36));
    assert_eq!(dialer()["in_schedule"], true);

    // Six hours forward: out of the schedule; then back into it.
    for offset in [6 * 3600, -6 * 3600] {
        step(offset);
        assert!(
            wait_until(Duration::from_secs(5), || dialer()["in_schedule"] == false),
            "the step to {offset:+} s reached the schedule: {}",
            dialer()
        );
        let before = sim.sends_count();
        submit(6, "closed", offset);
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(sim.sends_count(), before, "nothing sent out of schedule");
        assert_eq!(dialer()["not_processed"], 6, "{}", dialer());
        step(0);
        assert!(wait_until(
            Duration::from_secs(5),
            || dialer()["in_schedule"] == true
        ));
        assert!(wait_until(Duration::from_secs(20), || sim.sends_count() >= before + 6));
    }
    let total = n;
    assert!(wait_until(Duration::from_secs(20), || {
        let dash = dialer();
        dash["not_processed"] == 0
            && dash["sending"] == 0
            && dash["sent"].as_i64().unwrap_or(0) + dash["delivered"].as_i64().unwrap_or(0)
                == total as i64
    }));
    std::thread::sleep(Duration::from_millis(500));
    let m = monitor();
    assert_eq!(
        m["waiting_count"], 3,
        "no waiting customer abandoned by a step: {m}"
    );
    assert_eq!(m["abandoned"], 0, "{m}");

    let sends = sim.sends();
    let mut texts: HashMap<&str, usize> = HashMap::new();
    for s in &sends {
        *texts.entry(s.text.as_str()).or_default() += 1;
    }
    assert_eq!(texts.len(), total, "every message reached the gateway");
    assert!(
        texts.values().all(|c| *c == 1),
        "sent twice: {:?}",
        texts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
    let user_ids: BTreeSet<Option<u64>> = sends.iter().map(|s| s.user_id).collect();
    assert_eq!(user_ids.len(), total, "one user_id per message");
    let mut by_port: BTreeMap<u8, Vec<Instant>> = BTreeMap::new();
    for s in &sends {
        by_port.entry(s.port).or_default().push(s.at);
    }
    let mut min_gap = Duration::MAX;
    for (port, times) in &by_port {
        for w in times.windows(2) {
            let gap = w[1].duration_since(w[0]);
            min_gap = min_gap.min(gap);
            assert!(
                gap >= Duration::from_millis(INTERVAL_MS),
                "port {port}: two sends {gap:?} apart across the steps, interval_ms is {INTERVAL_MS}"
            );
        }
    }
    eprintln!("clock steps: {total} messages, each sent once, smallest gap on a port {min_gap:?}");
}
