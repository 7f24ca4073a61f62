//! The spool end to end, in release mode: `cargo bench --bench spool`.
//!
//! 1. `import`: imports 1,000,000 CSV lines through the real importer into
//!    a real SQLite file (parse, normalise, plan, insert, one transaction);
//!    prints the time and the peak resident memory of the process so far.
//!    The file is shaped like the seed's (routine priority 9999, every
//!    100th line urgent); `worst` imports a second file whose every line
//!    has another priority, the worst case for the queue index.
//! 2. `spool`: pushes N messages (default 200,000; give a number to
//!    change) through the engine to a zero-latency `sim` gateway with 64
//!    channels and interval_ms = 0: every state change (SENDING, SENT,
//!    DELIVERED) is committed. Prints messages per second.
//!
//! With no mode both 1 and 2 run: `cargo bench --bench spool -- spool 50000`
//! runs only the second, on 50,000 messages.

use std::io::BufReader;
use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::dialer::importer;
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeats, Shared};
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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(200_000);
    let has = |mode: &str| args.iter().any(|a| a == mode);
    let any_mode = has("import") || has("spool") || has("worst");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    smsgate_proto::sms::phone::warm_up();

    if has("import") || !any_mode {
        import(&config, dir.path(), "import", Lines::new(1_000_000));
    }
    if has("worst") {
        import(
            &config,
            dir.path(),
            "import, worst case",
            Lines::worst_case(1_000_000),
        );
    }
    if has("spool") || !any_mode {
        spool(&config, dir.path(), n);
    }
}

fn import(config: &Config, dir: &std::path::Path, what: &str, lines: Lines) {
    let state = dir.join(what.replace([' ', ','], "-"));
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let t = Instant::now();
    let summary = importer::import_messages(
        &store,
        config,
        "BENCH.csv",
        BufReader::with_capacity(64 * 1024, lines),
    )
    .expect("import");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{what}: {} lines ({} queued, {} invalid) in {secs:.2} s = {:.0} lines/s; peak RSS so far {:.1} MiB",
        summary.lines,
        summary.queued,
        summary.invalid,
        summary.lines as f64 / secs,
        peak_rss_kib().unwrap_or(0) as f64 / 1024.0
    );
    store.close();
}

fn spool(config: &Config, dir: &std::path::Path, n: u64) {
    // 2. Throughput.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = dir.join("run");
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let summary =
        importer::import_messages(&store, config, "BENCH2.csv", BufReader::new(Lines::new(n)))
            .expect("import");
    let queued = summary.queued as i64;
    runtime.block_on(async {
        let shared = Shared::new(config.clone(), store.clone(), Heartbeats::default());
        let t = Instant::now();
        let engine = Engine::start(shared.clone()).await;
        // The channels' own counters are cheap to read often; the store is
        // asked only once they say everything left, and then it is the
        // store's count that ends the run.
        while engine.channels().iter().map(|c| c.sent).sum::<u64>() < queued as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sent_secs = t.elapsed().as_secs_f64();
        let count = |state: &'static str| {
            let store = store.clone();
            async move {
                store
                    .read(move |c| {
                        Ok(c.query_row(
                            &format!("SELECT count(*) FROM message WHERE state IN ({state})"),
                            [],
                            |r| r.get::<_, i64>(0),
                        )?)
                    })
                    .await
                    .expect("count")
            }
        };
        while count("4, 5").await < queued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "spool: {queued} messages sent through 64 sim channels, SENT committed, in {secs:.2} s = {:.0} messages/s (transport calls done at {sent_secs:.2} s)",
            queued as f64 / secs
        );
        // The sim reports delivery 200 ms after each send.
        while count("5").await < queued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "spool: all {queued} DELIVERED committed in {secs:.2} s = {:.0} messages/s",
            queued as f64 / secs
        );
        engine.stop(Duration::from_secs(5)).await;
    });
    store.close();
}
