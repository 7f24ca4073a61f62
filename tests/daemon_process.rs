//! The real binary as systemd runs it: readiness, status, watchdog,
//! reload on SIGHUP, drain and exit on SIGTERM, and the API's guards.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Daemon, OPERATOR, VIEWER};

#[test]
fn ready_healthz_within_a_second_then_sigterm_exits_zero_within_the_drain_timeout() {
    let mut d = Daemon::start("", &[("WATCHDOG_USEC", "1000000")]);
    let http = d.http();
    // /healthz answers within one second of start.
    let deadline = d.started + Duration::from_secs(1);
    let mut healthy = false;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(d.url("/healthz")).send() {
            if r.status() == 200 {
                healthy = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(healthy, "/healthz did not answer 200 within 1 s of start");
    let mut seen = d.wait_notify("READY=1", Duration::from_secs(5));
    // The watchdog pings at half of WATCHDOG_USEC while the loops turn.
    seen.extend(d.wait_notify("WATCHDOG=1", Duration::from_secs(3)));
    if !seen.iter().any(|m| m.starts_with("STATUS=")) {
        seen.extend(d.wait_notify("STATUS=", Duration::from_secs(5)));
    }
    let status = seen.iter().find(|m| m.starts_with("STATUS=")).unwrap();
    assert!(status.contains("4/4 channels usable"), "{status}");
    let r = http.get(d.url("/readyz")).send().unwrap();
    assert_eq!(r.status(), 200);

    d.signal("TERM");
    d.wait_notify("STOPPING=1", Duration::from_secs(5));
    let (code, took) = d.wait_exit(Duration::from_secs(6));
    assert_eq!(code, Some(0), "stderr: {}", d.take_stderr());
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}, over the 5 s drain timeout"
    );
}

fn status(d: &Daemon, token: &str) -> reqwest::blocking::Response {
    d.http()
        .get(d.url("/api/v1/status"))
        .bearer_auth(token)
        .send()
        .unwrap()
}

#[test]
fn sighup_applies_a_good_file_and_keeps_the_running_config_on_a_bad_one() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    assert_eq!(status(&d, VIEWER).status(), 200);
    let original = std::fs::read_to_string(&d.config).unwrap();

    // A broken file: refused, the old tokens still work.
    std::fs::write(
        &d.config,
        format!("{original}\n[[dialer]]\nname = \"x\"\nprovider = \"nope\"\n"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_notify("READY=1", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        status(&d, VIEWER).status(),
        200,
        "the running config must stay"
    );

    // A good file with the viewer token changed: the new one works, the old
    // one is refused.
    let new_token = "a-brand-new-viewer-token-42";
    std::fs::write(&d.config, original.replace(VIEWER, new_token)).unwrap();
    d.signal("HUP");
    d.wait_notify("READY=1", Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(&d, new_token).status() != 200 {
        assert!(Instant::now() < deadline, "the new config was not applied");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&d, VIEWER).status(), 401);
}

#[test]
fn reload_through_the_api_reports_every_problem() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let original = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        original.replace("ports = 4", "ports = 4\nbogus = true"),
    )
    .unwrap();
    let r = d
        .http()
        .post(d.url("/api/v1/config/reload"))
        .bearer_auth(ADMIN)
        .send()
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], "config_invalid");
    assert!(body["errors"][0]["line"].as_u64().is_some(), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("bogus"),
        "{body}"
    );
    assert_eq!(status(&d, VIEWER).status(), 200);
}

