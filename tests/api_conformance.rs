//! API conformance: schemathesis (from PyPI; tests/run-all.sh installs it
//! and exports SMSGATE_SCHEMATHESIS) run against the daemon's own
//! /api/v1/openapi.json, every operation and every check, with an admin
//! token and realistic data behind it: a dialer with messages and a CSV
//! import, DNCR entries, a campaign with agents and a customer's
//! interaction, a webhook with dead letters. A client generated from the
//! document must never meet a surprise, so the run must end with zero
//! failures: whatever the server refuses, the document says it refuses.
//!
//! Run it alone: `cargo test --test api_conformance -- --nocapture`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{ADMIN, Daemon, OPERATOR, free_port, get, send_message, wait_until};
use serde_json::{Value, json};
use smsgate_sim::dinstar::DinstarSim;

const AGENT_A01: &str = "test-agent-a01-token-0123456789";

/// schemathesis as the test command installed it, or from PATH; a missing
/// one fails the test and says how to get it.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("SMSGATE_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let on_path = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        on_path,
        "schemathesis is missing: tests/run-all.sh installs it (a venv under \
         target/tools/schemathesis) and exports SMSGATE_SCHEMATHESIS; or \
         `pip install 'schemathesis>=4,<5'`"
    );
    PathBuf::from("schemathesis")
}

fn call(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let http = d.http();
    let mut r = match method {
        "GET" => http.get(d.url(path)),
        "POST" => http.post(d.url(path)),
        "PUT" => http.put(d.url(path)),
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

fn ok(d: &Daemon, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, v) = call(d, token, method, path, body);
    assert!((200..300).contains(&s), "{method} {path}: {s} {v}");
    v
}

fn upload(d: &Daemon, path: &str, csv: &str) -> Value {
    let r = d
        .http()
        .post(d.url(path))
        .bearer_auth(OPERATOR)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert_eq!(status, 201, "{path}: {v}");
    v
}

/// How many operations the served document has.
fn doc_operations(d: &Daemon) -> usize {
    let doc = get(d, "/api/v1/openapi.json");
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "put", "post", "delete", "patch"].contains(&m.as_str()))
                .count()
        })
        .sum()
}

/// A webhook receiver on `port` that takes every delivery (204).
fn receive_webhooks(port: u16) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
                    if reader.get_mut().write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn schemathesis_finds_no_failure_with_every_check() {
    let tool = schemathesis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(DinstarSim::builder().ports(4).start()).unwrap();
    // A webhook whose receiver is down at first: its deliveries are
    // dead-lettered within a second, so the dead-letter routes have data;
    // it is back (answering 204) before the run, so replays succeed.
    let receiver = free_port();
    let mut d = Daemon::start(
        &format!(
            r#"
[inbound]
reply_interval_ms = 0

# Streams the run leaves are noticed at the next heartbeat; soon, so they
# do not hold [events] max_streams slots.
[events]
heartbeat_s = 1

[[api.tokens]]
name = "agent-a01"
token = "{AGENT_A01}"
role = "agent"
agent = "a01"

[[gateway]]
name = "gw"
kind = "dinstar"
ports = 4
url = "{url}"
user = "admin"
password = "admin"
push_allow = ["127.0.0.1"]
result_poll_ms = 200
port_poll_s = 1
incoming_poll_s = 1

[[campaign]]
name = "soporte"
provider = "gw"
did_ports = ["gw:0"]
canned_responses = ["Gracias por su mensaje."]

[[webhook]]
name = "portal"
url = "http://127.0.0.1:{receiver}/hooks/smsgate"
secret = "conformance-webhook-secret-0123"
retry_initial_ms = 10
retry_max_s = 1
dead_letter_after_s = 1
"#,
            url = sim.base_url()
        ),
        &[],
    );
    let log = d.drain_stderr();
    d.wait_ready();
    d.drain_notify();

    // Outbound: single messages, then a CSV import.
    for (i, to) in ["099123456", "+59899654321", "098344384"]
        .iter()
        .enumerate()
    {
        send_message(
            &d,
            "campsms",
            to,
            &format!("Hola {i}, su turno es mañana 😊"),
        );
    }
    upload(
        &d,
        "/api/v1/imports?filename=CONFTEST07122026.csv",
        "campsms;098356484;Hola Mundo!;9999;\ncampsms;098378984;Recordatorio de pago;10;\n",
    );
    // DNCR entries, one for every dialer and one from a registry.
    upload(
        &d,
        "/api/v1/dncr?filename=DNCRCONF.csv",
        "099111222;campsms;\n099333444;;\n",
    );
    upload(
        &d,
        "/api/v1/dncr?filename=NOLLAME.csv&registry=no-llame",
        "099555666;;\n",
    );
    // Agents in the campaign, one logged in and ready.
    for id in ["a01", "a02"] {
        ok(
            &d,
            ADMIN,
            "PUT",
            &format!("/api/v1/agents/{id}"),
            Some(json!({"name": format!("Agente {id}")})),
        );
    }
    ok(
        &d,
        ADMIN,
        "POST",
        "/api/v1/members",
        Some(json!({"campaigns": ["soporte"], "agents": ["a01", "a02"]})),
    );
    ok(&d, ADMIN, "POST", "/api/v1/agents/a01/login", None);
    ok(&d, ADMIN, "POST", "/api/v1/agents/a01/ready", None);
    // A customer writes in on the campaign's port: inbound, an interaction
    // handed to a01, events (and dead letters for the webhook).
    sim.inject_incoming(0, "59899111222", "Buenos días, ¿cuánto cuesta?");
    assert!(
        wait_until(Duration::from_secs(15), || {
            get(&d, "/api/v1/interactions?campaign=soporte")["items"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        }),
        "the customer's message opened an interaction"
    );
    assert!(
        wait_until(Duration::from_secs(15), || {
            get(&d, "/api/v1/webhooks/portal/dead-letters")["items"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        }),
        "the webhook's deliveries were dead-lettered"
    );

    receive_webhooks(receiver);
    let out = Command::new(&tool)
        .arg("--config-file")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/schemathesis.toml"
        ))
        .arg("run")
        .arg(d.url("/api/v1/openapi.json"))
        // The document's server is the default listen address; the run
        // goes to this daemon's.
        .args(["--url", &d.url("")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
        // Bounded and reproducible: the same cases every run (about 2000
        // requests over the four phases, about 1.5 minutes in a debug build).
        .args(["--max-examples", "6", "--seed", "20261207"])
        .args(["--workers", "2"])
        // The event streams have their own shorter one (schemathesis.toml).
        .args(["--request-timeout", "10"])
        .args(["--generation-database", "none"])
        .arg("--no-color")
        .env("NO_COLOR", "1")
        // Whatever it leaves behind goes with the daemon's directory.
        .current_dir(d.dir.path())
        .output()
        .expect("schemathesis runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let log = log.text();
    let tail: Vec<&str> = log.lines().rev().take(100).collect();
    assert!(
        out.status.success(),
        "schemathesis found failures ({}):\n{text}\nthe end of the daemon's log:\n{}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    // Every operation was exercised: none filtered out or skipped as
    // untestable. (schemathesis leaves out the one serving the document it
    // was given.)
    let count = |label: &str| -> Option<usize> {
        let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
        let n = line.trim_start()[label.len()..].trim().split('/').next()?;
        n.parse().ok()
    };
    let operations = doc_operations(&d);
    assert_eq!(
        (count("Selected:"), count("Tested:")),
        (Some(operations - 1), Some(operations - 1)),
        "schemathesis did not test all {} operations:\n{text}",
        operations - 1
    );
}
