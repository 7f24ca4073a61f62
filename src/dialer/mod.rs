//! Outbound dialers: imports, the loader and dispatch. (Their schedules and
//! dial strings are parsed with the config: `config::schedule`,
//! `config::dialstring`.)

pub mod dncr_import;
pub mod engine;
pub mod import;
pub mod importer;
mod lines;

pub use engine::{Engine, PushRefused};

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
