//! The `dinstar` transport driven end to end by the engine, in process,
//! against the simulated gateway on real loopback sockets and a real
//! SQLite store.

use std::time::{Duration, Instant};

use smsgate::config::{Config, GatewaySettings};
use smsgate::engine::Engine;
use smsgate::runtime::{Heartbeat, Heartbeats, Shared};
use smsgate::store::spool::{self, NewMessage, State};
use smsgate::store::{Store, inbound};
use smsgate_sim::dinstar::{DinstarSim, SimHandle};

struct Rig {
    _dir: tempfile::TempDir,
    store: Store,
    shared: Shared,
    engine: Engine,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Opts {
    password: &'static str,
    dial: &'static str,
    result_poll_ms: u64,
    push_allow: &'static str,
    api_port: u16,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            password: "admin",
            dial: "0.3",
            result_poll_ms: 100,
            push_allow: "",
            api_port: 0,
        }
    }
}

fn config(dir: &std::path::Path, sim: &SimHandle, o: &Opts) -> Config {
    let api_port = if o.api_port == 0 {
        free_port()
    } else {
        o.api_port
    };
    let push_allow = if o.push_allow.is_empty() {
        String::new()
    } else {
        format!("push_allow = [{}]", o.push_allow)
    };
    let text = format!(
        r#"
[daemon]
state_dir = "{state}"

[api]
listen = "127.0.0.1:{api_port}"

[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "{password}"
timeout_ms = 3000
result_poll_ms = {result_poll}
port_poll_s = 1
incoming_poll_s = 1
{push_allow}

[[dialer]]
name = "d1"
provider = "gw"
dial = "{dial}"
interval_ms = 10
dncr = false
max_attempts = 3
retry_backoff_ms = 100
"#,
        state = dir.join("state").display(),
        url = sim.base_url(),
        password = o.password,
        result_poll = o.result_poll_ms,
        dial = o.dial,
    );
    let path = dir.join("smsgate.toml");
    std::fs::write(&path, &text).unwrap();
    Config::from_source(&path, &text).expect("valid test config")
}

async fn rig(sim: &SimHandle, o: Opts) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), sim, &o);
    let store = Store::open(&dir.path().join("state"), Heartbeat::detached()).unwrap();
    rig_on(dir, store, cfg, o.api_port != 0).await
}

async fn rig_on(dir: tempfile::TempDir, store: Store, cfg: Config, serve_api: bool) -> Rig {
    let shared = Shared::new(cfg, store.clone(), Heartbeats::default());
    let engine = Engine::start(shared.clone()).await;
    if serve_api {
        let server =
            smsgate::api::Server::bind(smsgate::api::AppState::new(shared.clone(), engine.clone()))
                .await
                .expect("API binds");
        tokio::spawn(server.serve(shared.shutdown.clone()));
    }
    Rig {
        _dir: dir,
        store,
        shared,
        engine,
    }
}

impl Rig {
    async fn queue(&self, to: &str, text: &str) -> i64 {
        let m = NewMessage {
            dialer: "d1".into(),
            destination: to.into(),
            number: Some(to.into()),
            text: text.into(),
            priority: 100,
            client_id: None,
            import_id: None,
            encoding: "auto",
            segments: 1,
            state: State::ToProcess,
            template: None,
        };
        let id = self
            .store
            .write(move |tx| {
                spool::insert(tx, &m).map(|i| match i {
                    spool::Inserted::New(m) | spool::Inserted::Replayed(m) => m.id,
                })
            })
            .await
            .unwrap();
        self.engine.wake("d1");
        id
    }

    async fn message(&self, id: i64) -> spool::Message {
        self.store
            .read(move |c| spool::get(c, id))
            .await
            .unwrap()
            .expect("message exists")
    }

