//! Events to the portal, through the real binary: webhook deliveries to a
//! receiver on 127.0.0.1 that verifies every signature, across a receiver
//! outage and a SIGKILL of the daemon; dead letters listed and replayed;
//! the event stream resumed from Last-Event-ID, filtered, with its
//! heartbeat. Events are produced for real: single sends through the sim
//! gateway (`message.state`) and its simulated customers writing in
//! (`message.received`, `interaction.opened`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, VIEWER, wait_until};

const SECRET: &str = "webhook-secret-for-tests-0123456789";

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
struct Got {
    seq: i64,
    kind: String,
    interaction: Option<i64>,
    delivery: String,
    replay: bool,
    body: String,
}

/// A webhook receiver on 127.0.0.1: checks every delivery's signature with
/// `smsgate_proto::webhook::verify`, records the good ones, answers with
/// `status`. Stopping it closes the port (connections refused).
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    bad_signatures: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(port: u16) -> Self {
        Self::start_sharing(
            port,
            Arc::default(),
            Arc::default(),
            Arc::new(AtomicU16::new(200)),
        )
    }

    fn start_sharing(
        port: u16,
        got: Arc<Mutex<Vec<Got>>>,
        bad: Arc<AtomicUsize>,
        status: Arc<AtomicU16>,
    ) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (g, b, s) = (got.clone(), bad.clone(), status.clone());
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
                            let (g, b, s) = (g.clone(), b.clone(), s.clone());
                            async move {
                                let sig = headers
                                    .get("x-smsgate-signature")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("");
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap()
                                    .as_secs() as i64;
                                if smsgate_proto::webhook::verify(
                                    SECRET.as_bytes(),
                                    sig,
                                    &body,
                                    now,
                                    300,
                                )
                                .is_err()
                                {
                                    b.fetch_add(1, Ordering::SeqCst);
                                    return axum::http::StatusCode::UNAUTHORIZED;
                                }
                                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                                let h = |n: &str| {
                                    headers
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string()
                                };
                                assert_eq!(h("x-smsgate-event"), v["kind"].as_str().unwrap());
                                assert_eq!(h("content-type"), "application/json");
                                let code = s.load(Ordering::SeqCst);
                                if code == 200 {
                                    g.lock().unwrap().push(Got {
                                        seq: v["seq"].as_i64().unwrap(),
                                        kind: v["kind"].as_str().unwrap().to_string(),
                                        interaction: v["interaction"].as_i64(),
                                        delivery: h("x-smsgate-delivery"),
                                        replay: h("x-smsgate-replay") == "true",
                                        body: String::from_utf8(body.to_vec()).unwrap(),
                                    });
                                }
                                axum::http::StatusCode::from_u16(code).unwrap()
                            }
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
        Self {
            port,
            got,
            bad_signatures: bad,
            status,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Closes the port; kept connections end with it.
    fn stop(mut self) -> (Arc<Mutex<Vec<Got>>>, Arc<AtomicUsize>, Arc<AtomicU16>) {
        self.halt();
        (
            self.got.clone(),
            self.bad_signatures.clone(),
            self.status.clone(),
        )
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.halt();
    }
}

