//! Webhook deliveries through the real binary: `cargo bench --bench
//! webhooks [-- N]` (release build).
//!
//! 1. Throughput: N events (default 50,000) are written to the event log
//!    before the daemon starts, with the webhook's position at 0, and a
//!    receiver on 127.0.0.1 (keep-alive, verifying every signature) counts
//!    them in; deliveries per second from the first to the last. Twice:
//!    events with no interaction (one ordered lane), and events spread
//!    over 1,000 interactions (four lanes).
//! 2. Memory: 100,000 events wait for a receiver that is down (its port
//!    closed): the daemon's resident memory once its worker is retrying,
//!    beside the same daemon with no webhook.
//!
//! Target (issue 12): over 2,000 deliveries/s to a local receiver.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smsgate::store::{Store, events, outbox};

const SECRET: &str = "benchmark-webhook-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A state directory holding `n` events, with webhook "bench" at position
/// 0 (as if it had been down since before the first).
fn prepare(state: &std::path::Path, n: u64, interactions: bool, webhook: bool) {
    let store = Store::open(state, smsgate::runtime::Heartbeat::detached()).expect("store");
    if webhook {
        store
            .write_blocking(|tx| outbox::sync(tx, &["bench".to_string()]).map(|_| ()))
            .unwrap();
    }
    let mut written = 0;
    while written < n {
        let chunk = (n - written).min(10_000);
        let from = written;
        store
            .write_blocking(move |tx| {
                for i in from..from + chunk {
                    let interaction = interactions.then_some((i % 1000) as i64 + 1);
                    events::append(
                        tx,
                        "message.received",
                        Some("ventas"),
                        interaction,
                        &serde_json::json!({
                            "inbound": i, "campaign": "ventas", "interaction": interaction,
                            "gateway": "gw1", "port": 0, "channel": "gw1:0",
                            "sender": "+59899123456", "number": "+59899123456",
                            "recipient": null, "text": "Hola, quisiera saber el precio del plan",
                        }),
                    )?;
                }
                Ok(())
            })
            .unwrap();
        written += chunk;
    }
    store.close();
}

fn config(dir: &std::path::Path, hook: Option<&str>) -> std::path::PathBuf {
    let port = free_port();
    let mut text = format!(
        r#"
[daemon]
state_dir = "{}"

[api]
listen = "127.0.0.1:{port}"

[[gateway]]
name = "sim1"
kind = "sim"
ports = 1
"#,
        dir.join("state").display()
    );
    if let Some(url) = hook {
        text.push_str(&format!(
            "\n[[webhook]]\nname = \"bench\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n"
        ));
    }
    let path = dir.join("smsgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn daemon(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["run", "--config"])
        .arg(config)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start smsgate")
}

/// A receiver on 127.0.0.1 that verifies and counts; (port, count,
/// first-arrival time).
fn receiver(rt: &tokio::runtime::Runtime) -> (u16, Arc<AtomicU64>, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (c, b) = (count.clone(), bad.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let (c, b) = (c.clone(), b.clone());
            async move {
                let sig = headers
                    .get("x-smsgate-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let now = smsgate::now_ms() / 1000;
                if smsgate_proto::webhook::verify(SECRET.as_bytes(), sig, &body, now, 300).is_err()
                {
                    b.fetch_add(1, Ordering::Relaxed);
                    return axum::http::StatusCode::UNAUTHORIZED;
                }
                c.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    (port, count, bad)
}

fn throughput(rt: &tokio::runtime::Runtime, n: u64, interactions: bool) {
    let dir = tempfile::tempdir().unwrap();
    prepare(&dir.path().join("state"), n, interactions, true);
    let (port, count, bad) = receiver(rt);
    let cfg = config(dir.path(), Some(&format!("http://127.0.0.1:{port}/hook")));
    let mut child = daemon(&cfg);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut peak = 0;
    while count.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        peak = peak.max(rss_kib(child.id()));
    }
    let took = started.elapsed();
    let got = count.load(Ordering::Relaxed);
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "{n} events {}: {got} delivered in {:.2} s = {:.0} deliveries/s; {} bad signatures; daemon peak RSS {:.1} MiB",
        if interactions {
            "over 1,000 interactions (4 lanes)"
        } else {
            "with no interaction (one lane)"
        },
        took.as_secs_f64(),
        got as f64 / took.as_secs_f64(),
        bad.load(Ordering::Relaxed),
        peak as f64 / 1024.0,
    );
}

fn memory_while_down(n: u64) {
    let mut figures = Vec::new();
    for webhook in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        prepare(&dir.path().join("state"), n, true, webhook);
        // A port nobody listens on: every attempt is refused at once.
        let down = format!("http://127.0.0.1:{}/hook", free_port());
        let cfg = config(dir.path(), webhook.then_some(down.as_str()));
        let mut child = daemon(&cfg);
        std::thread::sleep(Duration::from_secs(10));
        figures.push(rss_kib(child.id()));
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "{n} events waiting for a receiver that is down: daemon RSS {:.1} MiB (the same daemon and log with no webhook: {:.1} MiB)",
        figures[1] as f64 / 1024.0,
        figures[0] as f64 / 1024.0
    );
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    throughput(&rt, n, false);
    throughput(&rt, n, true);
    memory_while_down(100_000);
}
