//! Helpers for tests that drive the real `smsgate` binary as a process.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "test-admin-token-0123456789";
pub const OPERATOR: &str = "test-operator-token-0123456789";
pub const VIEWER: &str = "test-viewer-token-0123456789";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_smsgate")
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config with a sim gateway and the three test tokens; `extra` is
/// appended as is.
pub fn config_text(port: u16, state_dir: &Path, extra: &str) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
drain_timeout_s = 5

[api]
listen = "127.0.0.1:{port}"

[[api.tokens]]
name = "admin"
token = "{ADMIN}"
role = "admin"

[[api.tokens]]
name = "operator"
token = "{OPERATOR}"
role = "operator"

[[api.tokens]]
name = "viewer"
token = "{VIEWER}"
role = "viewer"

[[gateway]]
name = "sim1"
kind = "sim"
ports = 4
latency_ms = 0

[[dialer]]
name = "campsms"
provider = "sim1"
dial = "0.3"
interval_ms = 10
{extra}
"#,
        state = state_dir.display()
    )
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub notify: Option<UnixDatagram>,
    pub started: Instant,
}

impl Daemon {
    /// Starts `smsgate run` on a fresh state dir, with a notify socket of
    /// our own standing in for systemd.
    pub fn start(extra_config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("smsgate.toml");
        std::fs::write(
            &config,
            config_text(port, &dir.path().join("state"), extra_config),
        )
        .unwrap();
        Self::start_with(dir, config, port, env)
    }

    pub fn start_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        port: u16,
        env: &[(&str, &str)],
    ) -> Self {
        let sock_path = dir.path().join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let notify = UnixDatagram::bind(&sock_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("JOURNAL_STREAM")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd.spawn().unwrap();
        Self {
            child,
            port,
            dir,
            config,
            notify: Some(notify),
            started,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits for a notify message containing `needle`; returns all seen.
    pub fn wait_notify(&self, needle: &str, within: Duration) -> Vec<String> {
        let sock = self.notify.as_ref().unwrap();
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = msg.lines().any(|l| l == needle || l.starts_with(needle));
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!(
            "no notify message {needle:?} within {within:?}; saw {seen:?}; stderr: {}",
            self.stderr_so_far()
        );
    }

    pub fn wait_ready(&self) {
        self.wait_notify("READY=1", Duration::from_secs(10));
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Waits for the process to exit; returns its code and how long it took.
    pub fn wait_exit(&mut self, within: Duration) -> (Option<i32>, Duration) {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "smsgate did not exit within {within:?}; stderr: {}",
            self.stderr_so_far()
        );
    }

    pub fn stderr_so_far(&self) -> String {
        String::new()
    }

    pub fn take_stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Reads the daemon's stderr (its log) from a thread of its own, so the
    /// pipe never fills however much it writes; the log so far is
    /// [`LogDrain::text`].
    pub fn drain_stderr(&mut self) -> LogDrain {
        let log = LogDrain::default();
        if let Some(mut e) = self.child.stderr.take() {
            let sink = log.0.clone();
            let ended = log.1.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
                ended.store(true, std::sync::atomic::Ordering::Release);
            });
        }
        log
    }

    pub fn http(&self) -> reqwest::blocking::Client {
        self.http_waiting(Duration::from_secs(10))
    }

    /// A client that waits up to `timeout` for each answer.
    pub fn http_waiting(&self, timeout: Duration) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(
                smsgate::tls::client_config(&smsgate::tls::TlsVerify::System).unwrap(),
            )
            .no_proxy()
            .timeout(timeout)
            // The API closes a kept-alive connection idle for 3 s; a pooled
            // one picked up at that instant meets a reset, so the pool lets
            // go of them first.
            .pool_idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap()
    }
}

/// A daemon's log as read so far by [`Daemon::drain_stderr`].
#[derive(Clone, Default)]
pub struct LogDrain(
    std::sync::Arc<std::sync::Mutex<String>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
);

