//! The daemon at rest: resident memory and CPU time of the real binary
//! (demo config: a 4-port sim gateway, one dialer) after it settles, over
//! an idle window. `cargo bench --bench idle` (release build).
//!
//! Targets (issue 2): under 20 MB resident, and no busy polling (the
//! loops wake about once a second each to prove they turn: the CPU used
//! idle must stay a small fraction of a percent).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of the process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn main() {
    let window: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let config = demo
        .replace(
            "../demo-state",
            &dir.path().join("state").display().to_string(),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smsgate"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("start smsgate");
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(window));
    let ticks = cpu_ticks(pid) - c0;
    let secs = t0.elapsed().as_secs_f64();
    let hz = 100.0; // USER_HZ on Linux
    let rss = status_kib(pid, "VmRSS:");
    let hwm = status_kib(pid, "VmHWM:");
    println!(
        "idle: resident {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "idle: {ticks} CPU ticks in {secs:.0} s = {:.3}% of one core",
        ticks as f64 / hz / secs * 100.0
    );
    let _ = child.kill();
    let _ = child.wait();
}
