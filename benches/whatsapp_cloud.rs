//! Messages per second through the `whatsapp-cloud` transport to the
//! simulated Cloud API on loopback: `cargo bench --bench whatsapp_cloud`.
//!
//! Starts the real engine and API with one whatsapp-cloud gateway of 32
//! channels (`ports = 32`, the dialer's `interval_ms = 1`) pointed at the
//! simulator, imports N template messages to N distinct customers (each
//! import line durable before anything is sent; no messaging limit), and
//! times until every one has Meta's wamid recorded (SENT). A second run
//! turns the simulator's statuses on (`sent`, `delivered`, each a signed
//! webhook back to the push route, checked and applied) and times until
//! every message is DELIVERED.
//!
//! `cargo bench --bench whatsapp_cloud -- 5000` sends 5,000 messages per
//! run (default 20,000).

use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeats, Shared};
use smsgate::store::Store;
use smsgate::store::spool::State;
use smsgate_sim::whatsapp_cloud::{StatusPlan, WhatsAppCloudSim};

const SECRET: &str = "bench-app-secret";
const TOKEN: &str = "bench-access-token";

fn config(state: &std::path::Path, port: u16, url: &str) -> Config {
    let text = format!(
        r#"
[daemon]
state_dir = "{}"
[api]
listen = "127.0.0.1:{port}"
[[gateway]]
name = "wa"
kind = "whatsapp-cloud"
phone_number_id = "106540352242922"
access_token = "{TOKEN}"
app_secret = "{SECRET}"
verify_token = "bench"
url = "{url}"
ports = 32
[[dialer]]
name = "dw"
provider = "wa"
interval_ms = 1
dncr = false
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
            WhatsAppCloudSim::builder()
                .access_token(TOKEN)
                .app_secret(SECRET)
                .template("order_update", "es", 2)
                .webhook_url(Some(format!(
                    "http://127.0.0.1:{port}/api/v1/gateways/wa/push"
                )))
                .statuses(StatusPlan {
                    statuses: vec![],
                    ..StatusPlan::default()
                })
                .start(),
        )
        .expect("simulator");
    let config = config(&state, port, &sim.base_url());
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let shared = Shared::new(config, store.clone(), Heartbeats::default());
    let engine = runtime.block_on(async {
        let engine = Engine::start(shared.clone()).await;
        let server =
            smsgate::api::Server::bind(smsgate::api::AppState::new(shared.clone(), engine.clone()))
                .await
                .expect("API binds");
        tokio::spawn(server.serve(shared.shutdown.clone()));
        engine
    });

    let run = |first: u64, until: State, what: &str| {
        let mut csv = String::with_capacity(n as usize * 80);
        for i in first..first + n {
            csv.push_str(&format!(
                "dw;+5989{i:07};Su pedido;1;template:order_update:es;Ana;{i}\n"
            ));
        }
        let base = count(&store, until);
        let t = Instant::now();
        let summary = runtime
            .block_on(engine.import("bench.csv".into(), std::io::Cursor::new(csv)))
            .expect("import");
        assert_eq!(summary.queued, n, "{summary:?}");
        let imported = t.elapsed();
        loop {
            let done = count(&store, until);
            if done >= base + n as i64 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "only {done} {what} after 10 min"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = t.elapsed();
        println!(
            "{n} templates, 32 channels, {what}: {:.2} s ({:.0} msg/s; the import itself {:.2} s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            imported.as_secs_f64()
        );
    };
    run(1, State::Sent, "to SENT (wamid recorded), statuses off");
    sim.set_statuses(StatusPlan {
        statuses: vec!["sent".into(), "delivered".into()],
        delay_ms: 0,
        ..StatusPlan::default()
    });
    run(
        n + 1,
        State::Delivered,
        "to DELIVERED by signed status webhooks",
    );
    let requests = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/messages"))
        .count();
    assert_eq!(requests as u64, 2 * n, "each message sent once");
    shared.shutdown.cancel();
}

/// Messages that reached `state` (or, for SENT, any state after it).
fn count(store: &Store, state: State) -> i64 {
    let sql = match state {
        State::Sent => "SELECT count(*) FROM message WHERE gateway_ref IS NOT NULL",
        _ => "SELECT count(*) FROM message WHERE state = ?1",
    };
    let code = state.code();
    store
        .read_blocking(move |c| {
            let n = if sql.contains("?1") {
                c.query_row(sql, [code], |r| r.get::<_, i64>(0))?
            } else {
                c.query_row(sql, [], |r| r.get::<_, i64>(0))?
            };
            Ok(n)
        })
        .expect("count")
}
