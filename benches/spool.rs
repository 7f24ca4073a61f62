//! The spool end to end, in release mode: `cargo bench --bench spool`.
//!
//! 1. Import 1,000,000 CSV lines through the real importer into a real
//!    SQLite file (parse, normalise, plan, insert, one transaction); prints
//!    the time and the peak resident memory of the process so far.
//! 2. Push N messages (default 200,000; `-- N` to change) through the
//!    engine to a zero-latency `sim` gateway with 64 channels and
//!    interval_ms = 0: every state change (SENDING, SENT, DELIVERED) is
//!    committed. Prints messages per second.

use std::io::BufReader;
use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::daemon::{Heartbeats, Shared};
use smsgate::dialer::{Engine, importer};
use smsgate::store::Store;

mod support;
use support::{Lines, peak_rss_kib};

fn config(state: &std::path::Path) -> Config {
    let text = format!(
        r#"
[daemon]
state_dir = "{}"
[[gateway]]
name = "sim1"
kind = "sim"
ports = 64
latency_ms = 0
[[dialer]]
name = "campsms"
provider = "sim1"
interval_ms = 0
dncr = true
"#,
        state.display()
    );
    Config::from_source(&state.join("bench.toml"), &text).expect("bench config")
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    smsgate::sms::phone::warm_up();

    // 1. Import.
    let store = Store::open(
        &dir.path().join("import"),
        smsgate::daemon::Heartbeat::detached(),
    )
    .expect("store");
    let t = Instant::now();
    let summary = importer::import_messages(
        &store,
        &config,
        "BENCH.csv",
        BufReader::with_capacity(64 * 1024, Lines::new(1_000_000)),
    )
    .expect("import");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "import: {} lines ({} queued, {} invalid) in {secs:.2} s = {:.0} lines/s; peak RSS so far {:.1} MiB",
        summary.lines,
        summary.queued,
        summary.invalid,
        summary.lines as f64 / secs,
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    store.close();

    // 2. Throughput.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = dir.path().join("run");
    let store = Store::open(&state, smsgate::daemon::Heartbeat::detached()).expect("store");
    let summary =
        importer::import_messages(&store, &config, "BENCH2.csv", BufReader::new(Lines::new(n)))
            .expect("import");
    let queued = summary.queued as i64;
    runtime.block_on(async {
        let shared = Shared::new(config.clone(), store.clone(), Heartbeats::default());
        let t = Instant::now();
        let engine = Engine::start(shared.clone()).await;
        loop {
            // Poll rarely: the count scans the table and must not slow the run.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done: i64 = store
                .read(|c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM message WHERE state IN (4, 5)",
                        [],
                        |r| r.get(0),
                    )?)
                })
                .await
                .expect("count");
            if done >= queued {
                break;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "spool: {queued} messages sent through 64 sim channels in {secs:.2} s = {:.0} messages/s",
            queued as f64 / secs
        );
        engine.stop(Duration::from_secs(5)).await;
    });
    store.close();
}
