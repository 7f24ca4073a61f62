//! Issue 4's timing proofs, through the real `smsgate` binary sending to
//! the simulated Dinstar gateway on 127.0.0.1, checked on what the
//! simulator recorded (arrival order, ports, monotonic timestamps):
//! round-robin over a dial string, skipping a port without a SIM and using
//! it again when the SIM is back, `interval_ms` between two sends on one
//! port, and schedules that gate sending (plus a DST day read from a config).

mod common;
use common::runtime;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, get, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::{AuthOutcome, DinstarSim, SimHandle};

/// A `dinstar` gateway "gw" on the simulator, ports polled every second,
/// followed by `dialers`.
fn gateway(sim: &SimHandle, ports: u8, dialers: &str) -> String {
    format!(
        r#"
[[gateway]]
name = "gw"
kind = "dinstar"
ports = {ports}
url = "{url}"
user = "admin"
password = "admin"
timeout_ms = 5000
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 30
{dialers}
"#,
        url = sim.base_url()
    )
}

fn dialer(name: &str, dial: &str, interval_ms: u64, extra: &str) -> String {
    format!(
        "\n[[dialer]]\nname = \"{name}\"\nprovider = \"gw\"\ndial = \"{dial}\"\ninterval_ms = {interval_ms}\ndncr = false\n{extra}\n"
    )
}

fn post(d: &Daemon, path: &str) {
    let r = d
        .http()
        .post(d.url(path))
        .bearer_auth(OPERATOR)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
}

/// Submits one message; returns its id.
fn submit(d: &Daemon, dialer: &str, n: usize, text: &str) -> i64 {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&json!({"dialer": dialer, "to": format!("+59899{:06}", n), "text": text}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text());
    r.json::<Value>().unwrap()["id"].as_i64().unwrap()
}

/// Waits until the daemon sees each of `ports` of gw as usable (or not).
fn wait_channels(d: &Daemon, ports: &[u32], usable: bool) {
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(15), || {
        last = get(d, "/api/v1/channels");
        ports.iter().all(|p| {
            last["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["id"] == format!("gw:{p}") && c["usable"] == usable)
        })
    });
    assert!(
        ok,
        "channels {ports:?} never became usable={usable}: {last}"
    );
}

/// Accepted sends (text, port) in the simulator's arrival order.
fn accepted(sim: &SimHandle) -> Vec<(String, u8)> {
    sim.sends().into_iter().map(|s| (s.text, s.port)).collect()
}

fn wait_accepted(sim: &SimHandle, n: usize, within: Duration) -> Vec<(String, u8)> {
    let ok = wait_until(within, || sim.sends().len() >= n);
    let got = accepted(sim);
    assert!(
        ok,
        "expected {n} sends, the simulator has {}: {got:?}",
        got.len()
    );
    got
}

fn ports_of(sends: &[(String, u8)]) -> Vec<u8> {
    sends.iter().map(|(_, p)| *p).collect()
}

/// Final states of a dialer's messages, as the API tells them.
fn wait_final(d: &Daemon, dialer: &str, expected: usize) -> Value {
    let mut dash = Value::Null;
    let ok = wait_until(Duration::from_secs(20), || {
        dash = get(d, &format!("/api/v1/dialers/{dialer}"));
        dash["not_processed"] == 0
            && dash["sending"] == 0
            && dash["sent"].as_i64().unwrap_or(0) + dash["delivered"].as_i64().unwrap_or(0)
                == expected as i64
    });
    if !ok {
        let waiting = get(
            d,
            &format!("/api/v1/messages?limit=100&dialer={dialer}&state=TO_PROCESS"),
        );
        panic!("{dialer}: every message should end SENT or DELIVERED: {dash}; waiting: {waiting}");
    }
    dash
}

