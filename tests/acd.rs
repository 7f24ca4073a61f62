//! The ACD in the real `smsgate` process, customers writing in through
//! the simulated Dinstar gateway on 127.0.0.1: agents and members set
//! through the API, waiting interactions handed out by each strategy
//! within every cap, pause, break, logout and transfer moving work
//! around, all of it surviving SIGKILL; the monitor's figures against a
//! scenario worked out from the API's own timestamps; a supervisor's spy
//! and chat; an agent's token kept to its own; a canned reply with emoji
//! reaching the customer's port as UCS-2.

mod common;
use common::{kill, runtime};

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use common::{Daemon, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{DinstarSim, SimHandle};

const SUPERVISOR: &str = "test-supervisor-token-0123456789";
const AGENT_A01: &str = "test-agent-a01-token-0123456789";
const AGENT_A02: &str = "test-agent-a02-token-0123456789";
const CANNED: &str = "¡Hola! 😊 Ya lo atendemos";

/// A Dinstar gateway of four ports, the supervisor's and two agents'
/// tokens, and `campaigns` as written.
fn setup(sim: &SimHandle, campaigns: &str) -> String {
    format!(
        r#"
[inbound]
reply_interval_ms = 0

[[api.tokens]]
name = "supervisor"
token = "{SUPERVISOR}"
role = "supervisor"

[[api.tokens]]
name = "agent-a01"
token = "{AGENT_A01}"
role = "agent"
agent = "a01"

[[api.tokens]]
name = "agent-a02"
token = "{AGENT_A02}"
role = "agent"
agent = "a02"

[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "admin"
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 1
{campaigns}
"#,
        url = sim.base_url()
    )
}

/// Ready, its log read on a thread of its own (a full pipe would stall
/// it), and every port of the gateway usable.
fn ready(d: &mut Daemon) {
    let _ = d.drain_stderr();
    d.wait_ready();
    assert!(
        wait_until(Duration::from_secs(15), || {
            get(d, SUPERVISOR, "/api/v1/channels")["items"]
                .as_array()
                .is_some_and(|v| {
                    v.iter()
                        .filter(|c| c["id"].as_str().is_some_and(|id| id.starts_with("gw:")))
                        .all(|c| c["usable"] == true)
                })
        }),
        "the gateway's ports are usable"
    );
}

fn call(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let http = d.http();
    let mut r = match method {
        "GET" => http.get(d.url(path)),
        "POST" => http.post(d.url(path)),
        "PUT" => http.put(d.url(path)),
        "DELETE" => http.delete(d.url(path)),
        _ => unreachable!(),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn get(d: &Daemon, token: &str, path: &str) -> Value {
    let (s, v) = call(d, token, "GET", path, None);
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

fn ok(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = call(d, token, method, path, body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn agents(d: &Daemon, ids: &[String], campaigns: &[&str]) {
    for id in ids {
        ok(
            d,
            SUPERVISOR,
            "PUT",
            &format!("/api/v1/agents/{id}"),
            Some(json!({"name": format!("Agent {id}")})),
        );
    }
    ok(
        d,
        SUPERVISOR,
        "POST",
        "/api/v1/members",
        Some(json!({"campaigns": campaigns, "agents": ids})),
    );
}

fn act(d: &Daemon, id: &str, what: &str) -> Value {
    ok(
        d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/agents/{id}/{what}"),
        None,
    )
}

fn monitor(d: &Daemon, campaign: &str) -> Value {
    get(
        d,
        SUPERVISOR,
        &format!("/api/v1/campaigns/{campaign}/monitor"),
    )
}

fn interactions(d: &Daemon, campaign: &str) -> Vec<Value> {
    get(
        d,
        SUPERVISOR,
        &format!("/api/v1/interactions?campaign={campaign}&limit=1000"),
    )["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn interaction_of(d: &Daemon, campaign: &str, customer: &str) -> Value {
    interactions(d, campaign)
        .into_iter()
        .find(|i| i["customer"] == customer)
        .unwrap_or_else(|| panic!("no interaction of {customer}"))
}

/// An event stream read on a thread of its own: each event's JSON as it
/// comes.
fn stream(d: &Daemon, token: &str, path: &str) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    let http = d.http_waiting(Duration::from_secs(600));
    let r = http.get(d.url(path)).bearer_auth(token).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ") {
                if let Ok(v) = serde_json::from_str::<Value>(data) {
                    if v.get("kind").is_some() && tx.send(v).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Events from `rx` until `done` holds of them all (or 60 s).
fn until(rx: &mpsc::Receiver<Value>, seen: &mut Vec<Value>, done: impl Fn(&[Value]) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done(seen) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => seen.push(v),
            Err(_) => panic!(
                "the stream did not bring what was awaited; saw {} events, the last: {:?}",
                seen.len(),
                seen.iter().rev().take(3).collect::<Vec<_>>()
            ),
        }
    }
}

fn kind<'a>(seen: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    seen.iter().filter(move |e| e["kind"] == k)
}

fn customer(i: usize) -> String {
    format!("5989{:07}", 1_000_000 + i)
}

/// The ids of `prefix`01..10.
fn ten(prefix: &str) -> Vec<String> {
    (1..=10).map(|i| format!("{prefix}{i:02}")).collect()
}

/// Each strategy under a burst of 200 customers for 10 agents with room
/// for two each: the 20 oldest go first, in the strategy's order, then
/// as agents close theirs the rest follow, oldest first; no agent ever
/// holds more than two, no interaction goes to two agents, none is lost.
#[test]
fn a_burst_of_200_is_handed_out_as_each_strategy_says_within_capacity() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(
        &setup(
            &sim,
            r#"
[[campaign]]
name = "rr"
provider = "gw"
did_ports = ["gw:0"]
strategy = "round_robin"
max_interactions_per_agent = 2
acd_max_waiting = 1000

[[campaign]]
name = "fewest"
provider = "gw"
did_ports = ["gw:1"]
strategy = "fewest_active"
max_interactions_per_agent = 2
acd_max_waiting = 1000

[[campaign]]
name = "idle"
provider = "gw"
did_ports = ["gw:2"]
strategy = "longest_idle"
max_interactions_per_agent = 2
acd_max_waiting = 1000
"#,
        ),
        &[],
    );
    ready(&mut d);
    let plan = [("rr", "r", 0u8), ("fewest", "f", 1), ("idle", "l", 2)];
    for (campaign, prefix, _) in plan {
        let ids = ten(prefix);
        agents(&d, &ids, &[campaign]);
        // Logged in from the last to the first: the first ones logged in
        // have been idle the longest.
        for id in ids.iter().rev() {
            act(&d, id, "login");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let events = stream(&d, SUPERVISOR, "/api/v1/events?after=0&kinds=interaction.*");
    for i in 0..200 {
        for (_, _, port) in plan {
            sim.inject_incoming(port, &customer(i), "hola");
        }
    }
    let mut seen = Vec::new();
    let assigned_in = |seen: &[Value], c: &str| {
        kind(seen, "interaction.assigned")
            .filter(|e| e["campaign"] == c)
            .count()
    };
    until(&events, &mut seen, |s| {
        plan.iter().all(|(c, _, _)| assigned_in(s, c) >= 20)
    });
    assert!(wait_until(Duration::from_secs(30), || plan
        .iter()
        .all(|(c, _, _)| interactions(&d, c).len() == 200)));
    // Nothing more is given while every agent is full.
    std::thread::sleep(Duration::from_millis(1500));
    while let Ok(v) = events.try_recv() {
        seen.push(v);
    }
    for (campaign, prefix, _) in plan {
        let first: Vec<&str> = kind(&seen, "interaction.assigned")
            .filter(|e| e["campaign"] == campaign)
            .map(|e| e["data"]["agent"].as_str().unwrap())
            .collect();
        assert_eq!(first.len(), 20, "{campaign}: 10 agents, room for 2 each");
        let ids = ten(prefix);
        let login_order: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
        match campaign {
            // On and on around the members in id order.
            "rr" => {
                let circle: Vec<&str> = ids.iter().chain(&ids).map(String::as_str).collect();
                assert_eq!(first, circle, "round_robin");
            }
            // Each agent one before any gets a second; the first round to
            // the longest idle first.
            "fewest" => {
                assert_eq!(first[..10], login_order[..], "fewest_active's ties");
                let second: HashSet<&str> = first[10..].iter().copied().collect();
                assert_eq!(second.len(), 10, "fewest_active: one each again");
            }
            "idle" => assert_eq!(first[..10], login_order[..], "longest_idle"),
            _ => unreachable!(),
        }
        let m = monitor(&d, campaign);
        assert_eq!(m["waiting_count"], 180, "{campaign}: {m}");
        assert_eq!(m["offered"], 200);
    }

    // Agents close what they hold, round after round, until every
    // customer has had an agent.
    let mut closed: HashSet<i64> = HashSet::new();
    while closed.len() < 600 {
        let before = closed.len();
        for (campaign, _, _) in plan {
            for i in interactions(&d, campaign) {
                let id = i["id"].as_i64().unwrap();
                if i["agent"].is_string() && i["closed_at"].is_null() {
                    ok(
                        &d,
                        SUPERVISOR,
                        "POST",
                        &format!("/api/v1/interactions/{id}/close"),
                        None,
                    );
                    closed.insert(id);
                }
            }
        }
        if closed.len() == before {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    until(&events, &mut seen, |s| {
        kind(s, "interaction.closed").count() >= 600
    });
    let mut holder: HashMap<i64, String> = HashMap::new();
    let mut holds: HashMap<String, i64> = HashMap::new();
    let mut last_given: HashMap<String, i64> = HashMap::new();
    for e in &seen {
        let id = e["interaction"].as_i64().unwrap();
        match e["kind"].as_str().unwrap() {
            "interaction.assigned" => {
                let agent = e["data"]["agent"].as_str().unwrap().to_string();
                assert!(
                    holder.insert(id, agent.clone()).is_none(),
                    "{id} given twice"
                );
                let n = holds.entry(agent.clone()).or_default();
                *n += 1;
                assert!(*n <= 2, "{agent} over capacity");
                let campaign = e["campaign"].as_str().unwrap().to_string();
                let last = last_given.entry(campaign).or_default();
                assert!(id > *last, "oldest first");
                *last = id;
            }
            "interaction.closed" => {
                *holds.get_mut(&holder[&id]).unwrap() -= 1;
            }
            _ => {}
        }
    }
    assert_eq!(holder.len(), 600, "every customer had an agent, none lost");
    for (campaign, _, _) in plan {
        let all = interactions(&d, campaign);
        assert_eq!(all.len(), 200);
        assert!(
            all.iter()
                .all(|i| i["agent"].is_string() && i["closed_at"].is_i64())
        );
    }
}

/// Pause, break, logout and transfer move work as they say; a logged-out
/// agent's interaction goes back ahead of a newer one; every action is
/// kept with who did it.
#[test]
fn pause_break_logout_and_transfer_redistribute() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(
        &setup(
            &sim,
            r#"
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0", "gw:1"]
max_interactions_per_agent = 1
"#,
        ),
        &[],
    );
    ready(&mut d);
    let ids: Vec<String> = ["a01", "a02", "a03"].map(String::from).to_vec();
    agents(&d, &ids, &["ventas"]);
    for id in &ids {
        act(&d, id, "login");
    }
    act(&d, "a01", "pause");
    ok(
        &d,
        SUPERVISOR,
        "POST",
        "/api/v1/agents/a02/break",
        Some(json!({"name": "almuerzo"})),
    );
    let agent_of = |c: &str| {
        interaction_of(&d, "ventas", c)["agent"]
            .as_str()
            .map(String::from)
    };
    sim.inject_incoming(0, "59899000001", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .len()
        == 1
        && agent_of("+59899000001").is_some()));
    assert_eq!(
        agent_of("+59899000001").as_deref(),
        Some("a03"),
        "paused and on break get none"
    );
    sim.inject_incoming(1, "59899000002", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .len()
        == 2));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        agent_of("+59899000002"),
        None,
        "a03 is full, the others may not"
    );
    let m = monitor(&d, "ventas");
    let state = |m: &Value, id: &str| {
        m["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(state(&m, "a01")["paused"], true);
    assert_eq!(state(&m, "a02")["state"], "free_on_break");
    assert_eq!(state(&m, "a02")["break"], "almuerzo");
    assert_eq!(state(&m, "a03")["state"], "busy");
    assert_eq!(state(&m, "a03")["channels"], json!(["gw:0"]));
    assert_eq!(m["waiting"][0]["customer"], "+59899000002");

    act(&d, "a01", "resume");
    assert!(wait_until(Duration::from_secs(5), || agent_of(
        "+59899000002"
    )
    .as_deref()
        == Some("a01")));

    // A newer customer waits; a03 logs out: its customer goes back ahead
    // of the newer one, and a02, back from its break, takes that one.
    sim.inject_incoming(0, "59899000003", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .len()
        == 3));
    let out = act(&d, "a03", "logout");
    assert_eq!(out["requeued"].as_array().unwrap().len(), 1);
    assert_eq!(agent_of("+59899000001"), None);
    act(&d, "a02", "ready");
    assert!(wait_until(Duration::from_secs(5), || agent_of(
        "+59899000001"
    )
    .as_deref()
        == Some("a02")));
    assert_eq!(agent_of("+59899000003"), None, "the newer one still waits");

    // Transfer: to a full agent is refused; to the queue gives it to
    // whoever has room.
    let c1 = interaction_of(&d, "ventas", "+59899000001")["id"]
        .as_i64()
        .unwrap();
    let (s, _) = call(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{c1}/transfer"),
        Some(json!({"agent": "a01"})),
    );
    assert_eq!(s, 409, "a01 is full");
    let (s, _) = call(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{c1}/transfer"),
        Some(json!({"agent": "a03"})),
    );
    assert_eq!(s, 409, "a03 is logged out");
    act(&d, "a03", "login");
    assert!(wait_until(Duration::from_secs(5), || agent_of(
        "+59899000003"
    )
    .as_deref()
        == Some("a03")));
    // a02 (its own token) sends c1 back to the queue; only a02 has room.
    let (s, v) = call(
        &d,
        AGENT_A02,
        "POST",
        &format!("/api/v1/interactions/{c1}/transfer"),
        Some(json!({"queue": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["from_agent"], "a02");
    assert!(wait_until(Duration::from_secs(5), || agent_of(
        "+59899000001"
    )
    .as_deref()
        == Some("a02")));
    let c2 = interaction_of(&d, "ventas", "+59899000002")["id"]
        .as_i64()
        .unwrap();
    ok(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{c2}/close"),
        None,
    );
    ok(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{c1}/transfer"),
        Some(json!({"agent": "a01"})),
    );
    assert_eq!(agent_of("+59899000001").as_deref(), Some("a01"));

    let info = get(&d, SUPERVISOR, "/api/v1/agents/a01");
    let actions: Vec<(String, String)> = info["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for what in ["pause", "resume", "login", "create"] {
        assert!(
            actions.contains(&(what.to_string(), "api:supervisor".to_string())),
            "{what} in {actions:?}"
        );
    }
    assert_eq!(info["active"], 1);
    let a02 = get(&d, SUPERVISOR, "/api/v1/agents/a02");
    assert!(
        a02["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "transfer" && a["by"] == "api:agent-a02"),
        "{a02}"
    );
}

/// Agents, members, assignments, the queue's order, round_robin's
/// memory and the counters are where they were after a SIGKILL.
#[test]
fn acd_state_survives_sigkill() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(
        &setup(
            &sim,
            r#"
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0"]
max_interactions_per_agent = 1
"#,
        ),
        &[],
    );
    ready(&mut d);
    let ids: Vec<String> = ["a01", "a02", "a03"].map(String::from).to_vec();
    agents(&d, &ids, &["ventas"]);
    for id in &ids {
        act(&d, id, "login");
    }
    ok(
        &d,
        SUPERVISOR,
        "POST",
        "/api/v1/agents/a03/break",
        Some(json!({"name": "café"})),
    );
    let holder = |d: &Daemon, n: u32| {
        interaction_of(d, "ventas", &format!("+5989900000{n}"))["agent"].clone()
    };
    let arrive = |d: &Daemon, n: u32| {
        sim.inject_incoming(0, &format!("5989900000{n}"), "hola");
        assert!(wait_until(Duration::from_secs(15), || interactions(
            d, "ventas"
        )
        .iter()
        .any(|i| i["customer"] == format!("+5989900000{n}"))));
    };
    arrive(&d, 1);
    assert!(wait_until(Duration::from_secs(5), || holder(&d, 1) == "a01"));
    arrive(&d, 2);
    assert!(wait_until(Duration::from_secs(5), || holder(&d, 2) == "a02"));
    arrive(&d, 3);
    let c = |d: &Daemon, n: u32| {
        interaction_of(d, "ventas", &format!("+5989900000{n}"))["id"]
            .as_i64()
            .unwrap()
    };
    ok(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{}/close", c(&d, 1)),
        None,
    );
    // After a02, around to a01: round_robin now remembers a01.
    assert!(wait_until(Duration::from_secs(5), || holder(&d, 3) == "a01"));
    arrive(&d, 4);
    std::thread::sleep(Duration::from_millis(1200));
    let before = monitor(&d, "ventas");
    assert_eq!(before["waiting_count"], 1);

    let (dir, config, port) = kill(d);
    let mut d = Daemon::start_with(dir, config, port, &[]);
    ready(&mut d);
    let after = monitor(&d, "ventas");
    let strip = |v: &Value, key: &str| {
        let mut v = v[key].clone();
        // Seconds since something: the clock moved meanwhile.
        if let Some(a) = v.as_array_mut() {
            for x in a {
                if let Some(o) = x.as_object_mut() {
                    o.remove("since");
                    o.remove("waiting_s");
                }
            }
        }
        v
    };
    for key in [
        "agents",
        "waiting",
        "offered",
        "answered",
        "abandoned",
        "waiting_count",
    ] {
        assert_eq!(strip(&before, key), strip(&after, key), "{key}");
    }
    assert_eq!(after["agents"][2]["break"], "café");
    assert_eq!(
        after["abandoned"], 1,
        "the first customer was closed unanswered"
    );
    assert_eq!(holder(&d, 2), "a02");
    assert_eq!(holder(&d, 3), "a01");
    assert_eq!(holder(&d, 4), Value::Null);

    // a01 and a02 become free in one step (members again): the waiting
    // customer goes to a02, after a01 who was served last before the kill.
    let pair = json!({"campaigns": ["ventas"], "agents": ["a01", "a02"]});
    ok(
        &d,
        SUPERVISOR,
        "DELETE",
        "/api/v1/members",
        Some(pair.clone()),
    );
    for n in [2, 3] {
        ok(
            &d,
            SUPERVISOR,
            "POST",
            &format!("/api/v1/interactions/{}/close", c(&d, n)),
            None,
        );
    }
    ok(&d, SUPERVISOR, "POST", "/api/v1/members", Some(pair));
    assert!(wait_until(Duration::from_secs(5), || holder(&d, 4) == "a02"));
}

/// The monitor's figures against a scenario worked out by hand from the
/// API's own timestamps: one customer answered and closed, one closed
/// unanswered (abandoned), one refused because the queue was full.
#[test]
fn the_monitor_figures_match_a_hand_computed_scenario() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(
        &setup(
            &sim,
            r#"
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:0"]
max_interactions_per_agent = 1
acd_max_waiting = 1
service_level_s = 60
service_level_percent = 80
busy_message = "Todos ocupados"
"#,
        ),
        &[],
    );
    ready(&mut d);
    agents(&d, &["a01".to_string()], &["ventas"]);
    act(&d, "a01", "login");
    sim.inject_incoming(0, "59899000001", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .first()
    .is_some_and(|i| i["agent"] == "a01")));
    let c1 = interaction_of(&d, "ventas", "+59899000001")["id"]
        .as_i64()
        .unwrap();
    ok(
        &d,
        AGENT_A01,
        "POST",
        &format!("/api/v1/interactions/{c1}/messages"),
        Some(json!({"agent": "a01", "text": "Buenas, ¿en qué lo ayudo?"})),
    );
    sim.inject_incoming(0, "59899000002", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .len()
        == 2));
    sim.inject_incoming(0, "59899000003", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .len()
        == 3));
    assert!(wait_until(Duration::from_secs(10), || sim
        .sends()
        .iter()
        .any(|s| s.number.ends_with("59899000003")
            && s.text == "Todos ocupados"
            && s.port == 0)));
    let c2 = interaction_of(&d, "ventas", "+59899000002")["id"]
        .as_i64()
        .unwrap();
    ok(
        &d,
        SUPERVISOR,
        "POST",
        &format!("/api/v1/interactions/{c2}/close"),
        None,
    );
    ok(
        &d,
        AGENT_A01,
        "POST",
        &format!("/api/v1/interactions/{c1}/close"),
        None,
    );

    let one = get(&d, SUPERVISOR, &format!("/api/v1/interactions/{c1}"));
    let first_response = (one["first_reply_at"].as_i64().unwrap()
        - one["started_at"].as_i64().unwrap()) as f64
        / 1000.0;
    let handle =
        (one["closed_at"].as_i64().unwrap() - one["assigned_at"].as_i64().unwrap()) as f64 / 1000.0;
    assert!(first_response < 60.0);
    let m = monitor(&d, "ventas");
    assert_eq!(m["offered"], 2, "{m}");
    assert_eq!(m["refused_busy"], 1);
    assert_eq!(m["answered"], 1);
    assert_eq!(m["answered_in_time"], 1);
    assert_eq!(m["abandoned"], 1);
    // 1 answered in time / (1 answered + 1 abandoned - 0 short ones).
    assert_eq!(m["service_level"], 0.5);
    assert_eq!(m["service_level_met"], false);
    assert_eq!(m["abandon_rate"], 0.5);
    assert_eq!(m["avg_first_response_s"].as_f64(), Some(first_response));
    assert_eq!(m["avg_handle_s"].as_f64(), Some(handle));
    assert_eq!(m["chat_time_overruns"], 0);
    assert_eq!(m["agents"][0]["completed"], 1);
    // The same figures come on the stream.
    let events = stream(
        &d,
        SUPERVISOR,
        "/api/v1/events?after=0&kinds=campaign.figures",
    );
    let mut seen = Vec::new();
    until(&events, &mut seen, |s| {
        s.iter().any(|e| {
            e["data"]["abandoned"] == 1 && e["data"]["answered"] == 1 && e["data"]["offered"] == 2
        })
    });
}

fn spy_setup(sim: &SimHandle) -> String {
    setup(
        sim,
        &format!(
            r#"
[[campaign]]
name = "ventas"
provider = "gw"
did_ports = ["gw:2", "gw:3"]
max_interactions_per_agent = 1
canned_responses = ["Gracias por escribir.", "{CANNED}"]
"#
        ),
    )
}

/// A supervisor spies on one interaction and sees the customer's
/// message and the agent's reply as they happen; its chat reaches the
/// agent's own stream and is kept; the canned reply, emoji and all,
/// leaves as UCS-2 on the port the customer wrote to.
#[test]
fn spy_sees_both_ways_chat_reaches_the_agent_and_a_canned_emoji_reply_goes_ucs2() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(&spy_setup(&sim), &[]);
    ready(&mut d);
    agents(&d, &["a01".to_string()], &["ventas"]);
    ok(&d, AGENT_A01, "POST", "/api/v1/agents/a01/login", None);
    let own = stream(&d, AGENT_A01, "/api/v1/agents/a01/events");
    sim.inject_incoming(3, "59899000009", "hola");
    let mut mine = Vec::new();
    until(&own, &mut mine, |s| {
        kind(s, "interaction.assigned").count() == 1
    });
    let id = kind(&mine, "interaction.assigned").next().unwrap()["interaction"]
        .as_i64()
        .unwrap();
    let spy = stream(&d, SUPERVISOR, &format!("/api/v1/interactions/{id}/spy"));
    // The spy stream is open once its first frame could come: give it a
    // moment to take its position.
    std::thread::sleep(Duration::from_millis(300));

    ok(
        &d,
        SUPERVISOR,
        "POST",
        "/api/v1/agents/a01/chat",
        Some(json!({"text": "Ojo con este cliente 👀"})),
    );
    until(&own, &mut mine, |s| {
        kind(s, "agent.chat").any(|e| {
            e["data"]["text"] == "Ojo con este cliente 👀" && e["data"]["from"] == "api:supervisor"
        })
    });
    let info = get(&d, AGENT_A01, "/api/v1/agents/a01");
    assert!(
        info["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["action"] == "chat" && a["detail"] == "Ojo con este cliente 👀")
    );

    sim.inject_incoming(3, "59899000009", "¿hay alguien? 🙋");
    let sent = ok(
        &d,
        AGENT_A01,
        "POST",
        &format!("/api/v1/interactions/{id}/messages"),
        Some(json!({"agent": "a01", "canned": 2})),
    );
    assert_eq!(sent["text"], CANNED);
    assert_eq!(sent["channel"], "gw:3");
    let mut spied = Vec::new();
    until(&spy, &mut spied, |s| {
        kind(s, "message.received").any(|e| e["data"]["text"] == "¿hay alguien? 🙋")
            && kind(s, "message.state").any(|e| e["data"]["sender"] == "agent:a01")
            && kind(s, "message.state").any(|e| e["data"]["state"] == "SENT")
    });
    assert!(
        spied.iter().all(|e| e["interaction"] == id),
        "only this interaction"
    );
    // The agent's own stream has the customer's message too.
    until(&own, &mut mine, |s| {
        kind(s, "message.received").any(|e| e["data"]["text"] == "¿hay alguien? 🙋")
    });
    assert!(wait_until(Duration::from_secs(10), || sim
        .sends()
        .iter()
        .any(|s| s.text == CANNED)));
    let s = sim.sends().into_iter().find(|s| s.text == CANNED).unwrap();
    assert_eq!(s.port, 3, "the customer's port");
    assert_eq!(s.encoding.as_wire(), "unicode");
    assert_eq!(s.handset_text, CANNED, "intact on the phone");
    assert!(s.number.ends_with("59899000009"));
    // The conversation shows it with its delivery state.
    assert!(wait_until(Duration::from_secs(10), || {
        get(&d, AGENT_A01, &format!("/api/v1/interactions/{id}"))["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| {
                m["sender"] == "agent:a01"
                    && m["text"] == CANNED
                    && m["state"]
                        .as_str()
                        .is_some_and(|s| s == "SENT" || s == "DELIVERED")
            })
    }));
}

/// An agent's token reads and answers only what its agent holds; a
/// supervisor sees everything.
#[test]
fn an_agent_token_cannot_read_another_agents_interactions() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let mut d = Daemon::start(&spy_setup(&sim), &[]);
    ready(&mut d);
    agents(&d, &["a01".to_string(), "a02".to_string()], &["ventas"]);
    ok(&d, AGENT_A02, "POST", "/api/v1/agents/a02/login", None);
    sim.inject_incoming(2, "59899000007", "hola");
    assert!(wait_until(Duration::from_secs(15), || interactions(
        &d, "ventas"
    )
    .first()
    .is_some_and(|i| i["agent"] == "a02")));
    let id = interactions(&d, "ventas")[0]["id"].as_i64().unwrap();
    for path in [
        format!("/api/v1/interactions/{id}"),
        format!("/api/v1/interactions/{id}/download"),
        "/api/v1/interactions?agent=a02".to_string(),
        "/api/v1/agents/a02".to_string(),
        "/api/v1/agents/a02/interactions".to_string(),
        "/api/v1/agents".to_string(),
        format!("/api/v1/interactions/{id}/spy"),
    ] {
        let (s, _) = call(&d, AGENT_A01, "GET", &path, None);
        assert_eq!(s, 403, "{path}");
    }
    for (path, body) in [
        (
            format!("/api/v1/interactions/{id}/messages"),
            json!({"agent": "a02", "text": "x"}),
        ),
        (
            format!("/api/v1/interactions/{id}/messages"),
            json!({"agent": "a01", "text": "x"}),
        ),
        (format!("/api/v1/interactions/{id}/close"), json!({})),
        (
            format!("/api/v1/interactions/{id}/transfer"),
            json!({"queue": true}),
        ),
        ("/api/v1/agents/a02/logout".to_string(), json!({})),
        ("/api/v1/agents/a01/pause".to_string(), json!({})),
    ] {
        let (s, _) = call(&d, AGENT_A01, "POST", &path, Some(body));
        assert!(s == 403 || s == 409, "{path}: {s}");
        assert_ne!(s, 200);
    }
    // Its own list is empty; a02's holds the interaction; the supervisor
    // sees it.
    assert_eq!(
        get(&d, AGENT_A01, "/api/v1/interactions")["items"],
        json!([])
    );
    assert_eq!(
        get(&d, AGENT_A01, "/api/v1/agents/a01/interactions")["items"],
        json!([])
    );
    let theirs = get(&d, AGENT_A02, "/api/v1/agents/a02/interactions?q=ventas");
    assert_eq!(theirs["items"][0]["id"], id);
    assert_eq!(
        get(&d, AGENT_A02, "/api/v1/agents/a02/interactions?q=99000007")["items"][0]["id"],
        id
    );
    assert_eq!(
        get(&d, AGENT_A02, "/api/v1/agents/a02/interactions?q=nada")["items"],
        json!([])
    );
    get(&d, SUPERVISOR, &format!("/api/v1/interactions/{id}"));
    // The reply as a01 to a02's interaction is refused and nothing is sent.
    assert!(
        !get(&d, SUPERVISOR, &format!("/api/v1/interactions/{id}"))["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "out")
    );
}
