//! Received messages per second, from a Dinstar push to stored and
//! evented: `cargo bench --bench inbound`.
//!
//! Starts the real engine and API on loopback with one `dinstar` gateway
//! (the Dinstar simulator answers its polls; the received-message poll is
//! an hour away, so every message comes by push) and one campaign taking
//! its ports, then POSTs pushes to `/api/v1/gateways/gw/push` from four
//! client threads, each on its own keep-alive connection, as fast as they
//! are answered, and times until every message has its `inbound` row and
//! its `message.received` event committed (the clock stops when the last
//! one is, read from the store). Customers are a thousand numbers in turn,
//! so most messages join an interaction already open, as in real traffic.
//!
//! Two runs: one message per push (what the manual's examples show), then
//! 50 per push (the `sms` array allows it; whether boxes batch is not
//! known, reference §8 Q14). A push refused with 503 (the event queue
//! full) is posted again after 5 ms and counted.
//!
//! `cargo bench --bench inbound -- 20000` sends 20,000 messages per run
//! (default 50,000); `-- single` or `-- batch` runs one of the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use smsgate::config::Config;
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeats, Shared};
use smsgate::store::Store;

const THREADS: u64 = 4;
const CUSTOMERS: u64 = 1000;
const SN: &str = "bench-0000-0000-0001";

fn config(state: &std::path::Path, port: u16, gateway_url: &str) -> Config {
    let text = format!(
        r#"
[daemon]
state_dir = "{}"
[api]
listen = "127.0.0.1:{port}"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{gateway_url}"
user = "admin"
password = "admin"
incoming_poll_s = 3600
push_allow = ["127.0.0.1"]
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0", "gw:1", "gw:2", "gw:3"]
"#,
        state.display()
    );
    Config::from_source(&state.join("bench.toml"), &text).expect("bench config")
}

/// The `sms` item of message `i`, as a box pushes it.
fn item(i: u64) -> serde_json::Value {
    json!({
        "incoming_sms_id": i,
        "port": i % 4,
        "number": format!("5989910{:04}", i % CUSTOMERS),
        "smsc": "+59899000000",
        "timestamp": "2026-12-07 10:05:00",
        "text": format!("Hola, ¿sale mañana el pedido {i}? Gracias 😀 ñandú"),
        "imsi": "748010000000001",
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(50_000);
    let has = |m: &str| args.iter().any(|a| a == m);
    let (single, batch) = match (has("single"), has("batch")) {
        (false, false) => (true, true),
        x => x,
    };
    smsgate_proto::sms::phone::warm_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sim = runtime
        .block_on(
            smsgate_sim::dinstar::DinstarSim::builder()
                .ports(4)
                .sn(SN)
                .start(),
        )
        .expect("simulator");
    let config = config(&state, port, &sim.base_url());
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let shared = Shared::new(config, store.clone(), Heartbeats::default());
    runtime.block_on(async {
        let engine = Engine::start(shared.clone()).await;
        let server =
            smsgate::api::Server::bind(smsgate::api::AppState::new(shared.clone(), engine.clone()))
                .await
                .expect("API binds");
        tokio::spawn(server.serve(shared.shutdown.clone()));
    });
    // The gateway's first polls (ports, then received messages) are done
    // before the clock starts.
    let t = Instant::now();
    while sim.requests_to("/api/query_incoming_sms").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(30), "no first poll");
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut first = 1;
    if single {
        measure(&store, port, first, n, 1);
        first += n;
    }
    if batch {
        measure(&store, port, first, n, 50);
    }
    println!(
        "peak RSS of the bench process (engine, API, simulator, clients): {} MiB",
        peak_rss_kib().unwrap_or(0) / 1024
    );
    shared.shutdown.cancel();
}

/// Pushes messages `first..first + n`, `per_push` to a push, and prints
/// the rate at which they were stored and evented.
fn measure(store: &Store, port: u16, first: u64, n: u64, per_push: u64) {
    let pushes = n.div_ceil(per_push);
    let next = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let inbound0 = counts(store);
    let t = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (next, refused) = (next.clone(), refused.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .use_preconfigured_tls(
                        smsgate::tls::client_config(&smsgate::tls::TlsVerify::System)
                            .expect("TLS config"),
                    )
                    .no_proxy()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let url = format!("http://127.0.0.1:{port}/api/v1/gateways/gw/push");
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= pushes {
                        return;
                    }
                    let lo = first + k * per_push;
                    let hi = (lo + per_push).min(first + n);
                    let body = serde_json::to_vec(&json!({
                        "sn": SN,
                        "sms": (lo..hi).map(item).collect::<Vec<_>>(),
                    }))
                    .expect("JSON");
                    loop {
                        let r = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .expect("push");
                        match r.status().as_u16() {
                            200 => break,
                            503 => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            s => panic!("push answered {s}: {:?}", r.text()),
                        }
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("client thread");
    }
    let posted = t.elapsed();
    loop {
        let stored = counts(store) - inbound0;
        if stored >= n as i64 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "not all stored: {stored} of {n}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = t.elapsed();
    let (rows, events, interactions) = store
        .read_blocking(|c| {
            let one = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok((
                one("SELECT count(*) FROM inbound")?,
                one("SELECT count(*) FROM event WHERE kind = 'message.received'")?,
                one("SELECT count(*) FROM interaction")?,
            ))
        })
        .expect("counts");
    assert_eq!(rows, first as i64 - 1 + n as i64, "every message once");
    assert_eq!(events, rows, "one event per message");
    println!(
        "{per_push} per push: {n} messages stored and evented in {:.2} s = {:.0} msg/s \
         (all posted after {:.2} s; {} pushes refused with 503 and posted again; {interactions} interactions)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        posted.as_secs_f64(),
        refused.load(Ordering::Relaxed),
    );
}

/// The highest inbound row id: a row and its event are committed in one
/// transaction, so when the last row is there its event is too (the
/// exact counts are checked after).
fn counts(store: &Store) -> i64 {
    store
        .read_blocking(|c| {
            Ok(c.query_row("SELECT max(id) FROM inbound", [], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .unwrap_or(0))
        })
        .expect("ids")
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
