//! The engine: builds transports and channels from the config, runs one
//! loader loop per dialer, applies transport events, and reconciles what a
//! crash left in SENDING.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::breaker::Breaker;
use crate::channel::{Channel, ChannelView, Job, JobDone, JobOutcome, state_label};
use crate::config::{Config, DialerConfig, GatewayConfig};
use crate::metrics::{DialerLabel, DialerStateLabels};
use crate::runtime::Shared;
use crate::store::now_ms;
use crate::store::spool::{self, State};
use crate::transport::{self, Event, Reconciled, Transport};

/// The seed's loader: at most this many messages of one dialer waiting in
/// memory for a channel. Handed to a channel, a message is in that
/// channel's queue (at most twice its claim depth), no longer the loader's.
pub const IN_MEMORY: usize = 50;

/// The loader reads its queue from the top at least this often, so a
/// retry that fell due while it was busy is not left behind.
const RESCAN: Duration = Duration::from_secs(1);

struct Gateway {
    config_key: String,
    transport: Arc<dyn Transport>,
    channels: Vec<Arc<Channel>>,
    stop: CancellationToken,
}

#[derive(Default)]
struct Rate {
    /// Sends per second over the last minute, in one-second buckets.
    buckets: VecDeque<(i64, u64)>,
}

impl Rate {
    fn add(&mut self, now_s: i64) {
        match self.buckets.back_mut() {
            Some((s, n)) if *s == now_s => *n += 1,
            _ => self.buckets.push_back((now_s, 1)),
        }
        while self.buckets.front().is_some_and(|(s, _)| *s < now_s - 60) {
            self.buckets.pop_front();
        }
    }
    fn per_minute(&self, now_s: i64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| *s >= now_s - 60)
            .map(|(_, n)| n)
            .sum()
    }
}

struct DialerRuntime {
    wake: Arc<Notify>,
    /// Stopped by an operator; the store holds it across restarts, this is
    /// the loop's copy so it need not read the store on every turn.
    stopped: Arc<std::sync::atomic::AtomicBool>,
    in_memory: Arc<Mutex<usize>>,
    rate: Arc<Mutex<Rate>>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    gateways: Mutex<HashMap<String, Arc<Gateway>>>,
    dialers: Mutex<HashMap<String, DialerRuntime>>,
    events: mpsc::UnboundedSender<Event>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// Why a push was not taken.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushRefused {
    #[error("no running gateway {0:?} (not configured, disabled, or failed to start)")]
    NoGateway(String),
    #[error("{0}")]
    NotTaken(String),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DialerLive {
    pub in_memory: usize,
    pub rate_per_minute: u64,
}

impl Engine {
    /// Builds everything the config describes, reconciles the spool, and
    /// starts the loops.
    pub async fn start(shared: Shared) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let engine = Self {
            inner: Arc::new(Inner {
                shared: shared.clone(),
                gateways: Mutex::new(HashMap::new()),
                dialers: Mutex::new(HashMap::new()),
                events: events_tx,
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
            }),
        };
        let config = shared.config();
        engine.sync_gateways(&config);
        engine.reconcile_in_flight().await;
        engine.sync_dialers(&config);
        engine
            .inner
            .tracker
            .spawn(engine.clone().event_loop(events_rx));
        engine.inner.tracker.spawn(engine.clone().config_loop());
        engine
    }

