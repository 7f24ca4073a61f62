//! Messages per second through the twilio transport to the local Twilio
//! simulator, in release mode: `cargo bench --bench twilio` (give a number
//! to change the default 20,000 messages).
//!
//! The real engine sends N imported messages through one `twilio` gateway
//! with ports = 32 (32 requests in flight) and interval_ms = 0; each
//! message is SENDING on disk before its request leaves and SENT on disk
//! once Twilio's answer is read (the normal send path). The simulator runs
//! on its own runtime thread on 127.0.0.1 and answers each create as
//! Twilio does (form parsed, basic auth checked, a message resource in
//! JSON). No callbacks: the figure is the send path.

use std::io::BufReader;
use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::dialer::importer;
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeats, Shared};
use smsgate::store::Store;

mod support;
use support::{Lines, peak_rss_kib};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "bench-token";

fn config(state: &std::path::Path, url: &str) -> Config {
    let text = format!(
        r#"
[daemon]
state_dir = "{}"
[[gateway]]
name = "tw"
kind = "twilio"
account_sid = "{ACCOUNT}"
auth_token = "{TOKEN}"
from = "+15005550006"
url = "{url}"
ports = 32
[[dialer]]
name = "campsms"
provider = "tw"
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
        .unwrap_or(20_000);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let sim_thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("sim runtime");
        rt.block_on(async move {
            let sim = smsgate_sim::twilio::start(smsgate_sim::twilio::TwilioSimConfig {
                account_sid: ACCOUNT.into(),
                auth_token: TOKEN.into(),
                // Statuses never move during the run: only creates count.
                sent_after: Duration::from_secs(3600),
                delivered_after: Duration::from_secs(3600),
                ..Default::default()
            })
            .await
            .expect("simulator");
            addr_tx.send(sim.base_url()).expect("address");
            let _ = stop_rx.await;
            let creates = sim.creates().len();
            sim.stop();
            creates
        })
    });
    let url = addr_rx.recv().expect("simulator address");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &url);
    smsgate_proto::sms::phone::warm_up();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let state = dir.path().join("run");
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let summary =
        importer::import_messages(&store, &config, "BENCH.csv", BufReader::new(Lines::new(n)))
            .expect("import");
    let queued = summary.queued as i64;
    runtime.block_on(async {
        let shared = Shared::new(config.clone(), store.clone(), Heartbeats::default());
        let t = Instant::now();
        let engine = Engine::start(shared.clone()).await;
        let count = || {
            let store = store.clone();
            async move {
                store
                    .read(|c| {
                        Ok(c.query_row(
                            "SELECT count(*) FROM message WHERE state IN (4, 5)",
                            [],
                            |r| r.get::<_, i64>(0),
                        )?)
                    })
                    .await
                    .expect("count")
            }
        };
        while engine.channels().iter().map(|c| c.sent).sum::<u64>() < queued as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "not all sent within 10 minutes"
            );
        }
        while count().await < queued {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "twilio: {queued} messages through 32 channels to the local Twilio simulator, SENT committed, in {secs:.2} s = {:.0} messages/s; peak RSS {:.1} MiB",
            queued as f64 / secs,
            peak_rss_kib().unwrap_or(0) as f64 / 1024.0
        );
        engine.stop(Duration::from_secs(5)).await;
    });
    store.close();
    let _ = stop_tx.send(());
    let creates = sim_thread.join().expect("simulator thread");
    assert_eq!(creates as i64, queued, "one create per message");
}