fn webhook(url: &str, extra: &str) -> String {
    format!(
        r#"
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

/// Simulated customers write in every second, routed to campaign ventas.
const CUSTOMERS: &str = r#"
[[campaign]]
name = "ventas"
provider = "sim1"
did_ports = ["sim1:0", "sim1:1", "sim1:2", "sim1:3"]
"#;

fn with_customers(text: String) -> String {
    text.replace(
        "latency_ms = 0\n",
        "latency_ms = 0\ninbound_every_s = 1\ninbound_from = [\"+59899111001\", \"+59899111002\", \"+59899111003\"]\ninbound_texts = [\"hola\", \"precio?\", \"gracias\"]\n",
    )
}

fn start(extra: &str, customers: bool) -> Daemon {
    start_api(extra, customers, "")
}

/// [`start`] with keys added to `[api]`.
fn start_api(extra: &str, customers: bool, api: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("smsgate.toml");
    let mut text = common::config_text(port, &dir.path().join("state"), extra)
        .replace("[api]\n", &format!("[api]\n{api}\n"));
    if customers {
        text = with_customers(text);
    }
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    d
}

/// Starts the daemon again on the same state and config (the one before
/// has exited).
fn restart(mut d: Daemon) -> Daemon {
    let _ = d.child.wait();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let d = Daemon::start_with(dir, d.config.clone(), d.port, &[]);
    d.wait_ready();
    d
}

fn send(d: &Daemon, n: usize, tag: &str) {
    let http = d.http();
    for i in 0..n {
        let r = http
            .post(d.url("/api/v1/messages"))
            .bearer_auth(OPERATOR)
            .json(&serde_json::json!({
                "dialer": "campsms", "to": "099111222", "text": format!("{tag} {i}")
            }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202, "{:?}", r.text());
    }
}

/// One Server-Sent Events frame.
#[derive(Debug, Clone, PartialEq)]
enum Frame {
    Event {
        id: i64,
        kind: String,
        data: serde_json::Value,
    },
    Comment(String),
    Other(String, String),
}

/// Reads frames from `GET /api/v1/events{query}` until `enough` holds or
/// `within` has passed; the connection is dropped after.
fn sse(
    d: &Daemon,
    query: &str,
    last_event_id: Option<i64>,
    within: Duration,
    enough: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let client = d.http_waiting(within);
    let mut req = client
        .get(d.url(&format!("/api/v1/events{query}")))
        .bearer_auth(VIEWER);
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let resp = req.send().unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut lines = BufReader::new(resp).lines();
    let mut frames = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline && !enough(&frames) {
        let Some(Ok(line)) = lines.next() else { break };
        if line.is_empty() {
            if let Some(kind) = cur.remove("event") {
                match cur.remove("id") {
                    Some(id) => frames.push(Frame::Event {
                        id: id.parse().unwrap(),
                        kind,
                        data: serde_json::from_str(&cur.remove("data").unwrap()).unwrap(),
                    }),
                    None => frames.push(Frame::Other(kind, cur.remove("data").unwrap_or_default())),
                }
            } else if let Some(r) = cur.remove("retry") {
                frames.push(Frame::Other("retry".into(), r));
            }
            cur.clear();
        } else if let Some(c) = line.strip_prefix(':') {
            frames.push(Frame::Comment(c.trim().to_string()));
        } else if let Some((k, v)) = line.split_once(": ") {
            cur.insert(k.to_string(), v.to_string());
        }
    }
    frames
}

fn events(frames: &[Frame]) -> Vec<(i64, String, serde_json::Value)> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Event { id, kind, data } => Some((*id, kind.clone(), data.clone())),
            _ => None,
        })
        .collect()
}

fn heartbeat(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| *f == Frame::Comment("heartbeat".into()))
}

/// The whole event log as it stands: a stream from the start, read until
/// its first heartbeat (every event kept is sent before a heartbeat).
fn event_log(d: &Daemon) -> Vec<(i64, String, serde_json::Value)> {
    events(&sse(
        d,
        "?after=0",
        None,
        Duration::from_secs(20),
        heartbeat,
    ))
}