    /// Stops taking new work, lets in-flight sends finish within `budget`.
    pub async fn stop(&self, budget: Duration) {
        self.inner.stop.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(budget, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                budget_s = budget.as_secs_f32(),
                "drain timeout: some sends were still in flight; they stay SENDING and are reconciled at the next start"
            );
        }
    }

    /// Records an operator's stop or start (already written to the store).
    pub fn set_stopped(&self, dialer: &str, stopped: bool) {
        if let Ok(d) = self.inner.dialers.lock() {
            if let Some(rt) = d.get(dialer) {
                rt.stopped
                    .store(stopped, std::sync::atomic::Ordering::SeqCst);
                rt.wake.notify_one();
            }
        }
    }

    /// Wakes a dialer's loader (new messages, start, stop).
    pub fn wake(&self, dialer: &str) {
        if let Ok(d) = self.inner.dialers.lock() {
            if let Some(rt) = d.get(dialer) {
                rt.wake.notify_one();
            }
        }
    }

    pub fn channels(&self) -> Vec<ChannelView> {
        let gws: Vec<Arc<Gateway>> = self
            .inner
            .gateways
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

    pub fn dialer_live(&self, name: &str) -> DialerLive {
        let now_s = now_ms() / 1000;
        self.inner
            .dialers
            .lock()
            .ok()
            .and_then(|d| {
                d.get(name).map(|rt| DialerLive {
                    in_memory: rt.in_memory.lock().map(|n| *n).unwrap_or(0),
                    rate_per_minute: rt.rate.lock().map(|r| r.per_minute(now_s)).unwrap_or(0),
                })
            })
            .unwrap_or(DialerLive {
                in_memory: 0,
                rate_per_minute: 0,
            })
    }

    /// One line for `systemctl status`.
    pub async fn status_line(&self) -> String {
        let config = self.inner.shared.config();
        let channels = self.channels();
        let usable = channels.iter().filter(|c| c.usable).count();
        let sent: u64 = channels.iter().map(|c| c.sent).sum();
        let enabled = config.dialers.iter().filter(|d| d.enabled).count();
        let mut line = format!(
            "{enabled}/{} dialers enabled; {usable}/{} channels usable; {sent} sent since start",
            config.dialers.len(),
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

    fn sync_gateways(&self, config: &Config) {
        let mut gws = match self.inner.gateways.lock() {
            Ok(g) => g,
            Err(_) => return,
        };
        let wanted: HashSet<&str> = config
            .gateways
            .iter()
            .filter(|g| g.enabled)
            .map(|g| g.name.as_str())
            .collect();
        gws.retain(|name, gw| {
            let keep = wanted.contains(name.as_str());
            if !keep {
                tracing::info!(gateway = %name, "gateway removed or disabled; its channels stop");
                gw.stop.cancel();
            }
            keep
        });
        for gc in config.gateways.iter().filter(|g| g.enabled) {
            let key = gateway_key(gc);
            if gws.get(&gc.name).is_some_and(|g| g.config_key == key) {
                continue;
            }
            if let Some(old) = gws.remove(&gc.name) {
                tracing::info!(gateway = %gc.name, "gateway settings changed; restarting its channels");
                old.stop.cancel();
            }
            // The token exists before the transport so its background
            // tasks (pollers) stop with the gateway's channels.
            let stop = self.inner.stop.child_token();
            let ctx = transport::BuildContext {
                events: self.inner.events.clone(),
                stop: stop.clone(),
                store: Some(self.inner.shared.store.clone()),
                default_country: config.daemon.default_country.clone(),
            };
            match transport::build(gc, ctx) {
                Ok(t) => {
                    let breaker = Arc::new(Breaker::new(
                        &gc.name,
                        gc.breaker_failures,
                        gc.breaker_probe,
                    ));
                    self.inner
                        .shared
                        .metrics
                        .breaker_open
                        .get_or_create(&crate::metrics::GatewayLabel {
                            gateway: gc.name.clone(),
                        })
                        .set(0);
                    self.inner.tracker.spawn(probe_loop(
                        self.inner.shared.clone(),
                        t.clone(),
                        breaker.clone(),
                        stop.clone(),
                    ));
                    let channels = (0..t.ports())
                        .map(|port| {
                            let hb = self
                                .inner
                                .shared
                                .heartbeats
                                .register(format!("channel {}:{port}", gc.name));
                            Channel::start(
                                &self.inner.shared,
                                t.clone(),
                                breaker.clone(),
                                port,
                                hb,
                                stop.clone(),
                                &self.inner.tracker,
                            )
                        })
                        .collect();
                    tracing::info!(gateway = %gc.name, kind = gc.kind.as_str(), ports = t.ports(), "gateway started");
                    gws.insert(
                        gc.name.clone(),
                        Arc::new(Gateway {
                            config_key: key,
                            transport: t,
                            channels,
                            stop,
                        }),
                    );
                }
                Err(e) => {
                    tracing::error!(gateway = %gc.name, error = %e, "cannot start the gateway")
                }
            }
        }
    }

    fn sync_dialers(&self, config: &Config) {
        let Ok(mut dialers) = self.inner.dialers.lock() else {
            return;
        };
        for d in &config.dialers {
            if dialers.contains_key(&d.name) {
                dialers[&d.name].wake.notify_one();
                continue;
            }
            let rt = DialerRuntime {
                wake: Arc::new(Notify::new()),
                stopped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
                in_memory: Arc::new(Mutex::new(0)),
                rate: Arc::new(Mutex::new(Rate::default())),
            };
            let looper = DialerLoop {
                name: d.name.clone(),
                on_fallback: Mutex::new(false),
                engine: self.clone(),
                wake: rt.wake.clone(),
                stopped: rt.stopped.clone(),
                in_memory: rt.in_memory.clone(),
                rate: rt.rate.clone(),
                heartbeat: self
                    .inner
                    .shared
                    .heartbeats
                    .register(format!("dialer {}", d.name)),
            };
            self.inner.tracker.spawn(looper.run());
            dialers.insert(d.name.clone(), rt);
        }
        // Loops of removed dialers notice on their own and end.
        dialers.retain(|name, _| config.dialers.iter().any(|d| &d.name == name));
    }

    /// Hands events a gateway pushed to our API to its transport. Errors
    /// are for the pusher: unknown gateway, or one that takes no pushes.
    pub fn gateway_push(
        &self,
        gateway: &str,
        events: Vec<crate::transport::dinstar::PushEvent>,
    ) -> Result<usize, PushRefused> {
        let gw = self
            .gateway(gateway)
            .ok_or_else(|| PushRefused::NoGateway(gateway.to_string()))?;
        gw.transport
            .accept_push(events)
            .map_err(PushRefused::NotTaken)
    }

    fn gateway(&self, name: &str) -> Option<Arc<Gateway>> {
        self.inner
            .gateways
            .lock()
            .ok()
            .and_then(|g| g.get(name).cloned())
    }

    async fn config_loop(self) {
        let mut rx = self.inner.shared.config.clone();
        loop {
            tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                changed = rx.changed() => {
                    if changed.is_err() { return; }
                    let config = rx.borrow_and_update().clone();
                    self.sync_gateways(&config);
                    self.sync_dialers(&config);
                }
            }
        }
    }

    /// Settles messages a crash left in SENDING (invariant 2): ask the
    /// transport where it can; otherwise UNKNOWN, or back to the queue when
    /// the dialer allows resending.
    async fn reconcile_in_flight(&self) {
        let store = self.inner.shared.store.clone();
        let in_flight = match store.read(spool::in_flight).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "cannot list messages left in SENDING");
                return;
            }
        };
        if in_flight.is_empty() {
            return;
        }
        tracing::info!(
            count = in_flight.len(),
            "reconciling messages left in SENDING by the last run"
        );
        let config = self.inner.shared.config();
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for m in in_flight {
            let port = m
                .channel
                .as_deref()
                .and_then(|c| c.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u32>().ok());
            let answer = match (
                m.gateway.as_deref().and_then(|g| self.gateway(g)),
                port,
                m.reference,
            ) {
                (Some(gw), Some(port), Some(reference)) => {
                    gw.transport.reconcile(port, reference).await
                }
                _ => Reconciled::Unknown,
            };
            let resend = config.dialer(&m.dialer).is_some_and(|d| d.resend_unknown);
            let id = m.id;
            let result = match answer {
                Reconciled::Sent { gateway_ref } => {
                    *counts.entry("sent").or_default() += 1;
                    store
                        .write(move |tx| {
                            spool::mark_sent(tx, id, spool::AttemptRow::Latest, &gateway_ref)
                                .map(|_| ())
                        })
                        .await
                }
                Reconciled::NotSent => {
                    *counts.entry("requeued").or_default() += 1;
                    store
                        .write(move |tx| {
                            spool::requeue(
                                tx,
                                id,
                                spool::AttemptRow::Latest,
                                "not_sent",
                                "the gateway never received it (checked after a restart)",
                            )
                        })
                        .await
                }
                Reconciled::Unknown if resend => {
                    *counts.entry("resent").or_default() += 1;
                    store
                        .write(move |tx| {
                            spool::requeue(
                                tx,
                                id,
                                spool::AttemptRow::Latest,
                                "unknown",
                                "in flight at a crash; resending as configured (resend_unknown)",
                            )
                        })
                        .await
                }
                Reconciled::Unknown => {
                    *counts.entry("unknown").or_default() += 1;
                    store
                        .write(move |tx| {
                            spool::mark_unknown(tx, id, spool::AttemptRow::Latest, "in flight when smsgate stopped; the gateway cannot tell whether it left").map(|_| ())
                        })
                        .await
                }
            };
            if let Err(e) = result {
                tracing::error!(message = id, error = %e, "cannot record the reconciliation");
            }
        }
        tracing::info!(?counts, "reconciliation done");
    }

    async fn event_loop(self, mut rx: mpsc::UnboundedReceiver<Event>) {
        let (reports, reports_rx) = mpsc::unbounded_channel();
        self.inner
            .tracker
            .spawn(self.clone().report_loop(reports_rx, reports.clone()));
        loop {
            let ev = tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                ev = rx.recv() => match ev { Some(e) => e, None => return },
            };
            match ev {
                Event::PortHealth {
                    gateway,
                    port,
                    health,
                } => {
                    if let Some(ch) = self
                        .gateway(&gateway)
                        .and_then(|g| g.channels.get(port as usize).cloned())
                    {
                        if !health.usable {
                            tracing::warn!(channel = %ch.id, reason = %health.reason, "port unusable");
                        }
                        ch.set_health(health);
                    }
                }
                Event::Inbound(msg) => {
                    self.store_inbound(msg).await;
                }
                Event::InboundAcked { message, ack } => {
                    ack.done(self.store_inbound(message).await);
                }
                Event::Result {
                    gateway,
                    gateway_ref,
                    ok,
                    detail,
                } => {
                    if !ok {
                        // Off the event loop: its retries must not hold
                        // up other events.
                        let this = self.clone();
                        tokio::spawn(async move {
                            this.result_failed(gateway, gateway_ref, detail).await
                        });
                    }
                }
                Event::Delivered {
                    gateway,
                    gateway_ref,
                    delivered,
                    detail,
                } => {
                    let report = spool::Report {
                        gateway,
                        gateway_ref,
                        delivered,
                        detail,
                    };
                    let _ = reports.send((report, 0));
                }
            }
        }
    }

    /// Records delivery reports, all that have arrived in one job. A report
    /// can overtake the SENT record of its message: one that finds no sent
    /// message is tried again for a while before it is given up.
    async fn report_loop(
        self,
        mut rx: mpsc::UnboundedReceiver<(spool::Report, u32)>,
        again: mpsc::UnboundedSender<(spool::Report, u32)>,
    ) {
        const MAX_TRIES: u32 = 30;
        const MAX_BATCH: usize = 1024;
        loop {
            let first = tokio::select! {
                _ = self.inner.stop.cancelled() => return,
                r = rx.recv() => match r { Some(r) => r, None => return },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let reports: Vec<spool::Report> = batch.iter().map(|(r, _)| r.clone()).collect();
            let found = self
                .inner
                .shared
                .store
                .write_unguarded(move |tx| spool::apply_reports(tx, &reports))
                .await;
            let found = match found {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(count = batch.len(), error = %e, "cannot record delivery reports");
                    continue;
                }
            };
            for ((report, tries), found) in batch.into_iter().zip(found) {
                if found {
                    continue;
                }
                if tries + 1 >= MAX_TRIES {
                    tracing::warn!(gateway = %report.gateway, reference = %report.gateway_ref, "delivery report for a message we do not know; ignored");
                    continue;
                }
                let again = again.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50 * (1 << tries.min(5)))).await;
                    let _ = again.send((report, tries + 1));
                });
            }
        }
    }
}

