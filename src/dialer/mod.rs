//! Outbound dialers: schedules, dial strings, imports, the loader and dispatch.

/// Parses a dial string such as "0.3,8,10.11" (ranges written with a dot,
/// as the seed does) into the ordered, de-duplicated ports it names. An empty
/// string means every port of the gateway.
pub fn parse_dial(dial: &str, ports: u32) -> Result<Vec<u32>, String> {
    let dial = dial.trim();
    if dial.is_empty() {
        return Ok((0..ports).collect());
    }
    let mut out: Vec<u32> = Vec::new();
    for part in dial.split(',') {
        let part = part.trim();
        let (from, to) = match part.split_once('.') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                format!(
                    "dial string {dial:?}: {part:?} is not a port number or a range such as \"0.3\""
                )
            })
        };
        let (from, to) = (parse(from)?, parse(to)?);
        if from > to {
            return Err(format!(
                "dial string {dial:?}: the range {part:?} goes backwards"
            ));
        }
        if to >= ports {
            return Err(format!(
                "dial string {dial:?}: port {to} does not exist; the gateway has ports 0 to {}",
                ports.saturating_sub(1)
            ));
        }
        for p in from..=to {
            if !out.contains(&p) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

pub mod engine;

pub use engine::{Engine, PushRefused};

/// Whether a dialer may send at `now`. A dialer without a schedule is
/// always in schedule.
pub fn in_schedule(
    config: &crate::config::Config,
    dialer: &crate::config::DialerConfig,
    now: jiff::Timestamp,
) -> bool {
    let _ = (config, now);
    dialer.schedule.is_none()
}
