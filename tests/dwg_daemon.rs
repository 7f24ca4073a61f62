//! The real daemon with a `dinstar-dwg` gateway: the simulated DWG gateway
//! connects to it, a message sent through the API leaves on a dialled port
//! with its text intact and ends DELIVERED; the password never reaches the
//! journal.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, OPERATOR, free_port, get, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dwg::DwgSim;

const PASSWORD: &str = "dwg-Pa55-xyz";
const TEXT: &str = "Hola Ñandú, ¿confirmás el turno? 👍🏽";

#[test]
fn a_message_goes_out_through_the_dwg_gateway_and_is_delivered() {
    let listen = free_port();
    let extra = format!(
        r#"
[[gateway]]
name = "dwg1"
kind = "dinstar-dwg"
ports = 4
listen = "127.0.0.1:{listen}"
user = "smsgate"
password = "{PASSWORD}"

[[dialer]]
name = "campdwg"
provider = "dwg1"
dial = "2.3"
interval_ms = 10
"#
    );
    let d = Daemon::start(&extra, &[("RUST_LOG", "debug")]);
    d.wait_ready();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(async {
        let sim = DwgSim::builder()
            .connect(format!("127.0.0.1:{listen}").parse().unwrap())
            .credentials("smsgate", PASSWORD)
            .ports(4)
            .reconnect(Some(Duration::from_millis(200)))
            .result_delay(Some(Duration::from_millis(50)))
            .receipt_delay(Some(Duration::from_millis(50)))
            .start();
        assert!(
            sim.wait_connected(Duration::from_secs(10)).await,
            "the gateway connects to smsgate"
        );
        sim
    });

    let t = Instant::now();
    loop {
        let ch = get(&d, "/api/v1/channels");
        let usable = ch
            .as_array()
            .or_else(|| ch["items"].as_array())
            .map(|a| {
                a.iter()
                    .filter(|c| c["gateway"] == "dwg1" && c["usable"] == true)
                    .count()
            })
            .unwrap_or(0);
        if usable == 4 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "channels: {ch}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&json!({"dialer": "campdwg", "to": "+59899123456", "text": TEXT}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let id = r.json::<Value>().unwrap()["id"].clone();

    let t = Instant::now();
    let m = loop {
        let m = get(&d, &format!("/api/v1/messages/{id}"));
        if m["state_name"] == "DELIVERED" {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "message: {m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let sends = sim.sends();
    assert_eq!(sends.len(), 1, "sent once");
    assert!(
        [2, 3].contains(&sends[0].port),
        "a dialled port: {}",
        sends[0].port
    );
    assert_eq!(sends[0].text, TEXT);
    assert_eq!(m["gateway_ref"], sends[0].serial.to_string());
    // Its history: its queueing, then each change once, in order, on the
    // port it left by.
    let all = m["history"].as_array().expect("a history");
    assert_eq!(all[0]["kind"], "queued", "{m}");
    assert!(all[0]["from"].is_null(), "{m}");
    assert_eq!(all[0]["state"], "TO_PROCESS", "{m}");
    let history = &all[1..];
    let steps: Vec<(&str, &str)> = history
        .iter()
        .map(|c| (c["from"].as_str().unwrap(), c["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("TO_PROCESS", "SENDING"),
            ("SENDING", "SENT"),
            ("SENT", "DELIVERED")
        ],
        "{m}"
    );
    let channel = format!("dwg1:{}", sends[0].port);
    assert!(
        history.iter().all(|c| c["channel"] == channel.as_str()),
        "{m}"
    );
    assert!(
        history[2]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("delivery receipt")),
        "{m}"
    );

    sim.shutdown();
    drop(rt);
    let mut d = d;
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let log = d.take_stderr();
    assert!(log.contains("DWG gateway connected"), "{log}");
    assert!(!log.contains(PASSWORD), "the password reached the journal");
}

/// A DWG listener on a fresh loopback port with these extra gateway keys,
/// and a dialer on it.
fn dwg_config(listen: u16, extra_keys: &str) -> String {
    format!(
        r#"
[[gateway]]
name = "dwg1"
kind = "dinstar-dwg"
ports = 4
listen = "127.0.0.1:{listen}"
user = "smsgate"
password = "{PASSWORD}"
{extra_keys}

[[dialer]]
name = "campdwg"
provider = "dwg1"
interval_ms = 10
"#
    )
}

/// Waits until something listens on the port (the DWG listener binds in
/// the background, after READY).
fn wait_listening(port: u16) {
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the DWG listener never came up"
    );
}

/// One blocking login: Some(ok) when answered, None when closed unanswered.
fn blocking_login(port: u16, password: &str) -> Option<bool> {
    use smsgate_proto::dwg::{AuthRequest, Body, Frame, MsgId, decode_frame, encode_frame};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let frame = Frame::new(
        MsgId::default(),
        Body::Auth(AuthRequest::new("smsgate", password).unwrap()),
    );
    if s.write_all(&encode_frame(&frame).unwrap()).is_err() {
        return None;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        if let Ok(Some((f, _))) = decode_frame(&buf) {
            return match f.body {
                Body::AuthResponse(a) => Some(a.ok()),
                _ => None,
            };
        }
        match s.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("neither answered nor closed within 5 s")
            }
            Err(_) => return None,
        }
    }
}

fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).collect()
}

/// Connections from outside `allow` are closed before anything is read,
/// the right password included, and a flood of them writes a line or two,
/// not one per connection (10,000 refused connections once wrote 9,993).
#[test]
fn connections_from_outside_allow_are_refused_with_a_few_journal_lines() {
    let listen = free_port();
    let mut d = Daemon::start(
        &dwg_config(listen, r#"allow = ["192.0.2.10", "2001:db8::/32"]"#),
        &[],
    );
    let log = d.drain_stderr();
    d.wait_ready();
    wait_listening(listen);
    for i in 0..300 {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", listen)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {}
            other => panic!("connection {i} not closed at once: {other:?}"),
        }
    }
    assert_eq!(
        blocking_login(listen, PASSWORD),
        None,
        "the right password from outside allow is not even read"
    );
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let text = log.text_at_end(Duration::from_secs(5));
    let refusals = lines_with(&text, "allow");
    assert!(
        !refusals.is_empty() && refusals.len() <= 3,
        "{} lines about refusals:\n{}",
        refusals.len(),
        refusals.join("\n")
    );
    assert!(text.contains("127.0.0.1"), "the address is named: {text}");
    assert!(
        refusals.iter().any(|l| l.contains("302")),
        "the summary counts every refused connection (the listener probe, 300, the login):\n{}",
        refusals.join("\n")
    );
    assert!(!text.contains("DWG gateway connected"), "{text}");
}

/// Wrong passwords from one address: a few are answered, then the address
/// is locked out (its connections closed unread, the right password too)
/// with one journal line naming it, not one line per guess.
#[test]
fn password_guessing_is_locked_out_with_one_journal_line() {
    let listen = free_port();
    let mut d = Daemon::start(&dwg_config(listen, ""), &[]);
    let log = d.drain_stderr();
    d.wait_ready();
    wait_listening(listen);
    let answered = (0..200)
        .filter(|i| {
            let answer = blocking_login(listen, &format!("guess-{i:03}"));
            assert_ne!(answer, Some(true));
            answer.is_some()
        })
        .count();
    assert!(
        (1..=5).contains(&answered),
        "{answered} of 200 guesses checked"
    );
    assert_eq!(
        blocking_login(listen, PASSWORD),
        None,
        "locked out: the right password is not read either"
    );
    d.signal("TERM");
    d.wait_exit(Duration::from_secs(10));
    let text = log.text_at_end(Duration::from_secs(5));
    let lockouts = lines_with(&text, "locked out");
    assert_eq!(lockouts.len(), 1, "{text}");
    assert!(lockouts[0].contains("127.0.0.1"), "{}", lockouts[0]);
    let dwg_lines = lines_with(&text, "DWG");
    assert!(
        dwg_lines.len() <= 8,
        "{} DWG lines for 201 logins:\n{}",
        dwg_lines.len(),
        dwg_lines.join("\n")
    );
    assert!(
        !text.contains("guess-"),
        "an offered password reached the journal"
    );
    assert!(!text.contains(PASSWORD), "the password reached the journal");
}