/// Receiver up, then down while more events are written, the daemon
/// SIGKILLed and started again, more events, then the receiver up again:
/// every event of the log arrives, signed, and per interaction (and for
/// the events with none) in the order of the log; duplicates only as
/// at-least-once allows, counted.
#[test]
fn deliveries_survive_a_receiver_outage_and_a_sigkill_in_order() {
    let rport = common::free_port();
    let receiver = Receiver::start(rport);
    let url = receiver.url();
    let mut d = start(
        &format!(
            "{CUSTOMERS}\n[events]\nheartbeat_s = 1\n{}",
            webhook(&url, "")
        ),
        true,
    );
    let mut log = d.drain_stderr();
    let first = event_log(&d).last().map_or(0, |e| e.0);

    send(&d, 20, "before");
    assert!(
        wait_until(Duration::from_secs(20), || receiver.got().len() >= 40),
        "deliveries before the outage: {}",
        receiver.got().len()
    );
    let (got, bad, status) = receiver.stop();
    let before_outage = got.lock().unwrap().len();

    // Down: events keep coming (sends, customers writing in).
    send(&d, 20, "during");
    std::thread::sleep(Duration::from_secs(3));
    let webhooks = common::get(&d, "/api/v1/webhooks");
    let w = &webhooks["items"][0];
    assert_eq!(w["name"], "portal");
    assert_eq!(w["failing"], true, "{webhooks}");
    assert!(w["backlog"].as_i64().unwrap() > 0, "{webhooks}");
    assert!(
        w["last_error"].as_str().unwrap().contains("connect"),
        "{webhooks}"
    );
    assert!(!webhooks.to_string().contains(SECRET));

    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(10));
    let first_log = log.text_at_end(Duration::from_secs(5));
    let mut d = restart(d);
    log = d.drain_stderr();
    send(&d, 10, "after");
    std::thread::sleep(Duration::from_secs(2));

    let receiver = Receiver::start_sharing(rport, got, bad, status);
    let (events, duplicates) = all_delivered_in_order(&d, &receiver, first);
    assert!(events > 100, "events in the log: {events}");
    assert!(receiver.got().len() > before_outage);
    eprintln!("outage and SIGKILL: {events} events delivered, {duplicates} twice");
    // The receiver's failing episode was said once, and its recovery.
    assert!(wait_until(Duration::from_secs(5), || log
        .text()
        .contains("webhook receiver recovered")));
    let all = format!("{first_log}{}", log.text());
    assert_eq!(
        first_log.matches("webhook receiver failing").count(),
        1,
        "{first_log}"
    );
    assert!(!all.contains(SECRET), "the secret is in the journal");

    // SIGKILLed again while delivering to a receiver that is up: what was
    // delivered since the last written position comes again, nothing is
    // missing, the order per interaction holds.
    send(&d, 30, "kill");
    std::thread::sleep(Duration::from_millis(300));
    d.signal("KILL");
    let _ = d.wait_exit(Duration::from_secs(10));
    let mut d = restart(d);
    let log = d.drain_stderr();
    let (events, duplicates) = all_delivered_in_order(&d, &receiver, first);
    assert!(!log.text().contains(SECRET), "the secret is in the journal");
    eprintln!("SIGKILL while delivering: {events} events delivered, {duplicates} twice");
}

/// Waits until every event of the log after `first` reached the receiver,
/// then checks what it got: only events of the log, each with its delivery
/// id and the stream's data as body, and the first delivery of each event
/// in the log's order per interaction (and for the events with none).
/// The events, and how many deliveries were repeats (at least once).
fn all_delivered_in_order(d: &Daemon, receiver: &Receiver, first: i64) -> (usize, usize) {
    let full = event_log(d);
    let wanted: Vec<(i64, String, serde_json::Value)> =
        full.iter().filter(|e| e.0 > first).cloned().collect();
    let last = wanted.last().unwrap().0;
    let missing = || {
        let seen: BTreeSet<i64> = receiver.got().iter().map(|g| g.seq).collect();
        wanted
            .iter()
            .filter(|e| !seen.contains(&e.0))
            .map(|e| e.0)
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(60), || missing().is_empty()),
        "missing: {:?}",
        missing()
    );
    let got = receiver.got();
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let log_seqs: BTreeMap<i64, &(i64, String, serde_json::Value)> =
        full.iter().map(|e| (e.0, e)).collect();
    for g in got.iter().filter(|g| g.seq <= last) {
        let e = log_seqs
            .get(&g.seq)
            .expect("a delivery of an event in the log");
        assert_eq!(g.kind, e.1);
        assert_eq!(g.delivery, format!("portal:{}", g.seq));
        assert!(!g.replay);
        let body: serde_json::Value = serde_json::from_str(&g.body).unwrap();
        assert_eq!(body, e.2, "a delivery's body is the stream's data");
    }
    let mut first_seen: BTreeMap<Option<i64>, Vec<i64>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut duplicates = 0;
    for g in &got {
        if seen.insert(g.seq) {
            first_seen.entry(g.interaction).or_default().push(g.seq);
        } else {
            duplicates += 1;
        }
    }
    for (interaction, seqs) in &first_seen {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, &sorted, "order of interaction {interaction:?}");
    }
    assert!(
        first_seen.keys().filter(|k| k.is_some()).count() >= 2,
        "customers' interactions were delivered: {:?}",
        first_seen.keys()
    );
    let kinds: BTreeSet<&str> = got.iter().map(|g| g.kind.as_str()).collect();
    for k in ["message.state", "message.received", "interaction.opened"] {
        assert!(kinds.contains(k), "{kinds:?}");
    }
    (wanted.len(), duplicates)
}

