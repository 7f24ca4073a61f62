//! Dial strings (`config::dialstring`): any text parses or is refused with
//! a reason, never a panic; parsed ports have no repeat and are at most
//! `MAX_PORTS`; the canonical form (Display) parses back to the same ports;
//! round-robin visits the ports in order and starts over; a gateway check
//! refuses exactly the ports beyond the gateway.
//!
//! Input: the dial string, optionally LF and the gateway's port count
//! (32 when absent or unreadable; at most 512, the most the config
//! accepts: an empty dial string means every port, one `u32` each).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::config::dialstring::{DialString, MAX_PORTS, parse_dial};

fuzz_target!(|input: &str| {
    let (text, count) = input.split_once('\n').unwrap_or((input, "32"));
    let port_count = count.trim().parse::<u32>().unwrap_or(32).min(512);
    let _ = parse_dial(text, port_count);
    let d = match DialString::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let ports = d.ports();
    assert!(ports.len() <= MAX_PORTS);
    let mut seen = std::collections::HashSet::new();
    assert!(
        ports.iter().all(|p| seen.insert(*p)),
        "no repeats: {ports:?}"
    );

    let canonical = d.to_string();
    let again = DialString::parse(&canonical)
        .unwrap_or_else(|e| panic!("{text:?} shown as {canonical:?}: {e}"));
    assert_eq!(again.ports(), ports, "{text:?} shown as {canonical:?}");

    let mut rr = d.round_robin();
    for round in 0..2 {
        for &p in ports {
            assert_eq!(rr.next_port(), Some(p), "round {round}");
        }
    }
    if ports.is_empty() {
        assert_eq!(rr.next_port(), None);
    }

    let fits = ports.iter().all(|&p| p < port_count);
    assert_eq!(d.validate(text, port_count).is_ok(), fits);
});