impl Engine {
    /// Stores a received message once per (gateway, source_key); true when
    /// it is on disk now (new or stored before).
    async fn store_inbound(&self, msg: crate::store::inbound::NewInbound) -> bool {
        let (gateway, port, len) = (msg.gateway.clone(), msg.port, msg.text.chars().count());
        let stored = self
            .inner
            .shared
            .store
            .write(move |tx| crate::store::inbound::insert(tx, &msg))
            .await;
        match stored {
            Ok(Some(id)) => {
                tracing::info!(gateway = %gateway, port = ?port, inbound = id, chars = len, "message received");
                true
            }
            Ok(None) => {
                tracing::debug!(gateway = %gateway, port = ?port, "message received again (push and poll); kept once");
                true
            }
            Err(e) => {
                tracing::error!(gateway = %gateway, error = %e, "cannot store a received message; the gateway keeps it and it is fetched again");
                false
            }
        }
    }
}

impl Engine {
    async fn result_failed(&self, gateway: String, gateway_ref: String, detail: String) {
        let store = self.inner.shared.store.clone();
        // A pushed result can overtake the SENT record of its message, as a
        // delivery report can: look again for a short while.
        let mut found = Ok(None);
        for attempt in 0..20u32 {
            let (g, r) = (gateway.clone(), gateway_ref.clone());
            found = store.read(move |c| spool::find_sent(c, &g, &r)).await;
            if !matches!(found, Ok(None)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(5) + 1))).await;
        }
        let Ok(Some((id, dialer_name, attempts))) = found else {
            tracing::warn!(gateway = %gateway, reference = %gateway_ref, "send result for a message we do not hold as SENT; ignored");
            return;
        };
        let config = self.inner.shared.config();
        let (backoff, max) = config
            .dialer(&dialer_name)
            .map(|d| {
                (
                    crate::channel::backoff_ms(d, attempts),
                    d.max_attempts as i64,
                )
            })
            .unwrap_or((30_000, 1));
        tracing::warn!(gateway = %gateway, message = id, reason = %detail, "the gateway could not send a message it had accepted");
        match store
            .write(move |tx| spool::sent_but_failed(tx, id, &detail, backoff, max))
            .await
        {
            Ok(State::ToProcess) => self.wake(&dialer_name),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(message = id, error = %e, "cannot record a failed send result")
            }
        }
    }
}