#[test]
fn round_robin_dial_0_3_sends_on_ports_0_1_2_3_in_order() {
    let rt = runtime();
    // Eight ports: 4 to 7 exist and are healthy but not in the dial string.
    let sim = rt.block_on(DinstarSim::builder().ports(8).start()).unwrap();
    let d = Daemon::start(&gateway(&sim, 8, &dialer("rr", "0.3", 200, "")), &[]);
    d.wait_ready();
    wait_channels(&d, &[0, 1, 2, 3], true);

    // One message every 80 ms: each port gets one every 320 ms, more than
    // its 200 ms interval, so no port is ever busy and the order in which
    // the gateway sees them is the dispatch order itself.
    for i in 0..12 {
        submit(&d, "rr", i, &format!("rr {i}"));
        std::thread::sleep(Duration::from_millis(80));
    }
    let got = wait_accepted(&sim, 12, Duration::from_secs(10));
    assert_eq!(
        ports_of(&got),
        [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
        "arrival order on the gateway: {got:?}"
    );
    let texts: Vec<String> = (0..12).map(|i| format!("rr {i}")).collect();
    assert_eq!(
        got.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
        texts
    );

    // A backlog: 40 messages queued while the dialer is stopped, then
    // released at once. Every port is busy (pacing) most of the time now;
    // message k of the backlog (load order) still goes to port k mod 4.
    post(&d, "/api/v1/dialers/rr/stop");
    for i in 0..40 {
        submit(&d, "rr", 100 + i, &format!("backlog {i}"));
    }
    post(&d, "/api/v1/dialers/rr/start");
    let got = wait_accepted(&sim, 52, Duration::from_secs(20));
    let backlog = &got[12..];
    let mut per_port: HashMap<u8, Vec<usize>> = HashMap::new();
    for (text, port) in backlog {
        let k: usize = text.strip_prefix("backlog ").unwrap().parse().unwrap();
        per_port.entry(*port).or_default().push(k);
    }
    for port in 0..4u8 {
        let expected: Vec<usize> = (0..40).filter(|k| k % 4 == port as usize).collect();
        assert_eq!(
            per_port.get(&port).cloned().unwrap_or_default(),
            expected,
            "port {port} sends its share in order; all: {backlog:?}"
        );
    }
    assert_eq!(per_port.len(), 4, "only ports 0-3: {backlog:?}");
    wait_final(&d, "rr", 52);
    // Nothing else was ever sent (no resend).
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sim.sends().len(), 52);
}