impl LogDrain {
    pub fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The whole log, once the daemon has closed its stderr (it exited);
    /// what was read by then if that takes longer than `within`.
    pub fn text_at_end(&self, within: Duration) -> String {
        wait_until(within, || self.1.load(std::sync::atomic::Ordering::Acquire));
        self.text()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A viewer's GET of `path`, which must answer 200 with JSON.
pub fn get(d: &Daemon, path: &str) -> serde_json::Value {
    let r = d
        .http()
        .get(d.url(path))
        .bearer_auth(VIEWER)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

/// Sends one message through `dialer` as an operator; its id.
pub fn send_message(d: &Daemon, dialer: &str, to: &str, text: &str) -> i64 {
    let r = d
        .http()
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": dialer, "to": to, "text": text}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// The Prometheus text of `/metrics` now.
pub fn metrics(d: &Daemon) -> String {
    d.http()
        .get(d.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// Polls `f` until it holds or `within` has passed; its last answer.
pub fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A message as `GET /api/v1/messages/{id}` shows it; Null when the API
/// gives no readable answer.
pub fn message(d: &Daemon, id: i64) -> serde_json::Value {
    d.http()
        .get(d.url(&format!("/api/v1/messages/{id}")))
        .bearer_auth(VIEWER)
        .send()
        .ok()
        .and_then(|r| r.json().ok())
        .unwrap_or_default()
}

/// Waits until message `id` is in one of `states` (by `state_name`);
/// panics with its last view when it is not within `within`.
pub fn wait_message(d: &Daemon, id: i64, states: &[&str], within: Duration) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let ok = wait_until(within, || {
        last = message(d, id);
        states.iter().any(|s| last["state_name"] == *s)
    });
    assert!(ok, "message {id} never reached {states:?}: {last}");
    last
}

/// The API still serves while a fault is active: `GET /api/v1/status`
/// answers 200 and a new `POST /api/v1/messages` through `dialer` is
/// accepted, each within `within` (a client timeout: a stalled API fails
/// the test rather than hang it). The new message's id.
pub fn api_serves(d: &Daemon, dialer: &str, to: &str, text: &str, within: Duration) -> i64 {
    let http = d.http_waiting(within);
    let r = http
        .get(d.url("/api/v1/status"))
        .bearer_auth(VIEWER)
        .send()
        .unwrap_or_else(|e| panic!("GET /api/v1/status during the fault: {e}"));
    assert_eq!(r.status(), 200, "GET /api/v1/status during the fault");
    let r = http
        .post(d.url("/api/v1/messages"))
        .bearer_auth(OPERATOR)
        .json(&serde_json::json!({"dialer": dialer, "to": to, "text": text}))
        .send()
        .unwrap_or_else(|e| panic!("POST /api/v1/messages during the fault: {e}"));
    assert!(
        r.status().is_success(),
        "POST /api/v1/messages during the fault: {}",
        r.status()
    );
    r.json::<serde_json::Value>().unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// How many channels of `gateway` the API shows usable now.
pub fn usable_channels(d: &Daemon, gateway: &str) -> usize {
    d.http()
        .get(d.url("/api/v1/channels"))
        .bearer_auth(VIEWER)
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter(|c| c["gateway"] == gateway && c["usable"] == true)
        .count()
}

/// A runtime for the simulators a test starts beside the daemon.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Kills the daemon with SIGKILL and takes back its state directory,
/// config and port, to start it again on them (`Daemon::start_with`).
pub fn kill(mut d: Daemon) -> (tempfile::TempDir, PathBuf, u16) {
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    (dir, d.config.clone(), d.port)
}

impl Daemon {
    /// Reads the notify socket from a thread of its own from now on. A
    /// daemon that runs for minutes sends more WATCHDOG/STATUS datagrams
    /// than the socket queues; unread, its sends would block (systemd
    /// always reads them).
    pub fn drain_notify(&mut self) {
        if let Some(sock) = self.notify.take() {
            let _ = sock.set_read_timeout(None);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while sock.recv(&mut buf).is_ok() {}
            });
        }
    }
}
