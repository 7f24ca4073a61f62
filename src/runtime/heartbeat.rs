//! Proof of life of every main loop, for the systemd watchdog (the daemon
//! pings it only while no loop is silent).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often every main loop proves it is turning.
pub const BEAT_PERIOD: Duration = Duration::from_secs(1);

/// Proof of life of one main loop. The loop calls `beat()` every time it
/// turns (at least every `period()`); the watchdog pings systemd only while
/// every registered loop has beaten recently.
#[derive(Clone)]
pub struct Heartbeat {
    inner: Arc<Beat>,
}

pub struct Beat {
    name: String,
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Beat {
                name: name.into(),
                epoch: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }

    /// A heartbeat nobody watches, for tests and tools.
    pub fn detached() -> Self {
        Self::new("detached")
    }

    pub fn beat(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn period(&self) -> Duration {
        BEAT_PERIOD
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn age(&self) -> Duration {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.inner.last_ms.load(Ordering::Relaxed)))
    }
}

/// The set of loops the watchdog watches. It holds them weakly: a loop
/// that ends (a gateway removed on reload) drops out instead of looking
/// stuck forever.
#[derive(Clone, Default)]
pub struct Heartbeats {
    list: Arc<Mutex<Vec<std::sync::Weak<Beat>>>>,
}

impl Heartbeats {
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let hb = Heartbeat::new(name);
        hb.beat();
        if let Ok(mut l) = self.list.lock() {
            l.retain(|w| w.strong_count() > 0);
            l.push(Arc::downgrade(&hb.inner));
        }
        hb
    }

    fn live(&self) -> Vec<Heartbeat> {
        self.list
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|w| w.upgrade())
                    .map(|inner| Heartbeat { inner })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loops that have not turned within `limit`.
    pub fn stuck(&self, limit: Duration) -> Vec<(String, Duration)> {
        self.live()
            .iter()
            .filter(|h| h.age() > limit)
            .map(|h| (h.name().to_string(), h.age()))
            .collect()
    }

    pub fn all(&self) -> Vec<(String, Duration)> {
        self.live()
            .iter()
            .map(|h| (h.name().to_string(), h.age()))
            .collect()
    }
}

impl crate::store::WriterBeat for Heartbeat {
    fn beat(&self) {
        Heartbeat::beat(self);
    }

    fn period(&self) -> Duration {
        Heartbeat::period(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_loop_is_reported_stuck_and_a_beating_one_is_not() {
        let hbs = Heartbeats::default();
        let a = hbs.register("a");
        let _b = hbs.register("b");
        std::thread::sleep(Duration::from_millis(60));
        a.beat();
        let stuck = hbs.stuck(Duration::from_millis(50));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].0, "b");
    }

    #[test]
    fn a_loop_that_ended_is_not_reported_stuck() {
        let hbs = Heartbeats::default();
        let gone = hbs.register("gone");
        drop(gone);
        std::thread::sleep(Duration::from_millis(20));
        assert!(hbs.stuck(Duration::from_millis(5)).is_empty());
        assert!(hbs.all().is_empty());
    }
}