fn assert_problem(r: reqwest::blocking::Response, status: u16, code: &str) {
    assert_eq!(r.status().as_u16(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(
        body["type"].as_str().is_some_and(|s| s.ends_with(code)),
        "{body}"
    );
}

#[test]
fn no_token_401_wrong_role_403_oversized_body_413_all_problem_json() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let http = d.http();
    assert_problem(
        http.get(d.url("/api/v1/status")).send().unwrap(),
        401,
        "unauthorized",
    );
    assert_problem(
        http.get(d.url("/api/v1/status"))
            .bearer_auth("not-a-token-at-all-xxxxxx")
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    assert_problem(
        http.post(d.url("/api/v1/config/reload"))
            .bearer_auth(OPERATOR)
            .send()
            .unwrap(),
        403,
        "forbidden",
    );
    assert_problem(
        http.post(d.url("/api/v1/config/reload"))
            .bearer_auth(VIEWER)
            .send()
            .unwrap(),
        403,
        "forbidden",
    );
    // Over [api] max_body_bytes (64 KiB by default), with a length...
    let big = vec![b'x'; 70 * 1024];
    assert_problem(
        http.post(d.url("/api/v1/config/reload"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .unwrap(),
        413,
        "body_too_large",
    );
    // ...and the 401 comes before reading any body.
    assert_problem(
        http.post(d.url("/api/v1/config/reload"))
            .body(big)
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    assert_problem(
        http.get(d.url("/api/v1/nothing-here")).send().unwrap(),
        404,
        "not_found",
    );
    assert_problem(
        http.delete(d.url("/api/v1/status"))
            .bearer_auth(ADMIN)
            .send()
            .unwrap(),
        405,
        "method_not_allowed",
    );
}

#[test]
fn the_openapi_document_is_served_and_lists_the_routes() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let r = d.http().get(d.url("/api/v1/openapi.json")).send().unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/status"]["get"].is_object());
}

#[test]
fn the_metrics_name_loops_and_requests() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let http = d.http();
    let _ = http.get(d.url("/api/v1/status")).send().unwrap();
    let text = http.get(d.url("/metrics")).send().unwrap().text().unwrap();
    assert!(text.contains("smsgate_build_info{version="), "{text}");
    assert!(
        text.contains(
            "smsgate_api_requests_total{method=\"GET\",route=\"/api/v1/status\",status=\"401\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("smsgate_loop_heartbeat_age_seconds{task=\"store-writer\"}"),
        "{text}"
    );
    assert!(
        text.contains("smsgate_channel_healthy")
            || text.contains("smsgate_dialer_in_memory_messages"),
        "{text}"
    );
}

#[test]
fn a_second_daemon_on_the_same_port_fails_with_a_plain_reason() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("second.toml");
    std::fs::write(
        &config,
        common::config_text(d.port, &dir.path().join("state"), ""),
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{}", d.port)),
        "{err}"
    );
}

/// /metrics must be valid for Prometheus: checked by Prometheus's own
/// `promtool`, which tests/run-all.sh installs (Debian package prometheus).
#[test]
fn metrics_pass_promtool() {
    let d = Daemon::start("", &[]);
    d.wait_ready();
    let http = d.http();
    let _ = http
        .get(d.url("/api/v1/status"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    let text = http.get(d.url("/metrics")).send().unwrap().text().unwrap();
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool is needed for this test ({e}); install it with `apt-get install prometheus` or run tests/run-all.sh, which does"
        ),
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With [api] tls_cert/tls_key the API speaks HTTPS only, and the CLI
/// reaches it by trusting that certificate.
#[test]
fn the_api_serves_https_when_configured_and_the_cli_follows() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let text = common::config_text(port, &dir.path().join("state"), "").replace(
        "[api]\n",
        &format!(
            "[api]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            fixtures.join("dinstar-sim.crt").display(),
            fixtures.join("dinstar-sim.key").display()
        ),
    );
    let config = dir.path().join("smsgate.toml");
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with(dir, config.clone(), port, &[]);
    d.wait_ready();
    let out = std::process::Command::new(common::bin())
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sim1:0"));
    // Plain HTTP on the TLS port gets nowhere.
    let plain = d.http().get(d.url("/healthz")).send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// The `sim` gateway's simulated customers write in (demo mode shows
/// inbound traffic): each port in turn, the configured senders and texts
/// intact, routed to the campaign of their port or left unrouted.
#[test]
fn the_sim_gateway_receives_what_its_simulated_customers_write() {
    let extra = r#"
[[campaign]]
name = "demo"
provider = "sim1"
did_ports = ["sim1:0", "sim1:1"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("smsgate.toml");
    let text = common::config_text(port, &dir.path().join("state"), extra).replace(
        "latency_ms = 0\n",
        "latency_ms = 0\ninbound_every_s = 1\ninbound_from = [\"+59899111222\", \"BANCO\"]\ninbound_texts = [\"¿Mañana? 👍\", \"Ñandú\", \"tres\", \"cuatro\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let d = Daemon::start_with(dir, config, port, &[]);
    d.wait_ready();
    let inbound = || {
        common::get(&d, "/api/v1/inbound")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        common::wait_until(Duration::from_secs(15), || inbound().len() >= 4),
        "{:?}",
        inbound()
    );
    let mut items = inbound();
    items.reverse();
    let got: Vec<(u64, &str, &str, Option<&str>)> = items[..4]
        .iter()
        .map(|m| {
            (
                m["port"].as_u64().unwrap(),
                m["sender"].as_str().unwrap(),
                m["text"].as_str().unwrap(),
                m["campaign"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, "+59899111222", "¿Mañana? 👍", Some("demo")),
            (1, "BANCO", "Ñandú", Some("demo")),
            (2, "+59899111222", "tres", None),
            (3, "BANCO", "cuatro", None),
        ]
    );
    assert_eq!(items[0]["number"], "+59899111222");
    assert_eq!(items[1]["number"], serde_json::Value::Null);
}
