//! HTTP failover: a dialer sending through a channel group moves from a
//! failing Dinstar gateway to its fallback channels and back, through the
//! real daemon, with interval_ms held on every channel (timestamps taken on
//! the simulators' side) and every message sent exactly once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, VIEWER};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{DinstarSim, SimHandle};

const INTERVAL_MS: u64 = 200;

async fn sim(addr: std::net::SocketAddr) -> SimHandle {
    DinstarSim::builder()
        .ports(2)
        .listen(addr)
        .start()
        .await
        .expect("simulator starts")
}

fn gateway(name: &str, sim: &SimHandle) -> String {
    format!(
        "\n[[gateway]]\nname = \"{name}\"\nkind = \"dinstar\"\nports = 2\nurl = \"{}\"\nuser = \"admin\"\npassword = \"admin\"\ntimeout_ms = 1000\nresult_poll_ms = 200\nport_poll_s = 1\nincoming_poll_s = 60\nbreaker_failures = 2\nbreaker_probe_s = 1\n",
        sim.base_url()
    )
}

fn texts(sim: &SimHandle) -> Vec<String> {
    sim.sends().into_iter().map(|s| s.text).collect()
}

/// No two sends on one port closer than the interval, on the simulator's
/// clock (the daemon paces from the end of each send).
fn assert_paced(sim: &SimHandle, which: &str) {
    let mut by_port: HashMap<u8, Vec<Instant>> = HashMap::new();
    for s in sim.sends() {
        by_port.entry(s.port).or_default().push(s.at);
    }
    for (port, mut times) in by_port {
        times.sort();
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_millis(INTERVAL_MS),
                "{which} port {port}: two sends {gap:?} apart, under interval_ms {INTERVAL_MS}"
            );
        }
    }
}