/// A receiver that answers 500: each delivery is dead-lettered after
/// dead_letter_after_s and the outbox moves on; the dead letters are
/// listed (with the body as sent), replayed one and then all once the
/// receiver is well, each replay signed afresh and marked replayed.
#[test]
fn dead_letters_are_listed_and_replayed() {
    let receiver = Receiver::start(common::free_port());
    receiver.status.store(500, Ordering::SeqCst);
    let d = start(
        &webhook(
            &receiver.url(),
            "events = [\"message.state\"]\ndead_letter_after_s = 1",
        ),
        false,
    );
    send(&d, 2, "dead");
    let list = |q: &str| common::get(&d, &format!("/api/v1/webhooks/portal/dead-letters{q}"));
    // SENDING, SENT (and DELIVERED when the sim reports it) per message.
    assert!(
        wait_until(Duration::from_secs(20), || list("")["items"]
            .as_array()
            .unwrap()
            .len()
            >= 4),
        "{}",
        list("")
    );
    let page = list("?limit=2");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest = list(&format!("?cursor={next}&limit=100"));
    let mut all: Vec<serde_json::Value> = items.clone();
    all.extend(rest["items"].as_array().unwrap().iter().cloned());
    let ids: Vec<i64> = all.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    for item in &all {
        assert_eq!(item["kind"], "message.state");
        // The first was tried until dead_letter_after_s; the receiver
        // failing since, the others are tried once each.
        assert!(item["attempts"].as_i64().unwrap() >= 1, "{item}");
        assert!(
            item["last_error"].as_str().unwrap().contains("500"),
            "{item}"
        );
        assert!(item["replayed_at"].is_null());
        let body: serde_json::Value = serde_json::from_str(item["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["seq"], item["seq"]);
    }
    assert!(
        all.last().unwrap()["attempts"].as_i64().unwrap() >= 2,
        "{all:?}"
    );
    assert!(receiver.got().is_empty());
    let w = &common::get(&d, "/api/v1/webhooks")["items"][0];
    assert_eq!(w["dead_letters"].as_i64().unwrap(), all.len() as i64, "{w}");
    for body in [list("").to_string(), w.to_string()] {
        assert!(!body.contains(SECRET), "the secret in an API body: {body}");
    }

    // A viewer may not replay; an unknown one is 404.
    let http = d.http();
    let post = |path: &str, token: &str| http.post(d.url(path)).bearer_auth(token).send().unwrap();
    let oldest = all.last().unwrap().clone();
    let id = oldest["id"].as_i64().unwrap();
    let one = format!("/api/v1/webhooks/portal/dead-letters/{id}/replay");
    assert_eq!(post(&one, VIEWER).status(), 403);
    assert_eq!(
        post(
            "/api/v1/webhooks/portal/dead-letters/999999/replay",
            OPERATOR
        )
        .status(),
        404
    );
    // Still failing: 502, nothing marked.
    let r = post(&one, OPERATOR);
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["code"],
        "receiver_failed"
    );

    receiver.status.store(200, Ordering::SeqCst);
    let r = post(&one, OPERATOR);
    assert_eq!(r.status(), 200);
    assert!(!r.json::<serde_json::Value>().unwrap()["replayed_at"].is_null());
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    assert!(got[0].replay);
    assert_eq!(
        got[0].body,
        oldest["body"].as_str().unwrap(),
        "the body as it was sent"
    );
    assert_eq!(got[0].delivery, format!("portal:{}", oldest["seq"]));

    let r = post("/api/v1/webhooks/portal/dead-letters/replay", OPERATOR);
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert!(v["stopped_at"].is_null(), "{v}");
    // New events may have been dead-lettered meanwhile (a late report).
    assert!(
        v["replayed"].as_u64().unwrap() as usize >= all.len() - 1,
        "{v}"
    );
    let open = list("?open=true");
    assert!(open["items"].as_array().unwrap().is_empty(), "{open}");
    let seqs: BTreeSet<i64> = receiver.got().iter().map(|g| g.seq).collect();
    for item in &all {
        assert!(seqs.contains(&item["seq"].as_i64().unwrap()));
    }
    assert_eq!(receiver.bad_signatures.load(Ordering::SeqCst), 0);
    let metrics = http.get(d.url("/metrics")).send().unwrap().text().unwrap();
    assert!(
        metrics.contains(
            "smsgate_webhook_deliveries_total{webhook=\"portal\",outcome=\"dead_lettered\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"replayed\""), "{metrics}");
    assert!(
        metrics.contains("smsgate_webhook_dead_letters{webhook=\"portal\"} 0\n"),
        "every dead letter replayed: {metrics}"
    );
}

/// A stream read for a while, left, then resumed with Last-Event-ID gets
/// exactly the events written after the last one it saw, none twice;
/// filters by kind and campaign; the heartbeat comes on a quiet stream;
/// streams beyond max_streams are refused.
#[test]
fn the_event_stream_resumes_exactly_and_filters() {
    // A stream outlives the API's request timeout.
    let d = start_api(
        &format!("{CUSTOMERS}\n[events]\nheartbeat_s = 1\nmax_streams = 2\n"),
        true,
        "request_timeout_s = 1",
    );
    send(&d, 5, "first");
    let frames = sse(&d, "?after=0", None, Duration::from_secs(20), |f| {
        events(f).len() >= 12
    });
    assert!(
        matches!(&frames[0], Frame::Other(k, v) if k == "retry" && v == "2000"),
        "{frames:?}"
    );
    let seen = events(&frames);
    let last_seen = seen.last().unwrap().0;
    let ids: Vec<i64> = seen.iter().map(|e| e.0).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    send(&d, 5, "second");
    std::thread::sleep(Duration::from_secs(2));
    let resumed = events(&sse(
        &d,
        "",
        Some(last_seen),
        Duration::from_secs(20),
        heartbeat,
    ));
    let log = event_log(&d);
    let newest = resumed.last().unwrap().0;
    let expected: Vec<i64> = log
        .iter()
        .map(|e| e.0)
        .filter(|s| *s > last_seen && *s <= newest)
        .collect();
    let got: Vec<i64> = resumed.iter().map(|e| e.0).collect();
    assert_eq!(got, expected, "exactly the missed events, in order");
    assert!(got.len() >= 10, "{got:?}");
    // The same through after= (Last-Event-ID wins when both are given).
    let via_query = events(&sse(
        &d,
        &format!("?after={last_seen}"),
        None,
        Duration::from_secs(20),
        heartbeat,
    ));
    assert_eq!(
        via_query
            .iter()
            .map(|e| e.0)
            .take(got.len())
            .collect::<Vec<_>>(),
        got
    );

    // Filters.
    let only = events(&sse(
        &d,
        "?after=0&kinds=interaction.*,message.received",
        None,
        Duration::from_secs(20),
        heartbeat,
    ));
    assert!(!only.is_empty());
    assert!(
        only.iter()
            .all(|e| e.1.starts_with("interaction.") || e.1 == "message.received"),
        "{only:?}"
    );
    assert!(only.iter().any(|e| e.1 == "interaction.opened"));
    let ventas = events(&sse(
        &d,
        "?after=0&campaign=ventas",
        None,
        Duration::from_secs(20),
        heartbeat,
    ));
    assert!(!ventas.is_empty());
    assert!(
        ventas.iter().all(|e| e.2["campaign"] == "ventas"),
        "{ventas:?}"
    );
    assert!(ventas.iter().all(|e| e.1 != "message.state"));
    let states = events(&sse(
        &d,
        "?after=0&kinds=message.state",
        None,
        Duration::from_secs(20),
        heartbeat,
    ));
    assert!(states.len() >= 20, "{}", states.len());
    assert!(
        states
            .iter()
            .all(|e| e.1 == "message.state" && e.2["kind"] == "message.state")
    );
    assert!(states.iter().all(|e| e.2["data"]["dialer"] == "campsms"));

    // A stream from now: nothing old, a heartbeat every second, and not
    // cut by request_timeout_s (1 s here).
    let t = Instant::now();
    let beats = |f: &[Frame]| {
        f.iter()
            .filter(|f| **f == Frame::Comment("heartbeat".into()))
            .count()
    };
    let live = sse(&d, "?kinds=nothing.*", None, Duration::from_secs(10), |f| {
        beats(f) >= 3
    });
    assert_eq!(beats(&live), 3, "{live:?}");
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(events(&live).is_empty());

    // Bad input and roles.
    let http = d.http();
    let get = |q: &str, token: Option<&str>| {
        let mut r = http.get(d.url(&format!("/api/v1/events{q}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(get("?kinds=Bad%20Kind", Some(VIEWER)), 400);
    assert_eq!(get("?after=-1", Some(VIEWER)), 400);
    assert_eq!(get("", None), 401);

    // max_streams = 2: a third is refused while two are open.
    let keep: Vec<reqwest::blocking::Response> = (0..2)
        .map(|_| {
            d.http_waiting(Duration::from_secs(30))
                .get(d.url("/api/v1/events"))
                .bearer_auth(VIEWER)
                .send()
                .unwrap()
        })
        .collect();
    assert!(keep.iter().all(|r| r.status() == 200));
    let r = http
        .get(d.url("/api/v1/events"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["code"],
        "too_many_streams"
    );
    // The API still answers everything else meanwhile.
    assert_eq!(
        common::get(&d, "/api/v1/webhooks")["items"],
        serde_json::json!([])
    );
    drop(keep);
    // Their slots come back once the daemon notices they left (at the
    // next heartbeat at the latest).
    assert!(wait_until(Duration::from_secs(5), || get(
        "?kinds=x",
        Some(VIEWER)
    ) == 200));
}

/// A reload adds a webhook (it starts with the newest event, not the
/// history), changes it and removes it; a graceful stop ends open event
/// streams instead of waiting on them.
#[test]
fn a_reload_adds_changes_and_removes_webhooks_and_a_stop_ends_streams() {
    let receiver = Receiver::start(common::free_port());
    let mut d = start("\n[events]\nheartbeat_s = 1\n", false);
    send(&d, 3, "history");
    let before = event_log(&d).last().unwrap().0;
    let base = std::fs::read_to_string(&d.config).unwrap();
    let reload = |d: &Daemon, text: &str| {
        std::fs::write(&d.config, text).unwrap();
        d.signal("HUP");
    };
    reload(&d, &format!("{base}{}", webhook(&receiver.url(), "")));
    assert!(wait_until(Duration::from_secs(10), || {
        common::get(&d, "/api/v1/webhooks")["items"]
            .as_array()
            .unwrap()
            .len()
            == 1
    }));
    send(&d, 2, "added");
    assert!(wait_until(Duration::from_secs(10), || receiver.got().len() >= 6));
    assert!(
        receiver.got().iter().all(|g| g.seq > before),
        "a new webhook is not sent the history: {:?}",
        receiver.got()
    );

    // Changed: only message.state, on one lane.
    reload(
        &d,
        &format!(
            "{base}{}",
            webhook(&receiver.url(), "events = [\"message.state\"]\nlanes = 1")
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let seen = receiver.got().len();
    send(&d, 2, "changed");
    assert!(wait_until(Duration::from_secs(10), || receiver.got().len() >= seen + 6));

    // Removed: nothing more, and it is gone from the API.
    reload(&d, &base);
    assert!(wait_until(Duration::from_secs(10), || {
        common::get(&d, "/api/v1/webhooks")["items"]
            .as_array()
            .unwrap()
            .is_empty()
    }));
    let seen = receiver.got().len();
    send(&d, 2, "removed");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(receiver.got().len(), seen);
    let got = receiver.got();
    let seqs: Vec<i64> = got.iter().map(|g| g.seq).collect();
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seqs.len(),
        "none twice across reloads: {seqs:?}"
    );

    // A stream open at SIGTERM does not hold the stop up.
    let stream = d
        .http_waiting(Duration::from_secs(30))
        .get(d.url("/api/v1/events"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(stream.status(), 200);
    d.signal("TERM");
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(4), "stopping took {took:?}");
    drop(stream);
}