/// While the gateway's breaker is open, asks the transport every probe
/// interval whether the gateway is back.
async fn probe_loop(
    shared: Shared,
    transport: Arc<dyn Transport>,
    breaker: Arc<Breaker>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !breaker.probe_due() {
            continue;
        }
        match transport.probe().await {
            Ok(()) => {
                if let Some(t) = breaker.probe_passed() {
                    crate::channel::breaker_switched(&shared, &breaker, &t);
                }
            }
            Err(why) => {
                tracing::info!(gateway = %breaker.gateway(), reason = %why, "breaker probe: gateway still failing")
            }
        }
    }
}

/// What identifies a gateway's settings, secrets included, so a reload
/// restarts a gateway only when something about it changed.
fn gateway_key(gc: &GatewayConfig) -> String {
    use crate::config::GatewaySettings as S;
    let secret = match &gc.settings {
        S::Dinstar(d) => d.password.expose().to_string(),
        S::DinstarDwg(d) => d.password.expose().to_string(),
        S::At(a) => a
            .pin
            .as_ref()
            .map(|p| p.expose().to_string())
            .unwrap_or_default(),
        S::Sim(_) => String::new(),
    };
    format!(
        "{:?}|{}|{}|{:?}|{secret}",
        gc.settings, gc.ports, gc.breaker_failures, gc.breaker_probe
    )
}

