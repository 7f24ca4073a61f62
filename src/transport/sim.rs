//! `sim`: an in-process gateway with N ports, a configurable latency and
//! failure rate. It lets the daemon run with no GSM hardware (demo mode)
//! and gives benchmarks a zero-cost transport.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    Accepted, BoxFuture, Event, Events, Outbound, PortHealth, Reconciled, SendError, Transport,
};
use crate::config::SimSettings;

/// How long after a send the simulated delivery report comes.
const REPORT_DELAY: std::time::Duration = std::time::Duration::from_millis(200);

/// The simulated gateway sends on every port, receives what its simulated
/// customers write (`inbound_every_s`), and keeps nothing a restart could
/// ask about.
pub fn capabilities(ports: u32, settings: &SimSettings) -> super::Capabilities {
    super::Capabilities {
        ports,
        text_limit: None,
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: None,
        receives: settings.inbound_every.is_some(),
        resume_window: None,
        whatsapp: false,
    }
}

pub struct SimTransport {
    name: String,
    ports: u32,
    settings: SimSettings,
    events: Events,
    next_ref: AtomicU64,
    rng: Mutex<u64>,
}

impl SimTransport {
    /// The gateway; with `inbound_every` set, also its simulated customers,
    /// until `stop`.
    pub fn start(
        name: &str,
        ports: u32,
        settings: SimSettings,
        events: Events,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        if let Some(every) = settings.inbound_every {
            tokio::spawn(customers(
                name.to_string(),
                ports,
                every,
                settings.inbound_from.clone(),
                settings.inbound_texts.clone(),
                events.clone(),
                stop,
            ));
        }
        Self::new(name, ports, settings, events)
    }

    pub fn new(name: &str, ports: u32, settings: SimSettings, events: Events) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Self {
            name: name.to_string(),
            ports,
            settings,
            events,
            next_ref: AtomicU64::new(1),
            rng: Mutex::new(seed),
        }
    }

    /// xorshift64*: enough randomness to decide simulated failures.
    fn roll(&self) -> f64 {
        let mut s = self.rng.lock().map(|g| *g).unwrap_or(1);
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        if let Ok(mut g) = self.rng.lock() {
            *g = s;
        }
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Simulated customers: every `every`, the next sender writes the next
/// text on the next port, as a real gateway would hand it over. The keys
/// carry this run's start, so a restart's messages are new ones.
async fn customers(
    gateway: String,
    ports: u32,
    every: std::time::Duration,
    from: Vec<String>,
    texts: Vec<String>,
    events: Events,
    stop: tokio_util::sync::CancellationToken,
) {
    let run = crate::now_ms();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut n: usize = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (Some(sender), Some(text)) = (
            from.get(n % from.len().max(1)),
            texts.get(n % texts.len().max(1)),
        ) else {
            return;
        };
        let port = (n as u32) % ports.max(1);
        let message = super::Received {
            gateway: gateway.clone(),
            port: Some(port),
            source_key: format!("sim:{run}:{n}"),
            sender: sender.clone(),
            number: sender.starts_with('+').then(|| sender.clone()),
            recipient: None,
            text: text.clone(),
            sent_at: None,
        };
        if events.send_waiting(Event::Inbound(message)).await.is_err() {
            return;
        }
        n = n.wrapping_add(1);
    }
}

impl Transport for SimTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn ports(&self) -> u32 {
        self.ports
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            if msg.port >= self.ports {
                return Err(SendError::PortUnusable {
                    reason: format!(
                        "port {} does not exist on sim gateway {}",
                        msg.port, self.name
                    ),
                });
            }
            if !self.settings.latency.is_zero() {
                tokio::time::sleep(self.settings.latency).await;
            }
            if self.settings.failure_rate > 0.0 && self.roll() < self.settings.failure_rate {
                return Err(SendError::Temporary {
                    reason: "simulated failure".into(),
                });
            }
            let r = self.next_ref.fetch_add(1, Ordering::Relaxed);
            let gateway_ref = format!("sim-{r}");
            // The handset "confirms" a moment later, as real ones do, so
            // demo mode shows the whole life of a message.
            let events = self.events.clone();
            let report = Event::Delivered {
                gateway: self.name.clone(),
                gateway_ref: gateway_ref.clone(),
                delivered: true,
                detail: "simulated delivery report".into(),
            };
            tokio::spawn(async move {
                tokio::time::sleep(REPORT_DELAY).await;
                let _ = events.send_waiting(report).await;
            });
            Ok(Accepted { gateway_ref })
        })
    }

    fn reconcile<'a>(&'a self, _asked: &'a super::Asked) -> BoxFuture<'a, Reconciled> {
        // An in-process gateway dies with us: it cannot say what left.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        if port < self.ports {
            PortHealth {
                usable: true,
                reason: String::new(),
                sim: Some(true),
                imsi: Some(format!("00101{:010}", port)),
                number: None,
                registered: Some(true),
                signal: Some(25),
                operator: Some("simulated".into()),
            }
        } else {
            PortHealth {
                usable: false,
                reason: "no such port".into(),
                ..Default::default()
            }
        }
    }
}
