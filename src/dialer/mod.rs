//! Outbound dialers: schedules, dial strings, imports, the loader and dispatch.

pub mod dialstring;
pub mod dncr_import;
pub mod engine;
pub mod import;
pub mod importer;
mod lines;
pub mod schedule;

pub use engine::{Engine, PushRefused};

/// The ports a dial string names on a gateway with `ports` ports, in
/// round-robin order. Empty means every port of the gateway.
pub fn parse_dial(dial: &str, ports: u32) -> Result<Vec<u32>, String> {
    if dial.trim().is_empty() {
        return Ok((0..ports).collect());
    }
    dialstring::DialString::parse_for_gateway(dial, ports)
        .map(|d| d.ports().to_vec())
        .map_err(|e| e.to_string())
}

/// Whether a dialer may send at `now`. A dialer without a schedule is
/// always in schedule.
pub fn in_schedule(
    config: &crate::config::Config,
    dialer: &crate::config::DialerConfig,
    now: jiff::Timestamp,
) -> bool {
    match &dialer.schedule {
        None => true,
        Some(name) => config.schedules.get(name).is_some_and(|s| s.is_open(now)),
    }
}
