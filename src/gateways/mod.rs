//! The gateways the config names, running: for each, its transport, one
//! channel worker per port, a breaker, and the probe that closes it. This is
//! where a newcomer looks for failover: a gateway's breaker (`breaker`), the
//! probe that closes it (`probe`), and a channel group's switch between its
//! primary and fallback channels (`failover`).
//!
//! A send without a clear answer, on a gateway that can be asked about it
//! afterwards, is not settled by its channel: it stays SENDING and goes to
//! `doubts`, which asks the gateway until the gateway has had time to act
//! on the request (so a slow gateway's message is not sent twice).
//!
//! Supervision: a reload restarts exactly the gateways whose settings
//! changed. Before a transport is built, what it needs of the store (the
//! messages an earlier run left awaiting a result or a report, its inbound
//! mark) is read here and handed in, so no transport touches the store.

mod breaker;
pub mod channel;
pub mod doubts;
mod failover;
mod probe;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use breaker::Breaker;
pub use channel::{Channel, ChannelView, Job, JobDone, JobOutcome};
pub use doubts::{Doubt, Doubts};
pub use failover::Failover;

use crate::config::{Config, GatewayConfig, GatewaySettings};
use crate::runtime::Shared;
use crate::store::{inbound, spool};
use crate::transport::{
    self, Awaiting, Events, Transport, TransportError, WebhookReply, WebhookRequest,
};

struct Gateway {
    config_key: String,
    transport: Arc<dyn Transport>,
    channels: Vec<Arc<Channel>>,
    stop: CancellationToken,
}