#[test]
fn a_port_without_sim_is_skipped_and_used_again_when_the_sim_returns() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    // A message the gateway accepted on a port whose SIM is then pulled
    // fails there (the simulator says FAILED, "0 of 1 segments sent") and
    // is retried: after 200 ms here.
    let d = Daemon::start(
        &gateway(&sim, 4, &dialer("rr", "0.3", 100, "retry_backoff_ms = 200")),
        &[],
    );
    d.wait_ready();
    wait_channels(&d, &[0, 1, 2, 3], true);

    // The SIM of port 2 is taken out; the next port poll (1 s) sees it.
    sim.set_port_sim(2, false);
    wait_channels(&d, &[2], false);
    for i in 0..12 {
        submit(&d, "rr", i, &format!("no sim {i}"));
        std::thread::sleep(Duration::from_millis(60));
    }
    let got = wait_accepted(&sim, 12, Duration::from_secs(10));
    assert_eq!(
        ports_of(&got),
        [0, 1, 3, 0, 1, 3, 0, 1, 3, 0, 1, 3],
        "port 2's share goes to the others: {got:?}"
    );
    assert!(
        sim.requests_to("/api/send_sms")
            .iter()
            .all(|r| !r.ports.contains(&2)),
        "nothing was even tried on port 2"
    );

    // The SIM is back: port 2 is used again, in its turn.
    sim.set_port_sim(2, true);
    wait_channels(&d, &[2], true);
    for i in 12..20 {
        submit(&d, "rr", i, &format!("sim back {i}"));
        std::thread::sleep(Duration::from_millis(60));
    }
    let got = wait_accepted(&sim, 20, Duration::from_secs(10));
    assert_eq!(
        ports_of(&got[12..]),
        [0, 1, 2, 3, 0, 1, 2, 3],
        "port 2 is back in the rotation: {got:?}"
    );

    // A SIM pulled while a backlog is being sent, before any poll has
    // seen it: the gateway refuses on that port (error 550), the daemon
    // takes the port out and gives its messages to the others. Every
    // message is sent exactly once.
    post(&d, "/api/v1/dialers/rr/stop");
    for i in 20..60 {
        submit(&d, "rr", i, &format!("pulled {i}"));
    }
    post(&d, "/api/v1/dialers/rr/start");
    assert!(wait_until(Duration::from_secs(10), || sim.sends().len() >= 28));
    sim.set_port_sim(1, false);
    let pulled_at = Instant::now();
    let dash = wait_final(&d, "rr", 60);
    // Give a wrong resend every chance to happen before counting.
    std::thread::sleep(Duration::from_millis(500));
    let sends = sim.sends_with_status();
    // Every message went on air exactly once; a copy the gateway took but
    // could not send (FAILED) is what the retry was for.
    let mut on_air: HashMap<String, usize> = HashMap::new();
    let mut failed_on_air = 0;
    for (s, status) in &sends {
        if status == &"FAILED" {
            assert_eq!(s.port, 1, "only the pulled SIM fails: {s:?}");
            failed_on_air += 1;
        } else {
            *on_air.entry(s.text.clone()).or_default() += 1;
        }
    }
    for i in 0..60 {
        let text = if i < 12 {
            format!("no sim {i}")
        } else if i < 20 {
            format!("sim back {i}")
        } else {
            format!("pulled {i}")
        };
        assert_eq!(on_air.get(&text), Some(&1), "{text:?} went on air once");
    }
    assert_eq!(on_air.len(), 60, "{on_air:?}");
    let refused_on_1 = sim
        .requests_to("/api/send_sms")
        .into_iter()
        .filter(|r| r.ports == vec![1] && r.error_code == Some(550))
        .count();
    let accepted_on_1_late = sends
        .iter()
        .filter(|(s, _)| s.port == 1 && s.at > pulled_at)
        .count();
    assert_eq!(accepted_on_1_late, 0);
    // At most the send in flight and the one queued behind it hit the
    // pulled SIM before the port was taken out of use.
    assert!(
        refused_on_1 <= 2,
        "port 1 kept being tried: {refused_on_1} refusals"
    );
    eprintln!(
        "SIM pulled mid-run: {failed_on_air} accepted copies failed on air and were retried, {refused_on_1} sends refused (550)"
    );
    assert_eq!(dash["unknown"], 0, "{dash}");
    assert_eq!(dash["failed"], 0, "{dash}");
}

#[test]
fn no_two_sends_on_one_port_are_closer_than_interval_ms() {
    // No tolerance: the daemon paces from the end of each send (the
    // gateway's answer), so each request arrives at least interval_ms after
    // the previous one arrived, whatever the loopback jitter. A gap far
    // above the interval is not a violation (the median is checked so
    // pacing does not over-throttle).
    const INTERVAL_MS: u64 = 300;
    const TOLERANCE_MS: u64 = 0;
    const PER_PORT: usize = 12;
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    let d = Daemon::start(
        &gateway(&sim, 4, &dialer("paced", "0.3", INTERVAL_MS, "")),
        &[],
    );
    d.wait_ready();
    wait_channels(&d, &[0, 1, 2, 3], true);
    post(&d, "/api/v1/dialers/paced/stop");
    let total = 4 * PER_PORT;
    for i in 0..total {
        submit(&d, "paced", i, &format!("paced {i}"));
    }
    post(&d, "/api/v1/dialers/paced/start");
    wait_accepted(&sim, total, Duration::from_secs(30));
    wait_final(&d, "paced", total);

    // Every send request that reached the gateway with good credentials,
    // per port, in arrival order (monotonic clock).
    let mut by_port: HashMap<u8, Vec<Instant>> = HashMap::new();
    for r in sim.requests_to("/api/send_sms") {
        if r.auth == AuthOutcome::Ok {
            assert_eq!(r.ports.len(), 1, "one port per send: {r:?}");
            by_port.entry(r.ports[0]).or_default().push(r.at);
        }
    }
    let mut gaps_ms: Vec<f64> = Vec::new();
    for (port, times) in &by_port {
        assert_eq!(times.len(), PER_PORT, "port {port}");
        for w in times.windows(2) {
            let gap = w[1].duration_since(w[0]);
            assert!(
                gap + Duration::from_millis(TOLERANCE_MS) >= Duration::from_millis(INTERVAL_MS),
                "port {port}: two sends {gap:?} apart, interval_ms is {INTERVAL_MS}"
            );
            gaps_ms.push(gap.as_secs_f64() * 1000.0);
        }
    }
    gaps_ms.sort_by(f64::total_cmp);
    let median = gaps_ms[gaps_ms.len() / 2];
    let min = gaps_ms[0];
    eprintln!(
        "interval {INTERVAL_MS} ms: {} gaps, min {min:.1} ms, median {median:.1} ms, max {:.1} ms",
        gaps_ms.len(),
        gaps_ms[gaps_ms.len() - 1]
    );
    assert!(
        median < (INTERVAL_MS + 100) as f64,
        "the backlog is paced at the interval, not slower: median {median:.1} ms"
    );
}