    async fn wait_state(&self, id: i64, want: State, within: Duration) -> spool::Message {
        let deadline = Instant::now() + within;
        loop {
            let m = self.message(id).await;
            if m.state == want.code() || Instant::now() >= deadline {
                assert_eq!(
                    m.state_name,
                    want.name(),
                    "message {id} did not reach {} in time: {m:?}",
                    want.name()
                );
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the message has left (SENT, or already DELIVERED).
    async fn wait_left(&self, id: i64, within: Duration) -> spool::Message {
        let deadline = Instant::now() + within;
        loop {
            let m = self.message(id).await;
            let left = m.state == State::Sent.code() || m.state == State::Delivered.code();
            if left || Instant::now() >= deadline {
                assert!(left, "message {id} did not leave in time: {m:?}");
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn inbound(&self) -> Vec<inbound::Inbound> {
        self.store
            .read(|c| {
                inbound::list(
                    c,
                    &inbound::InboundFilter {
                        limit: 1000,
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap()
            .0
    }

    fn channel_reason(&self, port: u32) -> (bool, String) {
        let ch = self
            .engine
            .channels()
            .into_iter()
            .find(|c| c.port == port)
            .expect("channel");
        (ch.usable, ch.reason)
    }

    async fn stop(self) {
        self.shared.shutdown.cancel();
        self.engine.stop(Duration::from_secs(2)).await;
    }

    /// Stops the engine (as the daemon stopping) and hands back its state
    /// directory and store, for a new engine on them.
    async fn stop_keeping_state(self) -> (tempfile::TempDir, Store) {
        self.shared.shutdown.cancel();
        self.engine.stop(Duration::from_secs(2)).await;
        (self._dir, self.store)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(
            smsgate::tls::client_config(&smsgate::tls::TlsVerify::System).unwrap(),
        )
        .no_proxy()
        .build()
        .unwrap()
}

async fn eventually<F: FnMut() -> bool>(within: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goes_out_on_the_asked_port_with_encoding_and_user_id_then_sent_and_delivered_by_polling() {
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            dial: "2",
            ..Default::default()
        },
    )
    .await;
    let texts = [
        "Hola Muñoz, ¿todo bien? 100€",
        "¿Cómo estás? Canción de la mañana 😀👍",
        "Plain ASCII",
    ];
    let mut ids = Vec::new();
    for t in texts {
        ids.push(rig.queue("+59899123456", t).await);
    }
    let mut delivered = Vec::new();
    for &id in &ids {
        delivered.push(
            rig.wait_state(id, State::Delivered, Duration::from_secs(10))
                .await,
        );
    }
    let sends = sim.sends();
    assert_eq!(sends.len(), 3, "one send per message: {sends:?}");
    for (m, text) in delivered.iter().zip(texts) {
        let s = sends
            .iter()
            .find(|s| s.text == text)
            .expect("the gateway got the text intact");
        assert_eq!(s.port, 2, "pinned to the dialer's port");
        assert_eq!(
            s.user_id.map(|u| u.to_string()),
            m.gateway_ref,
            "user_id is our reference"
        );
        // What the handset shows: a wrong encoding would turn characters
        // into '?'.
        assert_eq!(s.handset_text, text, "arrives intact");
        assert!(s.request_status_report);
        // SENT on the way: the acceptance was recorded before the report.
        assert!(m.sent_at.is_some() && m.sent_at <= m.final_at);
    }
    use smsgate::transport::dinstar::Encoding;
    assert_eq!(
        sends.iter().find(|s| s.text == texts[0]).unwrap().encoding,
        Encoding::Gsm7Bit
    );
    assert_eq!(
        sends.iter().find(|s| s.text == texts[1]).unwrap().encoding,
        Encoding::Unicode
    );
    assert_eq!(
        sends.iter().find(|s| s.text == texts[2]).unwrap().encoding,
        Encoding::Gsm7Bit
    );
    for r in sim.requests_to("/api/send_sms") {
        assert_eq!(r.ports, vec![2]);
    }
    // No push configured: results and reports came by polling, by user_id.
    let polled: Vec<u64> = sim
        .requests_to("/api/query_sms_result")
        .iter()
        .flat_map(|r| r.user_ids.clone())
        .collect();
    for s in &sends {
        assert!(polled.contains(&s.user_id.unwrap()));
    }
    assert!(!sim.requests_to("/api/query_sms_deliver_status").is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_and_inbound_by_push_once_with_poll() {
    let api_port = free_port();
    let sim = DinstarSim::builder()
        .ports(4)
        .push_url(Some(format!(
            "http://127.0.0.1:{api_port}/api/v1/gateways/gw/push"
        )))
        .start()
        .await
        .unwrap();
    // Result polling far away: anything that happens quickly came by push.
    let rig = rig(
        &sim,
        Opts {
            dial: "1",
            result_poll_ms: 60_000,
            push_allow: "\"127.0.0.1\"",
            api_port,
            ..Default::default()
        },
    )
    .await;
    let id = rig
        .queue("59899000111", "Acción rápida: ¡ya está! 🚀")
        .await;
    let m = rig
        .wait_state(id, State::Delivered, Duration::from_secs(10))
        .await;
    assert!(m.gateway_ref.is_some());
    assert!(
        sim.requests_to("/api/query_sms_deliver_status").is_empty(),
        "the report came by push"
    );
    assert!(sim.pushes().iter().any(|p| p.outcome == Ok(200)));

    let sent_id = sim.inject_incoming(1, "+59899777888", "Quiero información 😀 ñandú");
    assert!(
        eventually(Duration::from_secs(5), || sim.pushes().iter().any(|p| p
            .body
            .get("sms")
            .is_some()
            && p.outcome == Ok(200)))
        .await
    );
    // Let the poller see it too (incoming_poll_s = 1).
    let polls_before = sim.requests_to("/api/query_incoming_sms").len();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.requests_to("/api/query_incoming_sms").len() < polls_before + 2
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rig.inbound().await;
    assert_eq!(got.len(), 1, "stored once: {got:?}");
    assert_eq!(got[0].text, "Quiero información 😀 ñandú");
    assert_eq!(got[0].sender, "+59899777888");
    assert_eq!(got[0].number.as_deref(), Some("+59899777888"));
    assert_eq!(got[0].port, Some(1));
    assert!(got[0].sent_at.is_some());
    let _ = sent_id;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_from_an_address_not_allowed_is_refused() {
    let api_port = free_port();
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            push_allow: "\"10.9.9.9\"",
            api_port,
            ..Default::default()
        },
    )
    .await;
    let http = http();
    let url = format!("http://127.0.0.1:{api_port}/api/v1/gateways/gw/push");
    let body = r#"{"sn":"x","sms":[{"incoming_sms_id":9,"port":0,"number":"1","text":"fake"}]}"#;
    let r = http.post(&url).body(body).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "push_not_allowed");
    let r = http
        .post(format!(
            "http://127.0.0.1:{api_port}/api/v1/gateways/nope/push"
        ))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rig.inbound().await.is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_bodies_get_problem_json_and_good_ones_200() {
    let api_port = free_port();
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            push_allow: "\"127.0.0.1\"",
            api_port,
            ..Default::default()
        },
    )
    .await;
    let http = http();
    let url = format!("http://127.0.0.1:{api_port}/api/v1/gateways/gw/push");
    for bad in ["not json", "[1,2]", r#"{"sn":"x","nothing":1}"#] {
        let r = http.post(&url).body(bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let p: serde_json::Value = r.json().await.unwrap();
        assert_eq!(p["code"], "invalid_push");
    }
    let good = r#"{"sn":"da00-0030-1901-2817","sms":[{"incoming_sms_id":77,"port":0,"number":"59899","timestamp":"2024-05-01 10:05:00","text":"ok"}]}"#;
    let r = http.post(&url).body(good).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 200);
    assert!(eventually(Duration::from_secs(3), || true).await);
    let deadline = Instant::now() + Duration::from_secs(3);
    while rig.inbound().await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rig.inbound().await.len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_by_poll_is_stored_once_and_the_high_water_mark_survives_a_restart() {
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim, &Opts::default());
    let store = Store::open(&dir.path().join("state"), Heartbeat::detached()).unwrap();
    let a = sim.inject_incoming(0, "59899111222", "Buenos días, ¿cuánto cuesta?");
    let b = sim.inject_incoming(3, "59899333444", "Gracias 🙏");
    let shared = Shared::new(cfg.clone(), store.clone(), Heartbeats::default());
    let engine = Engine::start(shared.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = store
            .read(|c| {
                inbound::list(
                    c,
                    &inbound::InboundFilter {
                        limit: 100,
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap()
            .0
            .len();
        if n == 2 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Several more polls: nothing stored twice.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let got = store
        .read(|c| {
            inbound::list(
                c,
                &inbound::InboundFilter {
                    limit: 100,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
        .0;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got.iter()
            .any(|m| m.text == "Gracias 🙏" && m.port == Some(3))
    );
    assert!(
        got.iter()
            .any(|m| m.text == "Buenos días, ¿cuánto cuesta?" && m.port == Some(0))
    );
    let hwm = store
        .read(|c| inbound::kv_get(c, "dinstar.incoming_hwm.gw"))
        .await
        .unwrap();
    assert_eq!(hwm, Some(b.max(a) as i64));
    for r in sim.requests_to("/api/query_incoming_sms") {
        assert!(
            r.query.as_deref().unwrap_or("").contains("flag=all"),
            "{r:?}"
        );
    }
    shared.shutdown.cancel();
    engine.stop(Duration::from_secs(2)).await;

    // A new run asks only above the mark.
    let before = sim.requests_to("/api/query_incoming_sms").len();
    let shared = Shared::new(cfg, store.clone(), Heartbeats::default());
    let engine = Engine::start(shared.clone()).await;
    assert!(
        eventually(Duration::from_secs(5), || sim
            .requests_to("/api/query_incoming_sms")
            .len()
            > before)
        .await
    );
    let first = &sim.requests_to("/api/query_incoming_sms")[before];
    assert!(
        first
            .query
            .as_deref()
            .unwrap_or("")
            .contains(&format!("incoming_sms_id={}", b.max(a))),
        "{first:?}"
    );
    shared.shutdown.cancel();
    engine.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_550_moves_the_message_to_another_port() {
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            dial: "0.1",
            ..Default::default()
        },
    )
    .await;
    // Wait for the ports to be known usable, then make port 0 answer 550.
    assert!(
        eventually(Duration::from_secs(5), || rig.channel_reason(0).0
            && rig.channel_reason(1).0)
        .await
    );
    sim.script_next_send(0, 550);
    let id = rig.queue("59899123123", "mensaje").await;
    let m = rig
        .wait_state(id, State::Delivered, Duration::from_secs(10))
        .await;
    let sends = sim.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].port, 1, "went out on the other port");
    assert_eq!(sends[0].user_id.map(|u| u.to_string()), m.gateway_ref);
    let refused: Vec<_> = sim
        .requests_to("/api/send_sms")
        .into_iter()
        .filter(|r| r.error_code == Some(550))
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].ports, vec![0]);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_400_fails_and_a_text_over_670_is_never_sent() {
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            dial: "0",
            ..Default::default()
        },
    )
    .await;
    assert!(eventually(Duration::from_secs(5), || rig.channel_reason(0).0).await);
    sim.script_next_send(0, 400);
    let bad = rig.queue("59899000001", "refused").await;
    let m = rig
        .wait_state(bad, State::Failed, Duration::from_secs(10))
        .await;
    assert!(m.error.unwrap_or_default().contains("400"));
    let long = "a".repeat(671);
    let too_long = rig.queue("59899000002", &long).await;
    let m = rig
        .wait_state(too_long, State::Failed, Duration::from_secs(10))
        .await;
    assert!(m.error.unwrap_or_default().contains("670"), "clear error");
    assert!(
        sim.requests_to("/api/send_sms").iter().all(|r| r
            .body
            .as_ref()
            .and_then(|b| b["text"].as_str())
            != Some(long.as_str())),
        "the long text never reached the gateway"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_backs_off_and_the_channels_say_why() {
    let sim = DinstarSim::builder()
        .ports(2)
        .credentials("admin", "right-one")
        .start()
        .await
        .unwrap();
    let rig = rig(
        &sim,
        Opts {
            password: "wrong-one",
            ..Default::default()
        },
    )
    .await;
    let id = rig.queue("59899000003", "no saldrá").await;
    // Port polls every second, incoming polls every second, results every
    // 100 ms: without the backoff this would be a dozen bad logins.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sim.bad_auth_count(), 1, "{:?}", sim.auth_counts());
    assert!(!sim.is_locked_out("127.0.0.1".parse().unwrap()));
    let (usable, reason) = rig.channel_reason(0);
    assert!(!usable);
    assert!(
        reason.contains("refused our password") && reason.contains("retrying in"),
        "{reason}"
    );
    assert!(sim.requests_to("/api/send_sms").is_empty());
    let m = rig.message(id).await;
    assert_eq!(
        m.state,
        State::ToProcess.code(),
        "kept for later, not failed"
    );
    // The password never appears in what the engine shows.
    let shown = serde_json::to_string(&rig.engine.channels()).unwrap();
    assert!(!shown.contains("wrong-one"));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_losing_its_sim_is_taken_out_of_use_and_back_in() {
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            dial: "0.1",
            ..Default::default()
        },
    )
    .await;
    assert!(eventually(Duration::from_secs(5), || rig.channel_reason(1).0).await);
    sim.set_port_sim(1, false);
    assert!(
        eventually(Duration::from_secs(5), || rig.channel_reason(1)
            == (false, "no SIM in port 1".to_string()))
        .await,
        "{:?}",
        rig.channel_reason(1)
    );
    let health = rig.engine.channels()[1].health.clone();
    assert_eq!(health.sim, Some(false));
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(rig.queue("59899000004", &format!("sin sim {i}")).await);
    }
    for &id in &ids {
        rig.wait_left(id, Duration::from_secs(10)).await;
    }
    assert!(sim.sends().iter().all(|s| s.port == 0), "{:?}", sim.sends());

    sim.set_port_sim(1, true);
    assert!(eventually(Duration::from_secs(5), || rig.channel_reason(1).0).await);
    let h = rig.engine.channels()[1].health.clone();
    assert_eq!(h.registered, Some(true));
    assert!(h.imsi.is_some() && h.signal.is_some());
    let n = sim.sends().len();
    for i in 0..4 {
        ids.push(rig.queue("59899000004", &format!("con sim {i}")).await);
    }
    for &id in &ids {
        rig.wait_left(id, Duration::from_secs(10)).await;
    }
    assert!(sim.sends()[n..].iter().any(|s| s.port == 1), "back in use");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_left_in_sending_are_reconciled_by_user_id_and_never_resent() {
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &sim,
        &Opts {
            dial: "0",
            ..Default::default()
        },
    );
    let store = Store::open(&dir.path().join("state"), Heartbeat::detached()).unwrap();
    // Two messages a crash left in SENDING: the gateway took the first, the
    // second never reached it.
    let ids = left_in_sending(&store, &sim, "59899000005").await;
    let (taken, taken_ref) = ids[0];
    let rig = rig_on(dir, store, cfg, false).await;
    let m = rig
        .wait_state(taken, State::Delivered, Duration::from_secs(10))
        .await;
    assert_eq!(m.gateway_ref, Some(taken_ref.to_string()));
    // The one that never arrived goes again once the gateway's grace
    // (three times its 3 s timeout) has passed since the start.
    let (lost, lost_ref) = ids[1];
    let m = rig
        .wait_state(lost, State::Delivered, Duration::from_secs(30))
        .await;
    assert_ne!(
        m.gateway_ref,
        Some(lost_ref.to_string()),
        "sent again with a new reference"
    );
    let sends = sim.sends();
    assert_eq!(
        sends.iter().filter(|s| s.text == "tomado").count(),
        1,
        "never resent: {sends:?}"
    );
    assert_eq!(sends.iter().filter(|s| s.text == "perdido").count(), 1);
    rig.stop().await;
}

/// Every text the gateway took, with how many times it took it; panics
/// when one user_id went out twice.
fn sent_per_text(sim: &SimHandle) -> std::collections::HashMap<String, usize> {
    let mut by_text = std::collections::HashMap::new();
    let mut user_ids = std::collections::HashSet::new();
    for s in sim.sends() {
        let uid = s.user_id.expect("every send carries a user_id");
        assert!(user_ids.insert(uid), "user_id {uid} went out twice: {s:?}");
        *by_text.entry(s.text).or_insert(0) += 1;
    }
    by_text
}

/// Issue 11 item 14: the gateway answers one `send_sms` only after the
/// client's 3 s timeout, and acts on it at the end of its 5 s hold, while
/// 300 messages flow through the other ports. Asking by user_id right
/// after the timeout finds nothing yet; that must not read as "not sent".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_answered_after_the_timeout_goes_out_once_while_traffic_flows() {
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let rig = rig(&sim, Opts::default()).await;
    assert!(
        eventually(Duration::from_secs(5), || (0..4)
            .all(|p| rig.channel_reason(p).0))
        .await
    );
    // The first message to reach the gateway is held past the timeout.
    sim.hold_next_send(Duration::from_secs(5));
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            rig.queue(&format!("5989910{i:04}"), &format!("lento {i}"))
                .await,
        );
    }
    for &id in &ids {
        rig.wait_left(id, Duration::from_secs(60)).await;
    }
    assert!(
        eventually(Duration::from_secs(10), || sim.sends_on_hold() == 0).await,
        "the held send was taken"
    );
    // Give a wrong resend every chance to happen before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by_text = sent_per_text(&sim);
    let twice: Vec<_> = by_text.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(by_text.len(), 300, "every message went out");
    let held = sim
        .requests_to("/api/send_sms")
        .into_iter()
        .find(|r| r.status.is_none())
        .expect("the held request is recorded");
    let held_uid = held.user_ids[0];
    let mut in_doubt = None;
    for &id in &ids {
        let m = rig.message(id).await;
        assert!(
            m.state_name == "SENT" || m.state_name == "DELIVERED",
            "{m:?}"
        );
        assert_eq!(m.attempts, 1, "one attempt each: {m:?}");
        if m.gateway_ref.as_deref() == Some(held_uid.to_string().as_str()) {
            in_doubt = Some(m);
        }
    }
    let m = in_doubt.expect("the held message is SENT under the user_id it went out with");
    // Its results and report are followed like any other's.
    rig.wait_state(m.id, State::Delivered, Duration::from_secs(10))
        .await;
    rig.stop().await;
}

/// Issue 11 item 14, the second half: while the gateway drops every
/// `query_sms_result` for 8 s, two sends are answered after the timeout.
/// The questions that fail are asked again, so both end SENT (not
/// UNKNOWN), and nothing goes out twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unclear_sends_are_asked_about_again_while_result_queries_fail() {
    use smsgate_sim::dinstar::HttpFault;
    let sim = DinstarSim::builder().ports(4).start().await.unwrap();
    let rig = rig(&sim, Opts::default()).await;
    assert!(
        eventually(Duration::from_secs(5), || (0..4)
            .all(|p| rig.channel_reason(p).0))
        .await
    );
    sim.fault_on_for(
        "/api/query_sms_result",
        HttpFault::Drop,
        Duration::from_secs(8),
    );
    sim.hold_next_send(Duration::from_secs(4));
    sim.hold_next_send(Duration::from_secs(4));
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            rig.queue(&format!("5989920{i:04}"), &format!("sin respuesta {i}"))
                .await,
        );
    }
    for &id in &ids {
        let m = rig.wait_left(id, Duration::from_secs(60)).await;
        assert_eq!(m.attempts, 1, "{m:?}");
    }
    assert!(eventually(Duration::from_secs(10), || sim.sends_on_hold() == 0).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let by_text = sent_per_text(&sim);
    assert!(
        by_text.values().all(|n| *n == 1),
        "sent more than once: {by_text:?}"
    );
    assert_eq!(by_text.len(), 20);
    assert!(
        sim.requests_to("/api/query_sms_result")
            .iter()
            .any(|r| r.status.is_none()),
        "some questions were dropped"
    );
    for &id in &ids {
        rig.wait_state(id, State::Delivered, Duration::from_secs(15))
            .await;
    }
    rig.stop().await;
}

/// After a restart, a reconcile question that fails is asked again, not
/// settled UNKNOWN at once; and a message the gateway does not know is
/// sent again only once it could no longer be on its way (the grace,
/// counted from the start, since the last run may have sent it just
/// before it died).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_whose_questions_fail_asks_again_and_sends_none_twice() {
    use smsgate_sim::dinstar::HttpFault;
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &sim,
        &Opts {
            dial: "0",
            ..Default::default()
        },
    );
    let store = Store::open(&dir.path().join("state"), Heartbeat::detached()).unwrap();
    let ids = left_in_sending(&store, &sim, "59899000015").await;
    let (taken, taken_ref) = ids[0];
    // The gateway cannot answer questions for the first seconds.
    sim.fault_on_for(
        "/api/query_sms_result",
        HttpFault::Http500,
        Duration::from_secs(4),
    );
    let started = Instant::now();
    let rig = rig_on(dir, store, cfg, false).await;
    let m = rig
        .wait_state(taken, State::Delivered, Duration::from_secs(20))
        .await;
    assert_eq!(m.gateway_ref, Some(taken_ref.to_string()));
    assert_eq!(m.attempts, 1);
    let (lost, lost_ref) = ids[1];
    let m = rig
        .wait_state(lost, State::Delivered, Duration::from_secs(30))
        .await;
    assert_ne!(
        m.gateway_ref,
        Some(lost_ref.to_string()),
        "sent again with a new reference"
    );
    let resent = sim
        .sends()
        .into_iter()
        .find(|s| s.text == "perdido")
        .expect("sent again");
    // Default grace: three times the 3 s timeout, from the start.
    assert!(
        resent.at >= started + Duration::from_secs(9),
        "resent {:?} after the start, within the grace",
        resent.at - started
    );
    let by_text = sent_per_text(&sim);
    assert_eq!(by_text.get("tomado"), Some(&1), "never resent: {by_text:?}");
    assert_eq!(by_text.get("perdido"), Some(&1));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_result_after_acceptance_is_retried_on_the_gateway() {
    let sim = DinstarSim::builder().ports(2).start().await.unwrap();
    let rig = rig(
        &sim,
        Opts {
            dial: "0",
            ..Default::default()
        },
    )
    .await;
    assert!(eventually(Duration::from_secs(5), || rig.channel_reason(0).0).await);
    sim.fail_next_on_network(0);
    let id = rig.queue("59899000006", "segundo intento").await;
    let m = rig
        .wait_state(id, State::Delivered, Duration::from_secs(15))
        .await;
    assert_eq!(m.attempts, 2);
    let sends = sim.sends();
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[0].user_id, sends[1].user_id);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_left_sent_by_a_restart_get_their_delivery_reports() {
    // Reports only when the test says so.
    let sim = DinstarSim::builder()
        .ports(2)
        .deliver_delay(None)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &sim,
        &Opts {
            dial: "0",
            ..Default::default()
        },
    );
    let store = Store::open(&dir.path().join("state"), Heartbeat::detached()).unwrap();
    let rig = rig_on(dir, store, cfg.clone(), false).await;
    let ok = rig.queue("59899000011", "llegará").await;
    let bad = rig.queue("59899000012", "no llegará").await;
    let old = rig.queue("59899000013", "demasiado viejo").await;
    let mut user_ids = Vec::new();
    for id in [ok, bad, old] {
        let m = rig
            .wait_state(id, State::Sent, Duration::from_secs(10))
            .await;
        user_ids.push(m.gateway_ref.unwrap().parse::<u64>().unwrap());
    }
    // The first run learns the gateway has sent them (SENT_OK), then stops
    // with their reports still to come.
    let asked = |uids: &[u64]| {
        let polled: Vec<u64> = sim
            .requests_to("/api/query_sms_result")
            .iter()
            .flat_map(|r| r.user_ids.clone())
            .collect();
        uids.iter().all(|u| polled.contains(u))
    };
    assert!(eventually(Duration::from_secs(5), || asked(&user_ids)).await);
    let (dir, store) = rig.stop_keeping_state().await;
    // One of them was sent longer ago than a gateway is trusted to
    // remember: it is not asked about again.
    store
        .write(move |tx| {
            tx.execute(
                "UPDATE message SET sent_at = sent_at - 4 * 24 * 3600 * 1000 WHERE id = ?1",
                [old],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    for id in [ok, bad, old] {
        assert_eq!(
            spool_state(&store, id).await,
            State::Sent,
            "no report before the restart"
        );
    }

    let asked_before = sim.requests_to("/api/query_sms_result").len();
    let rig = rig_on(dir, store, cfg, false).await;
    assert!(sim.deliver(user_ids[0], 0));
    assert!(sim.deliver(user_ids[1], 69));
    assert!(sim.deliver(user_ids[2], 0));
    let m = rig
        .wait_state(ok, State::Delivered, Duration::from_secs(10))
        .await;
    assert_eq!(m.attempts, 1);
    let m = rig
        .wait_state(bad, State::Undelivered, Duration::from_secs(10))
        .await;
    assert!(
        m.error.as_deref().unwrap_or("").contains("not delivered"),
        "{m:?}"
    );
    // Several more polls: the old one is left SENT and never asked about.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.message(old).await.state_name, "SENT");
    let asked_after: Vec<u64> = sim.requests_to("/api/query_sms_result")[asked_before..]
        .iter()
        .flat_map(|r| r.user_ids.clone())
        .collect();
    assert!(asked_after.contains(&user_ids[0]));
    assert!(!asked_after.contains(&user_ids[2]), "{asked_after:?}");
    assert_eq!(sim.sends().len(), 3, "nothing sent again");
    rig.stop().await;
}

async fn spool_state(store: &Store, id: i64) -> State {
    let m = store
        .read(move |c| spool::get(c, id))
        .await
        .unwrap()
        .unwrap();
    State::from_code(m.state).unwrap()
}

#[test]
fn the_config_keys_reach_the_transport_settings() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[daemon]
state_dir = "/tmp/x"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = 8
url = "https://192.0.2.1"
user = "admin"
password = "p"
push_allow = ["192.0.2.1", "::1"]
"#;
    let path = dir.path().join("c.toml");
    let c = Config::from_source(&path, text).unwrap();
    let GatewaySettings::Dinstar(s) = &c.gateways[0].settings else {
        panic!("dinstar settings")
    };
    assert_eq!(s.push_allow.len(), 2);
    let cc = smsgate::transport::dinstar::client_config("gw", s).unwrap();
    assert!(!format!("{cc:?}").contains("\"p\""));
    // An unclear send is asked about for three times the request timeout
    // before "not found" counts, and failed questions for 15 min.
    let timing = smsgate::transport::capabilities(&c.gateways[0])
        .reconcile
        .expect("a Dinstar gateway can be asked by user_id");
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(timing.grace, Duration::from_secs(30));
    assert_eq!(timing.patience, Duration::from_secs(900));
    let text = text.replace(
        "push_allow",
        "timeout_ms = 4000\nreconcile_grace_ms = 9000\nreconcile_patience_s = 120\npush_allow",
    );
    let c = Config::from_source(&path, &text).unwrap();
    let timing = smsgate::transport::capabilities(&c.gateways[0])
        .reconcile
        .unwrap();
    assert_eq!(timing.grace, Duration::from_secs(9));
    assert_eq!(timing.patience, Duration::from_secs(120));
}

/// What a crash leaves: two messages of dialer d1 to `number` in SENDING
/// with an attempt each, "tomado" (which the gateway took, sent here
/// directly under its user_id) and "perdido" (which never reached it).
async fn left_in_sending(store: &Store, sim: &SimHandle, number: &str) -> Vec<(i64, i64)> {
    let mut ids = Vec::new();
    for text in ["tomado", "perdido"] {
        let m = NewMessage {
            dialer: "d1".into(),
            destination: number.into(),
            number: Some(number.into()),
            text: text.into(),
            priority: 100,
            client_id: None,
            import_id: None,
            encoding: "auto",
            segments: 1,
            state: State::ToProcess,
            template: None,
        };
        let id = store
            .write(move |tx| {
                let id = match spool::insert(tx, &m)? {
                    spool::Inserted::New(m) | spool::Inserted::Replayed(m) => m.id,
                };
                let spool::Begun::Attempt { reference: r, .. } =
                    spool::begin_attempt(tx, id, "gw", "gw:0", None)?
                else {
                    panic!("attempt begun")
                };
                Ok((id, r))
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let client = smsgate::transport::dinstar::DinstarClient::new(
        smsgate::transport::dinstar::DinstarClientConfig::new(
            "gw",
            sim.base_url(),
            "admin",
            "admin",
        ),
    )
    .unwrap();
    client
        .send_sms(
            0,
            ids[0].1 as u32,
            number,
            "tomado",
            smsgate::transport::dinstar::Encoding::Gsm7Bit,
        )
        .await
        .unwrap();
    ids
}
