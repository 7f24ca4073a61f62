//! The engine: the running gateways, the dialers that send through them,
//! and the consumer of what the gateways report, started together and
//! stopped together. It is wiring only: supervision and failover are in
//! `gateways`, the loaders in `dialer`, received messages and reports in
//! `inbound`.
//!
//! Start order: the gateways first (their transports take up what an
//! earlier run left awaiting), then the crash reconciliation of what was
//! left in SENDING (before any dialer loads), then the dialers, then the
//! event consumer and the config watcher.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialer::importer::ImportSummary;
use crate::dialer::submit::{Submission, Submitted};
use crate::dialer::{DialerError, DialerLive, Dialers};
use crate::gateways::{ChannelView, Gateways};
use crate::notify::Notify;
use crate::runtime::Shared;
use crate::transport::{TransportError, WebhookReply, WebhookRequest};

/// Cheap to clone; every clone is the same engine.
#[derive(Clone)]
pub struct Engine {
    shared: Shared,
    gateways: Gateways,
    dialers: Dialers,
    notify: Notify,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Engine {
    /// Builds everything the config describes, reconciles the spool, and
    /// starts the loops.
    pub async fn start(shared: Shared) -> Self {
        let (events_tx, events_rx) =
            crate::transport::Events::counted(shared.metrics.events_dropped.clone());
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        let gateways = Gateways::new(shared.clone(), events_tx, tracker.clone(), stop.clone());
        let dialers = Dialers::new(
            shared.clone(),
            gateways.clone(),
            tracker.clone(),
            stop.clone(),
        );
        // The event log's readers: webhooks and event streams.
        let notify = Notify::start(shared.clone(), tracker.clone(), stop.clone()).await;
        let engine = Self {
            shared: shared.clone(),
            gateways,
            dialers,
            notify,
            tracker,
            stop,
        };
        let config = shared.config();
        engine.gateways.sync(&config).await;
        crate::dialer::reconcile::in_flight(&shared, &engine.gateways).await;
        engine.dialers.sync(&config);
        engine.tracker.spawn(crate::inbound::run(
            shared.clone(),
            engine.gateways.clone(),
            engine.dialers.clone(),
            events_rx,
            engine.tracker.clone(),
            engine.stop.clone(),
        ));
        engine
            .tracker
            .spawn(crate::acd::run(shared.clone(), engine.stop.clone()));
        engine.tracker.spawn(engine.clone().config_loop());
        engine
    }

    /// Stops taking new work, lets in-flight sends finish within `budget`.
    pub async fn stop(&self, budget: Duration) {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(budget, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                budget_s = budget.as_secs_f32(),
                "drain timeout: some sends were still in flight; they stay SENDING and are reconciled at the next start"
            );
        }
    }

    /// Webhooks and event streams.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }

    /// Wakes a dialer's loader (new messages, start, stop).
    pub fn wake(&self, dialer: &str) {
        self.dialers.wake(dialer);
    }

    pub fn channels(&self) -> Vec<ChannelView> {
        self.gateways.views()
    }

    /// Each WhatsApp gateway's messaging limit: used, and the limit.
    pub fn messaging_limits(&self) -> Vec<(String, usize, Option<u32>)> {
        self.gateways.messaging_limits()
    }

    pub fn dialer_live(&self, name: &str) -> DialerLive {
        self.dialers.live(name)
    }

    /// Checks, stores and queues one message (see [`crate::dialer::submit`]).
    pub async fn submit(&self, s: Submission) -> Result<Submitted, DialerError> {
        crate::dialer::submit::submit(&self.shared, &self.dialers, &self.gateways, s).await
    }

    /// Imports a whole file of messages (see [`crate::dialer::submit::import`]).
    pub async fn import(
        &self,
        filename: String,
        body: impl std::io::BufRead + Send + 'static,
    ) -> Result<ImportSummary, DialerError> {
        crate::dialer::submit::import(&self.shared, &self.dialers, filename, body).await
    }

    /// An operator stops (`true`) or starts a dialer.
    pub async fn set_dialer_stopped(&self, dialer: &str, stopped: bool) -> Result<(), DialerError> {
        crate::dialer::control::set_stopped(&self.shared, &self.dialers, dialer, stopped).await
    }

    /// An operator cancels what a dialer has not processed yet.
    pub async fn cancel_pending(&self, dialer: &str) -> Result<usize, DialerError> {
        crate::dialer::control::cancel_pending(&self.shared, &self.dialers, dialer).await
    }

    /// Hands a request a gateway made to our API (a push) to its transport.
    pub async fn gateway_webhook(
        &self,
        gateway: &str,
        request: WebhookRequest,
    ) -> Result<WebhookReply, TransportError> {
        self.gateways.webhook(gateway, request).await
    }

    /// Each running WhatsApp gateway: its messaging limit's use and, for
    /// `number`, where that customer's 24-hour window stands; in config
    /// order.
    pub fn whatsapp(&self, number: Option<&str>) -> Vec<WhatsAppGateway> {
        let config = self.shared.config();
        config
            .gateways
            .iter()
            .filter(|g| g.enabled && crate::transport::capabilities(g).whatsapp)
            .map(|g| {
                let t = self.gateways.transport(&g.name);
                WhatsAppGateway {
                    gateway: g.name.clone(),
                    running: t.is_some(),
                    limit_used: t.as_ref().and_then(|t| t.messaging_limit()),
                    window: match (number, &t) {
                        (Some(n), Some(t)) => t.window(n),
                        _ => None,
                    },
                }
            })
            .collect()
    }

    /// Where `number`'s WhatsApp window stands on `gateway`; None when the
    /// gateway is not a running WhatsApp gateway.
    pub fn window(
        &self,
        gateway: &str,
        number: &str,
    ) -> Option<smsgate_proto::whatsapp_rules::WindowState> {
        self.gateways.transport(gateway)?.window(number)
    }

    /// One line for `systemctl status`.
    pub async fn status_line(&self) -> String {
        let config = self.shared.config();
        let channels = self.channels();
        let usable = channels.iter().filter(|c| c.usable).count();
        let sent: u64 = channels.iter().map(|c| c.sent).sum();
        let configured = || config.dialers.iter().filter(|d| !d.system);
        let enabled = configured().filter(|d| d.enabled).count();
        let mut line = format!(
            "{enabled}/{} dialers enabled; {usable}/{} channels usable; {sent} sent since start",
            configured().count(),
            channels.len()
        );
        let down: Vec<String> = channels
            .iter()
            .filter(|c| !c.usable)
            .take(3)
            .map(|c| format!("{} ({})", c.id, c.reason))
            .collect();
        if !down.is_empty() {
            line.push_str(&format!("; down: {}", down.join(", ")));
        }
        line
    }

    async fn config_loop(self) {
        let mut rx = self.shared.config.clone();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                changed = rx.changed() => {
                    if changed.is_err() { return; }
                    let config = rx.borrow_and_update().clone();
                    self.gateways.sync(&config).await;
                    self.dialers.sync(&config);
                }
            }
        }
    }
}

/// One WhatsApp gateway as the API and `smsgate status` show it.
#[derive(Debug, Clone)]
pub struct WhatsAppGateway {
    pub gateway: String,
    pub running: bool,
    /// Customers reached outside their window in the last 24 hours, and
    /// the limit (None: not enforced).
    pub limit_used: Option<(usize, Option<u32>)>,
    pub window: Option<smsgate_proto::whatsapp_rules::WindowState>,
}