/// `mon`..`sun` for a jiff weekday.
fn day_name(w: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match w {
        Monday => "mon",
        Tuesday => "tue",
        Wednesday => "wed",
        Thursday => "thu",
        Friday => "fri",
        Saturday => "sat",
        Sunday => "sun",
    }
}

fn hhmm(minute: i64) -> String {
    format!("{:02}:{:02}", minute / 60, minute % 60)
}

/// Two schedules in `zone`, computed from the current time there: one open
/// now (from half an hour ago through one o'clock tomorrow, so it cannot
/// close while the test runs), one closed now (a one-hour window today that
/// starts an hour from now, or ended an hour ago late in the day).
fn schedules_around_now(zone: &str) -> String {
    let tz = jiff::tz::TimeZone::get(zone).unwrap();
    let now = tz.to_datetime(jiff::Timestamp::now());
    let minute = i64::from(now.hour()) * 60 + i64::from(now.minute());
    let today = day_name(now.weekday());
    let tomorrow = day_name(now.weekday().next());
    let (closed_from, closed_to) = if minute + 121 <= 24 * 60 {
        (minute + 60, minute + 120)
    } else {
        (minute - 120, minute - 60)
    };
    format!(
        r#"
[schedule.open_now]
time_zone = "{zone}"
[[schedule.open_now.window]]
days = "{today}"
from = "{open_from}"
to = "24:00"
[[schedule.open_now.window]]
days = "{tomorrow}"
from = "00:00"
to = "01:00"

[schedule.closed_now]
time_zone = "{zone}"
[[schedule.closed_now.window]]
days = "{today}"
from = "{closed_from}"
to = "{closed_to}"
"#,
        open_from = hhmm((minute - 30).max(0)),
        closed_from = hhmm(closed_from),
        closed_to = hhmm(closed_to),
    )
}

