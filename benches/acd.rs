//! The ACD at the sizes issue 14 names: `cargo bench --bench acd`.
//!
//! A real SQLite file with 1,000 agents, all ready and members of two
//! campaigns: `busy`, where each holds its cap (4) and 10,000 more
//! customers wait, and `live`, where they have room. With the real
//! assigner task running, customers write to `live` one at a time; each
//! arrival is timed from the start of the write that stores it (as the
//! inbound path does: message, interaction, queue, then the assignment
//! pass in the same transaction) to the moment its assignment (and the
//! agent's `interaction.assigned` event) is committed and readable: p50,
//! p99 and the worst, in ms. A bare commit is timed first, for the floor. Then the
//! monitor of a campaign with 500 members (each holding 2, 100 waiting) is
//! read many times: what `GET /api/v1/campaigns/{name}/monitor` reads
//! (members with their load, waiting customers, today's figures).
//!
//! `cargo bench --bench acd -- 200` times fewer arrivals (default 1,000).

use std::time::{Duration, Instant};

use smsgate::config::Config;
use smsgate::runtime::{Heartbeats, Shared};
use smsgate::store::inbound::{self, NewInbound};
use smsgate::store::{Store, acd, interactions};

const AGENTS: usize = 1000;
const WAITING: usize = 10_000;
const CAP: usize = 4;
const MONITORED: usize = 500;

fn config(state: &std::path::Path) -> Config {
    let text = format!(
        r#"
[daemon]
state_dir = "{}"
[[gateway]]
name = "gw"
kind = "sim"
ports = 4
[[campaign]]
name = "busy"
provider = "gw"
did_ports = ["gw:0"]
max_interactions_per_agent = {CAP}
acd_max_waiting = 100000
[[campaign]]
name = "live"
provider = "gw"
did_ports = ["gw:1"]
max_interactions_per_agent = {CAP}
acd_max_waiting = 100000
[[campaign]]
name = "mon"
provider = "gw"
did_ports = ["gw:2"]
max_interactions_per_agent = 2
acd_max_waiting = 100000
"#,
        state.display()
    );
    Config::from_source(&state.join("bench.toml"), &text).expect("bench config")
}

/// A customer's first message to `campaign`, stored and queued as the
/// inbound path does; the interaction's id.
fn arrive(
    tx: &rusqlite::Transaction<'_>,
    campaign: &str,
    port: u32,
    n: usize,
) -> Result<i64, smsgate::store::StoreError> {
    let number = format!("+5989{:07}", n);
    let id = inbound::insert(
        tx,
        &NewInbound {
            gateway: "gw".into(),
            port: Some(port),
            source_key: format!("{campaign}-{n}"),
            sender: number.clone(),
            number: Some(number.clone()),
            recipient: None,
            text: "hola".into(),
            sent_at: None,
            campaign: Some(campaign.into()),
        },
    )?
    .expect("new");
    let j = interactions::record_inbound(
        tx,
        &interactions::Arrival {
            campaign,
            customer: &number,
            gateway: "gw",
            port: Some(port),
            recipient: None,
            inbound_id: id,
            text: "hola",
        },
        86_400_000,
    )?;
    acd::customer_wrote(tx, j.interaction, smsgate::now_ms())?;
    acd::enqueue(tx, j.interaction, campaign, 100_000)?;
    Ok(j.interaction)
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*v.last().unwrap()),
        v.len()
    )
}

