//! Schedules (`config::schedule`): any `[schedule.NAME]` table compiles or
//! is refused with sentences, never a panic. For a compiled schedule and
//! any instant: `next_change` is later than the instant, and the schedule
//! is open at the change exactly when it was closed at the instant (the
//! change is a real opening or closing, not a merged edge).
//!
//! Input: eight bytes of instant (little-endian seconds, folded into the
//! years 1970 to 2100 unless the top bit asks for any instant jiff can
//! hold), then the table as TOML (the form the tests and config use).
#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use smsgate::config::schedule::ScheduleConfig;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let raw = i64::from_le_bytes(head.try_into().unwrap_or([0; 8]));
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(config) = toml::from_str::<ScheduleConfig>(text) else {
        return;
    };
    let schedule = match config.compile() {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.problems.is_empty());
            return;
        }
    };
    let seconds = if raw < 0 {
        raw.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second())
    } else {
        raw % (130 * 365 * 86_400)
    };
    let Ok(at) = Timestamp::from_second(seconds) else {
        return;
    };
    let later = at.checked_add(SignedDuration::from_secs(37 * 60)).ok();
    for at in [Some(at), later].into_iter().flatten() {
        let open = schedule.is_open(at);
        if let Some(change) = schedule.next_change(at) {
            assert!(change > at, "{at} -> {change}");
            assert_ne!(schedule.is_open(change), open, "{at} -> {change}\n{text}");
        }
    }
});