#[test]
fn a_closed_schedule_sends_nothing_and_an_open_one_sends() {
    let rt = runtime();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    // A zone with daylight saving time, so the offset is the zone's own.
    let zone = "America/Santiago";
    let config = |closed_schedule: &str| {
        let mut s = gateway(
            &sim,
            4,
            &format!(
                "{}{}",
                dialer("day", "0.1", 10, "schedule = \"open_now\""),
                dialer(
                    "night",
                    "2.3",
                    10,
                    &format!("schedule = \"{closed_schedule}\"")
                )
            ),
        );
        s.push_str(&schedules_around_now(zone));
        s
    };
    let d = Daemon::start(&config("closed_now"), &[]);
    d.wait_ready();
    wait_channels(&d, &[0, 1, 2, 3], true);
    let day = get(&d, "/api/v1/dialers/day");
    let night = get(&d, "/api/v1/dialers/night");
    assert_eq!(day["in_schedule"], true, "{day}");
    assert_eq!(night["in_schedule"], false, "{night}");

    for i in 0..3 {
        submit(&d, "night", 100 + i, &format!("night {i}"));
        submit(&d, "day", i, &format!("day {i}"));
    }
    let got = wait_accepted(&sim, 3, Duration::from_secs(10));
    // Give the closed dialer every chance to send by mistake.
    std::thread::sleep(Duration::from_secs(2));
    let got_later = accepted(&sim);
    assert_eq!(
        got_later.len(),
        3,
        "only the open dialer sent: {got_later:?}"
    );
    assert!(got.iter().all(|(t, p)| t.starts_with("day ") && *p <= 1));
    let night = get(&d, "/api/v1/dialers/night");
    assert_eq!(night["not_processed"], 3, "{night}");
    assert_eq!(night["in_memory"], 0, "{night}");
    wait_final(&d, "day", 3);

    // The same dialer on the open schedule (config reload): it sends.
    std::fs::write(
        &d.config,
        common::config_text(d.port, &d.dir.path().join("state"), &config("open_now")),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_notify("READY=1", Duration::from_secs(5));
    let got = wait_accepted(&sim, 6, Duration::from_secs(10));
    assert!(
        got[3..]
            .iter()
            .all(|(t, p)| t.starts_with("night ") && (2..=3).contains(p)),
        "{got:?}"
    );
    let night = wait_final(&d, "night", 3);
    assert_eq!(night["in_schedule"], true, "{night}");
}

#[test]
fn a_dialers_schedule_follows_its_zone_through_a_dst_day() {
    // Office hours every day in Madrid. On Sunday 2026-03-29 the clocks
    // jump from 02:00 CET to 03:00 CEST, so 09:00 is 08:00 UTC the day
    // before and 07:00 UTC that day. A schedule that ignored the change
    // (a fixed offset) would be an hour off on one of the two days.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smsgate.toml");
    let extra = r#"
[schedule.office]
time_zone = "Europe/Madrid"
[[schedule.office.window]]
days = "mon-sun"
from = "09:00"
to = "18:00"

[schedule.late]
time_zone = "America/Santiago"
[[schedule.late.window]]
days = "sat"
from = "23:00"
to = "24:00"

[[dialer]]
name = "madrid"
provider = "sim1"
dial = "0"
schedule = "office"

[[dialer]]
name = "santiago"
provider = "sim1"
dial = "1"
schedule = "late"
"#;
    std::fs::write(
        &path,
        common::config_text(common::free_port(), &dir.path().join("state"), extra),
    )
    .unwrap();
    let config = smsgate::config::Config::load(&path).unwrap();
    let madrid = config.dialer("madrid").unwrap();
    let open = |at: &str| smsgate::dialer::in_schedule(&config, madrid, at.parse().unwrap());
    // Saturday, still winter time (UTC+1).
    assert!(!open("2026-03-28T07:30:00Z"));
    assert!(open("2026-03-28T08:00:00Z"));
    assert!(open("2026-03-28T16:59:00Z"));
    assert!(!open("2026-03-28T17:00:00Z"));
    // Sunday, the DST day: summer time (UTC+2) from 02:00 local.
    assert!(!open("2026-03-29T06:59:00Z"));
    assert!(open("2026-03-29T07:00:00Z"));
    assert!(open("2026-03-29T07:30:00Z"));
    assert!(open("2026-03-29T15:59:00Z"));
    assert!(!open("2026-03-29T16:00:00Z"));

    // Chile leaves summer time on Saturday 2026-04-04 at 24:00 (-03),
    // which becomes 23:00 (-04): 23:00-24:00 happens twice, and the window
    // stays open through both, two real hours.
    let santiago = config.dialer("santiago").unwrap();
    let open = |at: &str| smsgate::dialer::in_schedule(&config, santiago, at.parse().unwrap());
    assert!(!open("2026-04-05T01:59:00Z"), "22:59 -03");
    assert!(open("2026-04-05T02:00:00Z"), "23:00 -03");
    assert!(open("2026-04-05T03:30:00Z"), "23:30 -04, the second time");
    assert!(!open("2026-04-05T04:00:00Z"), "00:00 -04, Sunday");
}