fn send(d: &Daemon, text: &str) {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&json!({"dialer": "grp", "to": "098344384", "text": text}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
}

async fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether any channel of `gateway` can send now, as the API shows it.
fn gateway_usable(d: &Daemon, gateway: &str) -> bool {
    let ch: Value = tokio::task::block_in_place(|| {
        d.http()
            .get(d.url("/api/v1/channels"))
            .bearer_auth(VIEWER)
            .send()
            .unwrap()
            .json()
            .unwrap()
    });
    ch["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["gateway"] == gateway && c["usable"] == true)
}

fn metrics(d: &Daemon) -> String {
    d.http()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_moves_to_the_fallback_and_back_with_pacing_held() {
    let primary_addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let primary = sim(primary_addr).await;
    let fallback = sim("127.0.0.1:0".parse().unwrap()).await;
    let extra = format!(
        "{}{}\n[[channel_group]]\nname = \"grp\"\nprimary = [\"gw1\"]\nfallback = [\"gw2\"]\n\n[[dialer]]\nname = \"grp\"\nprovider = \"grp\"\ninterval_ms = {INTERVAL_MS}\ndncr = false\nretry_backoff_ms = 100\nmax_attempts = 10\n",
        gateway("gw1", &primary),
        gateway("gw2", &fallback)
    );
    let d = tokio::task::block_in_place(|| {
        let d = Daemon::start(&extra, &[("NO_COLOR", "1")]);
        d.wait_ready();
        d
    });

    // 1. Healthy: everything goes through the primary gateway.
    tokio::task::block_in_place(|| (0..4).for_each(|i| send(&d, &format!("before {i}"))));
    wait_for("4 sends on the primary", Duration::from_secs(15), || {
        primary.sends().len() == 4
    })
    .await;
    assert!(fallback.sends().is_empty());

    // 2. The primary gateway goes away: traffic moves to the fallback.
    primary.shutdown().await;
    tokio::task::block_in_place(|| (0..6).for_each(|i| send(&d, &format!("during {i}"))));
    wait_for("6 sends on the fallback", Duration::from_secs(30), || {
        fallback.sends().len() == 6
    })
    .await;
    let text = tokio::task::block_in_place(|| metrics(&d));
    assert!(
        text.contains("smsgate_failovers_total{dialer=\"grp\",to=\"fallback\"} 1"),
        "{text}"
    );

    // 3. The primary comes back: traffic moves back.
    let primary = sim(primary_addr).await;
    wait_for("the primary back in use", Duration::from_secs(30), || {
        gateway_usable(&d, "gw1")
    })
    .await;
    tokio::task::block_in_place(|| (0..4).for_each(|i| send(&d, &format!("after {i}"))));
    wait_for(
        "4 sends on the restarted primary",
        Duration::from_secs(30),
        || primary.sends().len() == 4,
    )
    .await;
    let text = tokio::task::block_in_place(|| metrics(&d));
    assert!(
        text.contains("smsgate_failovers_total{dialer=\"grp\",to=\"primary\"} 1"),
        "{text}"
    );

    let log = tokio::task::block_in_place(move || {
        let mut d = d;
        d.signal("TERM");
        assert_eq!(d.wait_exit(Duration::from_secs(10)).0, Some(0));
        d.take_stderr()
    });
    // Each switch is in the journal with its reason.
    assert!(
        log.contains("no primary channel can send: traffic moves to the fallback channels"),
        "{log}"
    );
    assert!(
        log.contains("gw1:0: "),
        "the reason names the channels: {log}"
    );
    assert!(
        log.contains("traffic moves back from the fallback channels"),
        "{log}"
    );
    // Every message exactly once, across both gateways; pacing on every port.
    let mut all = texts(&fallback);
    all.extend(texts(&primary));
    let mut want: Vec<String> = (0..6).map(|i| format!("during {i}")).collect();
    want.extend((0..4).map(|i| format!("after {i}")));
    all.sort();
    want.sort();
    assert_eq!(all, want, "each message once after the switch");
    assert_paced(&fallback, "fallback");
    assert_paced(&primary, "primary");
}

/// The case: Dinstar ports first, a GSM modem on a serial port as
/// fallback. The gateway fails, the breaker opens, traffic goes to the
/// (simulated) modem, paced; the gateway returns and traffic moves back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dinstar_moves_traffic_to_the_modem_and_back() {
    use smsgate_sim::modem::{FakeModem, ModemState};
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("ttyGSM0");
    let modem = FakeModem::start(&link, ModemState::default()).unwrap();
    let primary_addr: std::net::SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let primary = sim(primary_addr).await;
    let extra = format!(
        "{}\n[[gateway]]\nname = \"modem1\"\nkind = \"at\"\ndevice = \"{}\"\ntimeout_ms = 1500\nport_poll_s = 1\nsend_timeout_s = 5\n\n[[channel_group]]\nname = \"grp\"\nprimary = [\"gw1\"]\nfallback = [\"modem1\"]\n\n[[dialer]]\nname = \"grp\"\nprovider = \"grp\"\ninterval_ms = {INTERVAL_MS}\ndncr = false\nretry_backoff_ms = 100\nmax_attempts = 10\n",
        gateway("gw1", &primary),
        link.display()
    );
    let d = tokio::task::block_in_place(|| {
        let d = Daemon::start(&extra, &[("NO_COLOR", "1")]);
        d.wait_ready();
        d
    });
    // Let the modem finish its start-up so the fallback is ready.
    wait_for("the modem usable", Duration::from_secs(30), || {
        gateway_usable(&d, "modem1")
    })
    .await;

    tokio::task::block_in_place(|| (0..2).for_each(|i| send(&d, &format!("gateway {i}"))));
    wait_for("2 sends on the gateway", Duration::from_secs(15), || {
        primary.sends().len() == 2
    })
    .await;

    primary.shutdown().await;
    tokio::task::block_in_place(|| (0..4).for_each(|i| send(&d, &format!("modem {i}"))));
    let modem_texts = || -> Vec<String> {
        modem
            .state()
            .submits()
            .iter()
            .filter_map(|s| s.user_data.body.text())
            .collect()
    };
    wait_for("4 sends on the modem", Duration::from_secs(60), || {
        modem_texts().len() == 4
    })
    .await;

    let primary = sim(primary_addr).await;
    wait_for("the gateway back in use", Duration::from_secs(30), || {
        gateway_usable(&d, "gw1")
    })
    .await;
    tokio::task::block_in_place(|| (0..2).for_each(|i| send(&d, &format!("back {i}"))));
    wait_for(
        "2 sends on the gateway again",
        Duration::from_secs(30),
        || primary.sends().len() == 2,
    )
    .await;

    let mut got = modem_texts();
    got.sort();
    assert_eq!(
        got,
        ["modem 0", "modem 1", "modem 2", "modem 3"],
        "each message once on the modem"
    );
    let mut back = texts(&primary);
    back.sort();
    assert_eq!(back, ["back 0", "back 1"]);
    // interval_ms held on the modem's channel too.
    let times: Vec<Instant> = modem.state().sent.iter().map(|s| s.at).collect();
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(INTERVAL_MS),
            "modem sends {:?} apart",
            w[1] - w[0]
        );
    }
    assert_paced(&primary, "primary");
    let text = tokio::task::block_in_place(|| metrics(&d));
    assert!(
        text.contains("smsgate_failovers_total{dialer=\"grp\",to=\"fallback\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("smsgate_failovers_total{dialer=\"grp\",to=\"primary\"} 1"),
        "{text}"
    );
    tokio::task::block_in_place(move || drop(d));
}
