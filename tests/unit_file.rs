//! The shipped unit bounds what the daemon may take, and its bounds fit
//! what the config allows: open files for `max_connections` at its
//! largest, threads for tokio's bounded pools, memory, and a stop timeout
//! above the default drain.

use std::time::Duration;

fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/smsgate.service"
    ))
    .unwrap()
}

fn value(key: &str) -> Option<String> {
    unit()
        .lines()
        .rev()
        .filter_map(|l| {
            l.trim()
                .strip_prefix(&format!("{key}="))
                .map(str::to_string)
        })
        .next()
}

fn number(key: &str) -> u64 {
    let v = value(key).unwrap_or_else(|| panic!("the unit has no {key}="));
    v.trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .unwrap_or_else(|_| panic!("{key}={v} is not a number"))
}

#[test]
fn open_files_fit_the_largest_max_connections() {
    // config/validate: max_connections is at most 65,536; the daemon needs
    // about 512 files besides.
    assert!(number("LimitNOFILE") >= 65_536 + 512);
}

#[test]
fn threads_and_memory_are_bounded() {
    // 2 workers + 64 blocking threads + the store's 2 + modems and margin.
    let tasks = number("TasksMax");
    assert!(
        (2 + 64 + 2 + 16..=4096).contains(&tasks),
        "TasksMax={tasks}"
    );
    assert!(value("MemoryMax").is_some(), "no MemoryMax=");
}

#[test]
fn the_stop_timeout_outlasts_the_default_drain() {
    let stop = Duration::from_secs(number("TimeoutStopSec"));
    // config/smsgate.toml: drain_timeout_s = 20 by default, and the store's
    // close after it.
    assert!(
        stop >= Duration::from_secs(20 + 5),
        "TimeoutStopSec={stop:?}"
    );
}
