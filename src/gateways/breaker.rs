//! A gateway's circuit breaker. Gateway-level failures (timeouts, refused
//! connections, 5xx, refused credentials, sends whose fate is unknown) in a
//! row open it; while open, the gateway's channels take no messages and a
//! channel group's traffic moves to its fallback channels. A probe closes
//! it once the gateway answers healthily again.
//!
//! A single port that cannot send (Dinstar 550, no SIM) is the channel's
//! problem, not the gateway's: it does not count here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::runtime::Shared;

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { reason: String, next_probe: Instant },
}

#[derive(Debug)]
pub struct Breaker {
    gateway: String,
    threshold: u32,
    probe_every: Duration,
    state: Mutex<State>,
}

/// A change of state, for the caller to log and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Opened { reason: String },
    Closed,
}

impl Breaker {
    pub fn new(gateway: &str, threshold: u32, probe_every: Duration) -> Self {
        Self {
            gateway: gateway.to_string(),
            threshold: threshold.max(1),
            probe_every,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Why the breaker is open, if it is.
    pub fn open_reason(&self) -> Option<String> {
        match &*self.state.lock().ok()? {
            State::Open { reason, .. } => Some(reason.clone()),
            State::Closed { .. } => None,
        }
    }

    pub fn success(&self) -> Option<Transition> {
        let mut s = self.state.lock().ok()?;
        match &mut *s {
            State::Closed { failures } => {
                *failures = 0;
                None
            }
            // A send that got through while open (one already in flight):
            // the gateway works, close.
            State::Open { .. } => {
                *s = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
        }
    }

    pub fn failure(&self, reason: &str) -> Option<Transition> {
        let mut s = self.state.lock().ok()?;
        match &mut *s {
            State::Closed { failures } => {
                *failures += 1;
                if *failures >= self.threshold {
                    let reason = format!("{} failures in a row, the last: {reason}", *failures);
                    *s = State::Open {
                        reason: reason.clone(),
                        next_probe: Instant::now() + self.probe_every,
                    };
                    return Some(Transition::Opened { reason });
                }
                None
            }
            State::Open { .. } => None,
        }
    }

    /// Whether an open breaker is due for a probe (and books the next one).
    pub fn probe_due(&self) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        match &mut *s {
            State::Open { next_probe, .. } if Instant::now() >= *next_probe => {
                *next_probe = Instant::now() + self.probe_every;
                true
            }
            _ => false,
        }
    }

    /// The probe found the gateway healthy.
    pub fn probe_passed(&self) -> Option<Transition> {
        let mut s = self.state.lock().ok()?;
        if matches!(*s, State::Open { .. }) {
            *s = State::Closed { failures: 0 };
            return Some(Transition::Closed);
        }
        None
    }
}

/// Logs and counts a breaker's change of state.
pub fn announce(shared: &Shared, breaker: &Breaker, t: &Transition) {
    let gateway = breaker.gateway().to_string();
    match t {
        Transition::Opened { reason } => {
            tracing::warn!(gateway = %gateway, reason = %reason, "gateway failing: breaker opened; its channels take no messages and channel groups move to their fallback channels");
            shared
                .metrics
                .breaker_open
                .get_or_create(&crate::metrics::GatewayLabel {
                    gateway: gateway.clone(),
                })
                .set(1);
            shared
                .metrics
                .breaker_transitions
                .get_or_create(&crate::metrics::BreakerLabels {
                    gateway,
                    to: "open",
                })
                .inc();
        }
        Transition::Closed => {
            tracing::info!(gateway = %gateway, "gateway healthy again: breaker closed; traffic moves back");
            shared
                .metrics
                .breaker_open
                .get_or_create(&crate::metrics::GatewayLabel {
                    gateway: gateway.clone(),
                })
                .set(0);
            shared
                .metrics
                .breaker_transitions
                .get_or_create(&crate::metrics::BreakerLabels {
                    gateway,
                    to: "closed",
                })
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_in_a_row_and_a_success_resets_the_count() {
        let b = Breaker::new("gw1", 3, Duration::from_secs(60));
        assert_eq!(b.failure("timeout"), None);
        assert_eq!(b.failure("timeout"), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.failure("timeout"), None);
        assert_eq!(b.failure("timeout"), None);
        match b.failure("HTTP 500") {
            Some(Transition::Opened { reason }) => {
                assert!(reason.contains("3 failures in a row, the last: HTTP 500"))
            }
            other => panic!("{other:?}"),
        }
        assert!(b.open_reason().is_some());
        assert_eq!(b.failure("again"), None, "already open");
    }

    #[test]
    fn a_probe_is_due_only_after_its_interval_and_closes_it() {
        let b = Breaker::new("gw1", 1, Duration::from_millis(30));
        assert!(matches!(b.failure("down"), Some(Transition::Opened { .. })));
        assert!(!b.probe_due());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.probe_due());
        assert!(!b.probe_due(), "the next probe is booked");
        assert_eq!(b.probe_passed(), Some(Transition::Closed));
        assert_eq!(b.open_reason(), None);
        assert_eq!(b.probe_passed(), None);
    }
}