fn main() {
    let arrivals: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let config = config(&state);
    let store = Store::open(&state, smsgate::runtime::Heartbeat::detached()).expect("store");
    let queues: Vec<(String, smsgate::config::Strategy, u32)> = config
        .campaigns
        .iter()
        .map(|c| (c.name.clone(), c.strategy, c.max_interactions_per_agent))
        .collect();

    let t = Instant::now();
    let ids: Vec<String> = (0..AGENTS).map(|i| format!("a{i:04}")).collect();
    let all = ids.clone();
    store
        .write_blocking(move |tx| {
            for id in &all {
                acd::put_agent(tx, id, id, None, "bench")?;
                acd::change(tx, id, &acd::Change::Login, "bench")?;
            }
            acd::add_members(tx, &["busy".into(), "live".into()], &all, "bench")?;
            acd::add_members(tx, &["mon".into()], &all[..MONITORED], "bench")?;
            Ok(())
        })
        .unwrap();
    // Fill "busy" and "mon" (no room left in either), "mon" first so that
    // its 100 extra wait.
    let q = queues.clone();
    store
        .write_blocking(move |tx| {
            for n in 0..MONITORED * 2 {
                arrive(tx, "mon", 2, 1_000_000 + n)?;
            }
            smsgate::acd::assign_pass(tx, &q, smsgate::now_ms())?;
            for n in 0..100 {
                arrive(tx, "mon", 2, 2_000_000 + n)?;
            }
            for n in 0..AGENTS * CAP + WAITING {
                arrive(tx, "busy", 0, n)?;
            }
            smsgate::acd::assign_pass(tx, &q, smsgate::now_ms())?;
            Ok(())
        })
        .unwrap();
    let waiting = store
        .read_blocking(|c| acd::waiting_count(c, "busy"))
        .unwrap();
    assert_eq!(waiting as usize, WAITING, "every agent full in busy");
    eprintln!(
        "set up {AGENTS} agents, {} assigned and {WAITING} waiting in busy in {:.1} s",
        AGENTS * CAP,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let shared = Shared::new(config.clone(), store.clone(), Heartbeats::default());
    let stop = tokio_util::sync::CancellationToken::new();
    rt.spawn(smsgate::acd::run(shared.clone(), stop.clone()));

    // What one commit costs on this disk (synchronous = FULL): the floor
    // under any latency that includes storing the message.
    let mut commits = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        store
            .write_blocking(|tx| {
                smsgate::store::events::append(tx, "bench", None, None, &serde_json::json!({}))
            })
            .unwrap();
        commits.push(start.elapsed());
    }
    println!("a bare commit: {}", percentiles(commits));

    let mut latencies = Vec::with_capacity(arrivals);
    let passes = std::sync::Arc::new(std::sync::Mutex::new(Vec::with_capacity(arrivals)));
    for n in 0..arrivals {
        let start = Instant::now();
        // As the inbound path does: store, queue, and the assignment pass
        // at the end of the same transaction.
        let (q, p) = (queues.clone(), passes.clone());
        let id = store
            .write_blocking(move |tx| {
                let id = arrive(tx, "live", 1, 5_000_000 + n)?;
                let pass = Instant::now();
                smsgate::acd::assign_pass(tx, &q, smsgate::now_ms())?;
                p.lock().unwrap().push(pass.elapsed());
                Ok(id)
            })
            .unwrap();
        loop {
            let held = store.read_blocking(move |c| acd::held(c, id)).unwrap();
            if held.is_some_and(|h| h.agent.is_some()) {
                break;
            }
            std::hint::spin_loop();
        }
        latencies.push(start.elapsed());
    }
    println!(
        "assignment, arrival to the agent's event committed ({AGENTS} agents, {WAITING} waiting): {}",
        percentiles(latencies)
    );
    let passes = std::mem::take(&mut *passes.lock().unwrap());
    println!(
        "of which the assignment pass alone (snapshot, decision, writes; no commit): {}",
        percentiles(passes)
    );

    let mut times = Vec::new();
    for _ in 0..300 {
        let cfg = config.clone();
        let start = Instant::now();
        store
            .read_blocking(move |c| {
                let since = smsgate::acd::midnight(&cfg, "mon", jiff::Timestamp::now());
                let loads = acd::member_loads(c, "mon", since)?;
                let waiting = acd::waiting_customers(c, "mon")?;
                let figures =
                    smsgate::acd::campaign_figures(c, &cfg, "mon", jiff::Timestamp::now())?;
                assert_eq!(loads.len(), MONITORED);
                assert_eq!(waiting.len(), 100);
                Ok(figures)
            })
            .unwrap();
        times.push(start.elapsed());
    }
    println!(
        "monitor snapshot of a campaign with {MONITORED} members: {}",
        percentiles(times)
    );
    stop.cancel();
}