/// The running gateways. Cheap to clone.
#[derive(Clone)]
pub struct Gateways {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    running: Mutex<HashMap<String, Arc<Gateway>>>,
    events: Events,
    /// Where channels (and the start's reconciliation) hand messages in
    /// doubt.
    doubts: Doubts,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Gateways {
    /// No gateway runs until [`sync`](Self::sync). Transports report on
    /// `events`; every task is spawned on `tracker` and ends with `stop`.
    /// Starts the reconciler of messages in doubt (needs a Tokio runtime).
    pub fn new(
        shared: Shared,
        events: Events,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        let (doubts, doubts_rx) = Doubts::channel();
        let gateways = Self {
            inner: Arc::new(Inner {
                shared,
                running: Mutex::new(HashMap::new()),
                events,
                doubts,
                tracker: tracker.clone(),
                stop: stop.clone(),
            }),
        };
        tracker.spawn(doubts::run(gateways.clone(), doubts_rx, stop));
        gateways
    }

    /// Hands a message in doubt to the reconciler: it stays SENDING until
    /// its gateway says what became of it (see [`doubts`]).
    pub fn doubt(&self, d: Doubt) {
        self.inner.doubts.add(d);
    }

    /// Starts the gateways the config enables, stops the ones it no longer
    /// names, and restarts those whose settings changed.
    pub async fn sync(&self, config: &Config) {
        let to_start: Vec<&GatewayConfig> = {
            let Ok(mut running) = self.inner.running.lock() else {
                return;
            };
            let wanted: HashSet<&str> = config
                .gateways
                .iter()
                .filter(|g| g.enabled)
                .map(|g| g.name.as_str())
                .collect();
            running.retain(|name, gw| {
                let keep = wanted.contains(name.as_str());
                if !keep {
                    tracing::info!(gateway = %name, "gateway removed or disabled; its channels stop");
                    gw.stop.cancel();
                }
                keep
            });
            let mut to_start = Vec::new();
            for gc in config.gateways.iter().filter(|g| g.enabled) {
                if running
                    .get(&gc.name)
                    .is_some_and(|g| g.config_key == gateway_key(gc))
                {
                    continue;
                }
                if let Some(old) = running.remove(&gc.name) {
                    tracing::info!(gateway = %gc.name, "gateway settings changed; restarting its channels");
                    old.stop.cancel();
                }
                to_start.push(gc);
            }
            to_start
        };
        for gc in to_start {
            self.start(gc, config).await;
        }
    }

    async fn start(&self, gc: &GatewayConfig, config: &Config) {
        let shared = &self.inner.shared;
        let (awaiting, inbound_mark) = self.resume_state(gc).await;
        let (last_inbound, templates_sent) = self.whatsapp_state(gc).await;
        // The token exists before the transport so its background tasks
        // (pollers) stop with the gateway's channels.
        let stop = self.inner.stop.child_token();
        let ctx = transport::BuildContext {
            events: self.inner.events.clone(),
            stop: stop.clone(),
            awaiting,
            inbound_mark,
            default_country: config.daemon.default_country.clone(),
            last_inbound,
            templates_sent,
        };
        let t = match transport::build(gc, ctx) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(gateway = %gc.name, error = %e, "cannot start the gateway");
                return;
            }
        };
        let breaker = Arc::new(Breaker::new(
            &gc.name,
            gc.breaker_failures,
            gc.breaker_probe,
        ));
        shared
            .metrics
            .breaker_open
            .get_or_create(&crate::metrics::GatewayLabel {
                gateway: gc.name.clone(),
            })
            .set(0);
        self.inner.tracker.spawn(probe::run(
            shared.clone(),
            t.clone(),
            breaker.clone(),
            stop.clone(),
        ));
        let reconcile = transport::capabilities(gc).reconcile;
        let channels = (0..t.ports())
            .map(|port| {
                let hb = shared
                    .heartbeats
                    .register(format!("channel {}:{port}", gc.name));
                Channel::start(
                    shared,
                    t.clone(),
                    breaker.clone(),
                    reconcile.map(|timing| (timing, self.inner.doubts.clone())),
                    port,
                    hb,
                    stop.clone(),
                    &self.inner.tracker,
                )
            })
            .collect();
        tracing::info!(gateway = %gc.name, kind = gc.kind.as_str(), ports = t.ports(), "gateway started");
        if let Ok(mut running) = self.inner.running.lock() {
            running.insert(
                gc.name.clone(),
                Arc::new(Gateway {
                    config_key: gateway_key(gc),
                    transport: t,
                    channels,
                    stop,
                }),
            );
        }
    }

    /// What an earlier run left for this gateway's transport: the messages
    /// it sent that still await a result or a report (within the kind's
    /// resume window), and its inbound mark.
    async fn resume_state(&self, gc: &GatewayConfig) -> (Vec<Awaiting>, Option<i64>) {
        let store = &self.inner.shared.store;
        let caps = transport::capabilities(gc);
        let mut awaiting = Vec::new();
        if let Some(window) = caps.resume_window {
            let since = crate::now_ms().saturating_sub(window.as_millis() as i64);
            let name = gc.name.clone();
            match store
                .read(move |c| spool::sent_awaiting(c, &name, since))
                .await
            {
                Ok(rows) => {
                    awaiting = rows
                        .into_iter()
                        .map(|row| Awaiting {
                            message_id: row.id,
                            port: row.port(),
                            reference: row.reference,
                            gateway_ref: row.gateway_ref,
                            number: row.number,
                            sent_at: row.sent_at,
                        })
                        .collect()
                }
                Err(e) => {
                    tracing::error!(gateway = %gc.name, error = %e, "cannot read the messages awaiting a result or delivery report; those sent before the restart stay SENT")
                }
            }
        }
        let mut mark = None;
        if caps.receives {
            let key = inbound::mark_key(gc.kind.as_str(), &gc.name);
            match store.read(move |c| inbound::kv_get(c, &key)).await {
                Ok(m) => mark = m,
                Err(e) => {
                    tracing::error!(gateway = %gc.name, error = %e, "cannot read the inbound mark; received messages are fetched from the start (they are kept once)")
                }
            }
        }
        (awaiting, mark)
    }

    /// For a gateway under WhatsApp's rules: who wrote to it, and who it
    /// sent a template to, in the last 24 hours, so its windows and its
    /// messaging limit survive a restart.
    async fn whatsapp_state(&self, gc: &GatewayConfig) -> (Vec<(String, i64)>, Vec<(String, i64)>) {
        if !transport::capabilities(gc).whatsapp {
            return (Vec::new(), Vec::new());
        }
        let since =
            crate::now_ms().saturating_sub(smsgate_proto::whatsapp_rules::CUSTOMER_WINDOW_MS);
        let name = gc.name.clone();
        let read = self
            .inner
            .shared
            .store
            .read(move |c| {
                Ok((
                    inbound::last_by_number(c, &name, since)?,
                    spool::templates_sent(c, &name, since)?,
                ))
            })
            .await;
        read.unwrap_or_else(|e| {
            tracing::error!(gateway = %gc.name, error = %e, "cannot read the WhatsApp windows and messaging limit's use; until customers write again, free text to them is refused");
            (Vec::new(), Vec::new())
        })
    }

    fn gateway(&self, name: &str) -> Option<Arc<Gateway>> {
        self.inner
            .running
            .lock()
            .ok()
            .and_then(|g| g.get(name).cloned())
    }

    /// Each running WhatsApp gateway's messaging limit: used, and the limit.
    pub fn messaging_limits(&self) -> Vec<(String, usize, Option<u32>)> {
        let gws: Vec<Arc<Gateway>> = self
            .inner
            .running
            .lock()
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default();
        gws.iter()
            .filter_map(|g| {
                let (used, limit) = g.transport.messaging_limit()?;
                Some((g.transport.name().to_string(), used, limit))
            })
            .collect()
    }

    /// The running transport of a gateway.
    pub fn transport(&self, name: &str) -> Option<Arc<dyn Transport>> {
        self.gateway(name).map(|g| g.transport.clone())
    }

    /// The channels of `ports` of a gateway, in that order (those it does
    /// not have are left out).
    pub fn channels_of(&self, gateway: &str, ports: &[u32]) -> Vec<Arc<Channel>> {
        self.gateway(gateway)
            .map(|gw| {
                ports
                    .iter()
                    .filter_map(|p| gw.channels.get(*p as usize).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every channel of one gateway, in port order; empty when it is not
    /// running.
    pub fn all_channels_of(&self, gateway: &str) -> Vec<Arc<Channel>> {
        self.gateway(gateway)
            .map(|gw| gw.channels.clone())
            .unwrap_or_default()
    }

    /// Every channel, by gateway and port.
    pub fn views(&self) -> Vec<ChannelView> {
        let gws: Vec<Arc<Gateway>> = self
            .inner
            .running
            .lock()
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default();
        let mut out: Vec<ChannelView> = gws
            .iter()
            .flat_map(|g| g.channels.iter().map(|c| c.view()))
            .collect();
        out.sort_by(|a, b| (&a.gateway, a.port).cmp(&(&b.gateway, b.port)));
        out
    }

    /// A port's health as its transport reported it.
    pub fn set_health(&self, gateway: &str, port: u32, health: transport::PortHealth) {
        if let Some(ch) = self
            .gateway(gateway)
            .and_then(|g| g.channels.get(port as usize).cloned())
        {
            if !health.usable {
                tracing::warn!(channel = %ch.id, reason = %health.reason, "port unusable");
            }
            ch.set_health(health);
        }
    }

    /// Hands a request a gateway made to our API to its transport.
    pub async fn webhook(
        &self,
        gateway: &str,
        request: WebhookRequest,
    ) -> Result<WebhookReply, TransportError> {
        let gw = self
            .gateway(gateway)
            .ok_or_else(|| TransportError::NotRunning(gateway.to_string()))?;
        gw.transport.accept_webhook(request).await
    }
}

/// What identifies a gateway's settings, secrets included, so a reload
/// restarts a gateway only when something about it changed.
fn gateway_key(gc: &GatewayConfig) -> String {
    use GatewaySettings as S;
    let secret = match &gc.settings {
        S::Dinstar(d) => d.password.expose().to_string(),
        S::DinstarDwg(d) => d.password.expose().to_string(),
        S::At(a) => a
            .pin
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        S::Sim(_) => String::new(),
        S::Http(h) => [&h.password, &h.token]
            .into_iter()
            .flatten()
            .map(|p| p.expose())
            .collect::<Vec<_>>()
            .join("|"),
        S::WhatsappCloud(w) => w.secrets().join("|"),
        S::Twilio(t) => [t.auth_token.as_ref(), t.api_key.as_ref().map(|k| &k.1)]
            .into_iter()
            .flatten()
            .map(|p| p.expose())
            .collect::<Vec<_>>()
            .join("|"),
    };
    format!(
        "{:?}|{}|{}|{:?}|{secret}",
        gc.settings, gc.ports, gc.breaker_failures, gc.breaker_probe
    )
}