struct DialerLoop {
    name: String,
    /// Whether the dialer's channel group sends through its fallback now.
    on_fallback: Mutex<bool>,
    engine: Engine,
    wake: Arc<Notify>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    in_memory: Arc<Mutex<usize>>,
    rate: Arc<Mutex<Rate>>,
    heartbeat: crate::runtime::Heartbeat,
}

impl DialerLoop {
    async fn run(self) {
        let shared = self.engine.inner.shared.clone();
        let stop = self.engine.inner.stop.clone();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<JobDone>();
        let mut pending: VecDeque<spool::Queued> = VecDeque::new();
        let mut held: HashSet<i64> = HashSet::new();
        let mut cursor = 0usize;
        // Where the last load stopped in the dialer's queue: the next load
        // reads on from there instead of past every message already handed
        // to a channel. Anything that can land before it (a new message, a
        // requeued one, a retry falling due) sends the loader back to the
        // top: a wake-up, a message back in the queue, a load that came up
        // short, and at least every RESCAN.
        let mut queue_pos: Option<(i64, i64)> = None;
        let mut last_rescan = std::time::Instant::now();
        let mut last_reason = String::new();
        let label = DialerLabel {
            dialer: self.name.clone(),
        };
        let name = self.name.clone();
        match shared
            .store
            .read(move |c| spool::dialer_stopped(c, &name))
            .await
        {
            Ok(s) => self.stopped.store(s, std::sync::atomic::Ordering::SeqCst),
            Err(e) => {
                tracing::error!(dialer = %self.name, error = %e, "cannot read whether the dialer was stopped; assuming it runs")
            }
        }
        loop {
            self.heartbeat.beat();
            if stop.is_cancelled() {
                break;
            }
            let config = shared.config();
            let Some(dialer) = config.dialer(&self.name).cloned() else {
                tracing::info!(dialer = %self.name, "dialer removed from the config; its loader stops");
                break;
            };
            let dialer = Arc::new(dialer);
            let inactive = self.inactive_reason(&dialer).await;
            // The channel whose turn it is, when its queue was full, and
            // how many of this dialer's jobs it holds at once.
            let mut turn: Option<(Arc<Channel>, usize)> = None;
            // The last load was full, so the queue may hold more.
            let mut more = false;
            if let Some(reason) = &inactive {
                if *reason != last_reason {
                    tracing::info!(dialer = %self.name, reason = %reason, "dialer not sending");
                    last_reason = reason.clone();
                }
                // Messages already loaded stay loaded; none are handed out.
            } else {
                if !last_reason.is_empty() {
                    tracing::info!(dialer = %self.name, "dialer sending");
                    last_reason.clear();
                }
                if last_rescan.elapsed() >= RESCAN {
                    queue_pos = None;
                }
                if queue_pos.is_none() {
                    last_rescan = std::time::Instant::now();
                }
                if pending.len() < IN_MEMORY {
                    more = self
                        .load(&dialer, &mut pending, &mut held, &mut queue_pos)
                        .await;
                }
                turn = self.dispatch(&config, &dialer, &mut pending, &mut cursor, &done_tx);
            }
            if let Ok(mut n) = self.in_memory.lock() {
                *n = pending.len();
            }
            shared
                .metrics
                .dialer_in_memory
                .get_or_create(&label)
                .set(pending.len() as i64);

            // Everything loaded went to channels that had room, and the
            // queue holds more: load again at once rather than wait for a
            // channel to finish (which at full rate is what keeps the
            // channels' queues filled).
            if more && turn.is_none() && pending.is_empty() {
                let mut requeued = false;
                while let Ok(d) = done_rx.try_recv() {
                    requeued |= self.finished(d, &mut pending, &mut held);
                }
                if requeued {
                    queue_pos = None;
                }
                tokio::task::yield_now().await;
                continue;
            }

            // Sleep until something happens: a channel finished, the channel
            // whose turn it is has room, a wake-up (new messages,
            // start/stop), a retry falls due, or a beat.
            let idle = if pending.is_empty() && inactive.is_none() {
                self.next_retry_wait(&dialer).await
            } else {
                self.heartbeat.period()
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                d = done_rx.recv() => {
                    let mut requeued = false;
                    if let Some(d) = d { requeued |= self.finished(d, &mut pending, &mut held); }
                    while let Ok(d) = done_rx.try_recv() { requeued |= self.finished(d, &mut pending, &mut held); }
                    if requeued {
                        queue_pos = None;
                    }
                }
                _ = self.wake.notified() => queue_pos = None,
                _ = async {
                    match &turn {
                        Some((ch, depth)) => ch.has_room(*depth).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// True when the message went back to the queue in the store, where the
    /// loader must look for it again.
    fn finished(
        &self,
        d: JobDone,
        pending: &mut VecDeque<spool::Queued>,
        held: &mut HashSet<i64>,
    ) -> bool {
        match d.outcome {
            JobOutcome::Returned(q) => {
                pending.push_front(q);
                false
            }
            JobOutcome::Finished(state) => {
                held.remove(&d.id);
                if state == State::Sent {
                    if let Ok(mut r) = self.rate.lock() {
                        r.add(now_ms() / 1000);
                    }
                }
                state == State::ToProcess
            }
        }
    }

    async fn inactive_reason(&self, dialer: &DialerConfig) -> Option<String> {
        if !dialer.enabled {
            return Some("disabled in the config".into());
        }
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("stopped by an operator".into());
        }
        if !crate::dialer::in_schedule(
            &self.engine.inner.shared.config(),
            dialer,
            jiff::Timestamp::now(),
        ) {
            return Some("outside its schedule".into());
        }
        None
    }

    /// Loads what the dialer may take next. True when the load was full
    /// (the queue may hold more).
    async fn load(
        &self,
        dialer: &Arc<DialerConfig>,
        pending: &mut VecDeque<spool::Queued>,
        held: &mut HashSet<i64>,
        queue_pos: &mut Option<(i64, i64)>,
    ) -> bool {
        let store = self.engine.inner.shared.store.clone();
        let name = dialer.name.clone();
        // Resuming, nothing before the position is read, so nothing held
        // needs skipping; from the top, every held message must be.
        let skip = if queue_pos.is_some() {
            HashSet::new()
        } else {
            held.clone()
        };
        let want = IN_MEMORY - pending.len();
        let after = *queue_pos;
        // DNCR is checked when the message is taken, not only at upload:
        // a number added to the list after the upload is still blocked. (It
        // is checked once more in the transaction that starts the attempt.)
        let dncr = dialer.dncr.then(|| dialer.name.clone());
        let batch = match store
            .read(move |c| {
                spool::next_to_process(c, &name, now_ms(), want, after, &skip, dncr.as_deref())
            })
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(dialer = %dialer.name, error = %e, "cannot load messages");
                return false;
            }
        };
        let full = batch.len() == want;
        *queue_pos = if batch.len() < want {
            // Came up short: the next load starts from the top, so a
            // message that became due behind the position is not missed.
            None
        } else {
            batch.last().map(spool::Queued::position)
        };
        let blocked: HashSet<i64> = batch.iter().filter(|q| q.listed).map(|q| q.id).collect();
        if !blocked.is_empty() {
            let ids: Vec<i64> = blocked.iter().copied().collect();
            let marked = store
                .write(move |tx| {
                    let mut n = 0u64;
                    for id in ids {
                        if spool::mark_blocked(tx, id)? {
                            n += 1;
                        }
                    }
                    Ok(n)
                })
                .await;
            match marked {
                Ok(n) => {
                    self.engine
                        .inner
                        .shared
                        .metrics
                        .dialer_messages
                        .get_or_create(&DialerStateLabels {
                            dialer: dialer.name.clone(),
                            state: state_label(State::Blocked),
                        })
                        .inc_by(n);
                    tracing::info!(dialer = %dialer.name, count = n, "numbers on the DNCR list blocked");
                }
                Err(e) => {
                    tracing::error!(dialer = %dialer.name, error = %e, "cannot mark messages blocked")
                }
            }
        }
        for q in batch {
            if blocked.contains(&q.id) {
                continue;
            }
            held.insert(q.id);
            pending.push_back(q);
        }
        full
    }

    /// Hands pending messages to the dialer's channels, round-robin in dial
    /// string order (0-1-2-3-0-...), skipping channels that are unusable.
    /// A usable channel whose queue is full is not skipped: the loader
    /// waits for it, so every channel sends its share in turn. (Skipping
    /// busy channels let a channel whose worker had not yet taken its last
    /// job lose its turn to the next one, so the order depended on thread
    /// scheduling. Pacing makes the channels of a dialer progress at the
    /// same rate, so waiting for the one whose turn it is costs nothing.)
    fn dispatch(
        &self,
        config: &Config,
        dialer: &Arc<DialerConfig>,
        pending: &mut VecDeque<spool::Queued>,
        cursor: &mut usize,
        done: &mpsc::UnboundedSender<JobDone>,
    ) -> Option<(Arc<Channel>, usize)> {
        // Nothing to send, nothing to decide: a group switches (and says so)
        // only when it has traffic to move.
        if pending.is_empty() {
            return None;
        }
        let channels = self.channels_for(config, dialer);
        if channels.is_empty() {
            return None;
        }
        'messages: while let Some(q) = pending.pop_front() {
            let mut job = Job {
                message: q,
                dialer: dialer.clone(),
                done: done.clone(),
            };
            for _ in 0..channels.len() {
                let ch = &channels[*cursor % channels.len()];
                if ch.usable().is_err() {
                    *cursor = (*cursor + 1) % channels.len();
                    continue;
                }
                match ch.offer(job) {
                    Ok(()) => {
                        *cursor = (*cursor + 1) % channels.len();
                        continue 'messages;
                    }
                    // Its worker has gone (the gateway is being
                    // replaced): skip it like an unusable channel.
                    Err(j) if ch.is_closed() => {
                        job = j;
                        *cursor = (*cursor + 1) % channels.len();
                    }
                    // Its turn, but busy: wait until it has room.
                    Err(j) => {
                        let depth = ch.claim_depth(dialer);
                        pending.push_front(j.message);
                        return Some((ch.clone(), depth));
                    }
                }
            }
            pending.push_front(job.message);
            break;
        }
        None
    }

    /// The channels a dialer sends through now, in round-robin order. For a
    /// channel group: its primary channels while one of them can send,
    /// otherwise its fallback channels (each switch logged and counted).
    fn channels_for(&self, config: &Config, dialer: &DialerConfig) -> Vec<Arc<Channel>> {
        let set = |gateway: &str, ports: &[u32]| -> Vec<Arc<Channel>> {
            self.engine
                .gateway(gateway)
                .map(|gw| {
                    ports
                        .iter()
                        .filter_map(|p| gw.channels.get(*p as usize).cloned())
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(group) = config.channel_group(&dialer.provider) {
            let collect = |sets: &[crate::config::ChannelSet]| -> Vec<Arc<Channel>> {
                sets.iter()
                    .flat_map(|s| set(&s.gateway, &s.ports))
                    .collect()
            };
            let primary = collect(&group.primary);
            let reasons: Vec<String> = primary
                .iter()
                .filter_map(|c| c.usable().err().map(|why| format!("{}: {why}", c.id)))
                .collect();
            let primary_ok = reasons.len() < primary.len();
            let mut on_fallback = self.on_fallback.lock().map(|g| *g).unwrap_or(false);
            if primary_ok == on_fallback {
                on_fallback = !primary_ok;
                if let Ok(mut g) = self.on_fallback.lock() {
                    *g = on_fallback;
                }
                let to = if on_fallback { "fallback" } else { "primary" };
                if on_fallback {
                    tracing::warn!(dialer = %dialer.name, group = %group.name, reason = %reasons.join("; "), "no primary channel can send: traffic moves to the fallback channels");
                } else {
                    tracing::info!(dialer = %dialer.name, group = %group.name, "a primary channel can send again: traffic moves back from the fallback channels");
                }
                self.engine
                    .inner
                    .shared
                    .metrics
                    .failovers
                    .get_or_create(&crate::metrics::FailoverLabels {
                        dialer: dialer.name.clone(),
                        to,
                    })
                    .inc();
            }
            return if on_fallback {
                collect(&group.fallback)
            } else {
                primary
            };
        }
        set(&dialer.provider, &dialer.ports)
    }

    async fn next_retry_wait(&self, dialer: &DialerConfig) -> Duration {
        let name = dialer.name.clone();
        let now = now_ms();
        let next = self
            .engine
            .inner
            .shared
            .store
            .read(move |c| spool::next_retry_at(c, &name, now))
            .await
            .ok()
            .flatten();
        match next {
            Some(at) => Duration::from_millis((at - now).clamp(1, 1000) as u64),
            None => self.heartbeat.period(),
        }
    }
}
