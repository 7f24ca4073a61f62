//! A channel is one port of one gateway (or one modem): its health, its
//! pacer and its queue. One worker task per channel sends one message at a
//! time, never two closer than the dialer's interval (invariant 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Breaker, Transition};
use crate::config::DialerConfig;
use crate::daemon::{Heartbeat, Shared};
use crate::metrics::{ChannelLabel, ChannelOutcomeLabels, DialerStateLabels};
use crate::store::spool::{self, Queued, State};
use crate::transport::{Outbound, PortHealth, SendError, Transport};

/// How long a port that answered "unusable" is left out before it is tried
/// again, when the transport has no fresher health to offer.
const PORT_QUARANTINE: Duration = Duration::from_secs(60);

/// The longest a transport's send may take before the channel gives up on
/// it (transports have their own, much shorter, timeouts).
const SEND_HARD_LIMIT: Duration = Duration::from_secs(600);

/// A message handed to a channel by a dialer.
pub struct Job {
    pub message: Queued,
    pub dialer: Arc<DialerConfig>,
    pub done: mpsc::UnboundedSender<JobDone>,
}

/// What became of a job, for the dialer that handed it over.
#[derive(Debug)]
pub struct JobDone {
    pub id: i64,
    pub outcome: JobOutcome,
}

#[derive(Debug)]
pub enum JobOutcome {
    /// Recorded in the store (sent, retry later, failed, unknown).
    Finished(State),
    /// The channel could not take it (unhealthy, shutting down): still
    /// TO_PROCESS, the dialer gives it to another channel.
    Returned(Queued),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelView {
    pub id: String,
    pub gateway: String,
    pub port: u32,
    pub usable: bool,
    pub reason: String,
    pub health: PortHealth,
    pub queued: usize,
    pub sent: u64,
    pub failed: u64,
    pub last_send_ms_ago: Option<u64>,
}

struct Inner {
    last_send: Option<Instant>,
    health: PortHealth,
    /// Set after a send said the port is unusable; cleared when it ends or
    /// when the transport reports the port healthy again.
    quarantine: Option<(Instant, String)>,
}

pub struct Channel {
    pub id: String,
    pub gateway: String,
    pub port: u32,
    transport: Arc<dyn Transport>,
    breaker: Arc<Breaker>,
    inner: Mutex<Inner>,
    queue: mpsc::Sender<Job>,
    queued: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Channel {
    /// Creates the channel and spawns its worker.
    pub fn start(
        shared: &Shared,
        transport: Arc<dyn Transport>,
        breaker: Arc<Breaker>,
        port: u32,
        heartbeat: Heartbeat,
        stop: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Self> {
        // Capacity 1: a channel holds at most the message it sends and the
        // next one, so a crash leaves little in flight and an unhealthy
        // channel strands little.
        let (tx, rx) = mpsc::channel(1);
        let gateway = transport.name().to_string();
        let ch = Arc::new(Self {
            id: format!("{gateway}:{port}"),
            gateway,
            port,
            inner: Mutex::new(Inner {
                // The last send before a restart is not known: count the
                // start as one, so a quick restart never sends sooner than
                // interval_ms after the last message of the previous run.
                last_send: Some(Instant::now()),
                health: transport.health(port),
                quarantine: None,
            }),
            transport,
            breaker,
            queue: tx,
            queued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let worker = Worker {
            ch: ch.clone(),
            shared: shared.clone(),
            heartbeat,
            stop,
        };
        tracker.spawn(worker.run(rx));
        ch
    }

    /// Whether the channel can take a message now, and if not, why.
    pub fn usable(&self) -> Result<(), String> {
        let mut g = self
            .inner
            .lock()
            .map_err(|_| "channel state poisoned".to_string())?;
        if let Some((until, why)) = &g.quarantine {
            if Instant::now() < *until {
                return Err(why.clone());
            }
            g.quarantine = None;
        }
        if let Some(why) = self.breaker.open_reason() {
            return Err(format!(
                "gateway {} is failing ({why}); its breaker is open",
                self.gateway
            ));
        }
        let live = self.transport.health(self.port);
        g.health = live.clone();
        if live.usable {
            Ok(())
        } else {
            Err(live.reason)
        }
    }

    /// Offers a job without waiting. Gives it back when the queue is full
    /// or the worker is gone.
    pub fn offer(&self, job: Job) -> Result<(), Job> {
        match self.queue.try_send(job) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(j)) | Err(mpsc::error::TrySendError::Closed(j)) => {
                Err(j)
            }
        }
    }

    /// Whether the channel's worker has ended (it takes no more jobs).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Resolves when the queue has room for a job (or the worker ended).
    pub async fn has_room(&self) {
        // The permit is released at once: this only waits for the room.
        let _ = self.queue.reserve().await;
    }

    pub fn set_health(&self, health: PortHealth) {
        if let Ok(mut g) = self.inner.lock() {
            if health.usable {
                g.quarantine = None;
            }
            g.health = health;
        }
    }

    fn quarantine(&self, reason: &str) {
        if let Ok(mut g) = self.inner.lock() {
            g.quarantine = Some((Instant::now() + PORT_QUARANTINE, reason.to_string()));
        }
    }

    pub fn view(&self) -> ChannelView {
        let usable = self.usable();
        let g = self.inner.lock().ok();
        ChannelView {
            id: self.id.clone(),
            gateway: self.gateway.clone(),
            port: self.port,
            usable: usable.is_ok(),
            reason: usable.err().unwrap_or_default(),
            health: g.as_ref().map(|g| g.health.clone()).unwrap_or_default(),
            queued: self.queued.load(Ordering::Relaxed) as usize,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_send_ms_ago: g
                .as_ref()
                .and_then(|g| g.last_send)
                .map(|t| t.elapsed().as_millis() as u64),
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

struct Worker {
    ch: Arc<Channel>,
    shared: Shared,
    heartbeat: Heartbeat,
    stop: CancellationToken,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let label = ChannelLabel {
            channel: self.ch.id.clone(),
        };
        loop {
            self.heartbeat.beat();
            let job = tokio::select! {
                biased;
                _ = self.stop.cancelled() => break,
                j = rx.recv() => match j { Some(j) => j, None => break },
                _ = tokio::time::sleep(self.heartbeat.period()) => continue,
            };
            self.ch.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared
                .metrics
                .channel_queued
                .get_or_create(&label)
                .set(self.ch.queued.load(Ordering::Relaxed) as i64);
            if !self.pace(&job.dialer).await {
                let _ = job.done.send(JobDone {
                    id: job.message.id,
                    outcome: JobOutcome::Returned(job.message),
                });
                break;
            }
            self.send(job).await;
        }
        // Jobs still queued were never marked SENDING: hand them back.
        rx.close();
        while let Ok(job) = rx.try_recv() {
            self.ch.queued.fetch_sub(1, Ordering::Relaxed);
            let _ = job.done.send(JobDone {
                id: job.message.id,
                outcome: JobOutcome::Returned(job.message),
            });
        }
    }

    /// Waits until the channel's interval has passed since its last send.
    /// False when the daemon is stopping.
    async fn pace(&self, dialer: &DialerConfig) -> bool {
        let due = self
            .ch
            .inner
            .lock()
            .ok()
            .and_then(|g| g.last_send)
            .map(|t| t + dialer.interval);
        if let Some(due) = due {
            loop {
                let now = Instant::now();
                if now >= due {
                    break;
                }
                let wait = (due - now).min(self.heartbeat.period());
                tokio::select! {
                    _ = self.stop.cancelled() => return false,
                    _ = tokio::time::sleep(wait) => self.heartbeat.beat(),
                }
            }
        }
        !self.stop.is_cancelled()
    }

    async fn send(&self, job: Job) {
        let Job {
            message,
            dialer,
            done,
        } = job;
        let id = message.id;
        if let Err(why) = self.ch.usable() {
            tracing::debug!(channel = %self.ch.id, message = id, reason = %why, "channel unusable; message returned to its dialer");
            let _ = done.send(JobDone {
                id,
                outcome: JobOutcome::Returned(message),
            });
            return;
        }
        let Some(number) = message.number.clone() else {
            // Invalid numbers never reach a channel; be safe anyway.
            let _ = done.send(JobDone {
                id,
                outcome: JobOutcome::Finished(State::Invalid),
            });
            return;
        };
        let (gw, chan) = (self.ch.gateway.clone(), self.ch.id.clone());
        let dncr = dialer.dncr.then(|| dialer.name.clone());
        let begun = self
            .shared
            .store
            .write(move |tx| spool::begin_attempt(tx, id, &gw, &chan, dncr.as_deref()))
            .await;
        let reference = match begun {
            Ok(spool::Begun::Attempt(r)) => r,
            Ok(spool::Begun::Blocked) => {
                tracing::info!(channel = %self.ch.id, message = id, "number listed on the DNCR while the message waited; blocked");
                self.shared
                    .metrics
                    .dialer_messages
                    .get_or_create(&DialerStateLabels {
                        dialer: dialer.name.clone(),
                        state: state_label(State::Blocked),
                    })
                    .inc();
                let _ = done.send(JobDone {
                    id,
                    outcome: JobOutcome::Finished(State::Blocked),
                });
                return;
            }
            Ok(spool::Begun::Gone) => {
                // Cancelled while it waited in memory.
                let _ = done.send(JobDone {
                    id,
                    outcome: JobOutcome::Finished(State::Cancelled),
                });
                return;
            }
            Err(e) => {
                tracing::error!(channel = %self.ch.id, message = id, error = %e, "cannot record the attempt; not sending");
                let _ = done.send(JobDone {
                    id,
                    outcome: JobOutcome::Returned(message),
                });
                return;
            }
        };
        let outbound = Outbound {
            message_id: id,
            port: self.ch.port,
            to: number,
            text: message.text.clone(),
            reference,
        };
        let started = Instant::now();
        if let Ok(mut g) = self.ch.inner.lock() {
            g.last_send = Some(started);
        }
        // A send may legitimately take long (a modem's +CMGS, a slow
        // gateway): the loop is alive while it waits, so keep beating; only
        // a loop that stops turning must let the watchdog fire.
        // Every transport bounds its own calls; this outer bound only keeps
        // a transport bug from holding a channel forever.
        let give_up = started + SEND_HARD_LIMIT;
        let result = {
            let send = self.ch.transport.send(&outbound);
            tokio::pin!(send);
            loop {
                tokio::select! {
                    r = &mut send => break r,
                    _ = tokio::time::sleep(self.heartbeat.period()) => {
                        self.heartbeat.beat();
                        if Instant::now() >= give_up {
                            tracing::error!(channel = %self.ch.id, message = id, "the transport did not finish a send in 10 minutes; its outcome is unknown");
                            break Err(SendError::Unknown {
                                reason: "the transport did not answer within 10 minutes".into(),
                            });
                        }
                    }
                }
            }
        };
        let latency = started.elapsed();
        // Pace from the end of this send, not its start: the gateway had the
        // request before it answered, so the next one reaches it at least
        // interval_ms later whatever the network's jitter (invariant 3 as
        // the gateway sees it).
        if let Ok(mut g) = self.ch.inner.lock() {
            g.last_send = Some(Instant::now());
        }
        let m = &self.shared.metrics;
        let outcome_label = match &result {
            Ok(_) => "sent",
            Err(e) => e.outcome(),
        };
        m.channel_sends
            .get_or_create(&ChannelOutcomeLabels {
                channel: self.ch.id.clone(),
                outcome: outcome_label,
            })
            .inc();
        m.send_latency
            .get_or_create(&ChannelLabel {
                channel: self.ch.id.clone(),
            })
            .observe(latency.as_secs_f64());

        let transition = match &result {
            Ok(_) => self.ch.breaker.success(),
            Err(SendError::Temporary { reason })
            | Err(SendError::Auth { reason })
            | Err(SendError::Unknown { reason }) => self.ch.breaker.failure(reason),
            Err(SendError::Permanent { .. }) | Err(SendError::PortUnusable { .. }) => None,
        };
        if let Some(t) = transition {
            breaker_switched(&self.shared, &self.ch.breaker, &t);
        }
        let max_attempts = dialer.max_attempts as i64;
        let backoff = backoff_ms(&dialer, message.attempts + 1);
        let state = match result {
            Ok(acc) => {
                self.ch.sent.fetch_add(1, Ordering::Relaxed);
                let r = acc.gateway_ref.clone();
                // Not awaited: the next send on this channel need not wait for
                // this commit. The writer keeps the order of writes, and if
                // the process dies first the message is still SENDING on disk
                // and reconciliation settles it; it is never resent from here.
                match self
                    .shared
                    .store
                    .write_detached(move |tx| spool::mark_sent(tx, id, &r))
                {
                    Ok(wait) => {
                        let channel = self.ch.id.clone();
                        tokio::spawn(async move {
                            if let Ok(Err(e)) = wait.await {
                                tracing::error!(channel = %channel, message = id, error = %e, "cannot record the send result");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::error!(channel = %self.ch.id, message = id, error = %e, "cannot record the send result");
                    }
                }
                State::Sent
            }
            Err(e) => {
                self.ch.failed.fetch_add(1, Ordering::Relaxed);
                let outcome = e.outcome();
                match e {
                    SendError::Permanent { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "the gateway refused the message for good");
                        self.record(id, move |tx| {
                            spool::mark_failed(tx, id, outcome, &reason).map(|_| State::Failed)
                        })
                        .await
                    }
                    SendError::Unknown { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "cannot tell whether the message left");
                        if dialer.resend_unknown {
                            self.record(id, move |tx| {
                                spool::mark_retry(tx, id, outcome, &reason, backoff, max_attempts)
                            })
                            .await
                        } else {
                            self.record(id, move |tx| {
                                spool::mark_unknown(tx, id, &reason).map(|_| State::Unknown)
                            })
                            .await
                        }
                    }
                    SendError::PortUnusable { reason } | SendError::Auth { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "channel taken out of use; the message goes to another channel");
                        self.ch.quarantine(&reason);
                        self.record(id, move |tx| {
                            spool::requeue(tx, id, outcome, &reason).map(|_| State::ToProcess)
                        })
                        .await
                    }
                    SendError::Temporary { reason } => {
                        tracing::info!(channel = %self.ch.id, message = id, reason = %reason, backoff_ms = backoff, "temporary failure; will retry");
                        self.record(id, move |tx| {
                            spool::mark_retry(tx, id, outcome, &reason, backoff, max_attempts)
                        })
                        .await
                    }
                }
            }
        };
        m.dialer_messages
            .get_or_create(&DialerStateLabels {
                dialer: dialer.name.clone(),
                state: state_label(state),
            })
            .inc();
        let _ = done.send(JobDone {
            id,
            outcome: JobOutcome::Finished(state),
        });
    }

    async fn record<F>(&self, id: i64, f: F) -> State
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<State, crate::store::StoreError>
            + Send
            + 'static,
    {
        match self.shared.store.write(f).await {
            Ok(s) => s,
            Err(e) => {
                // The message stays SENDING on disk; reconciliation at the
                // next start settles it. Never resend from here.
                tracing::error!(channel = %self.ch.id, message = id, error = %e, "cannot record the send result");
                State::Sending
            }
        }
    }
}

/// Logs and counts a breaker's change of state.
pub fn breaker_switched(shared: &Shared, breaker: &Breaker, t: &Transition) {
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

/// Exponential backoff from the dialer's base, capped at one hour.
pub fn backoff_ms(dialer: &DialerConfig, attempt: i64) -> i64 {
    let base = dialer.retry_backoff.as_millis() as i64;
    let factor = 1i64 << (attempt - 1).clamp(0, 10);
    (base.saturating_mul(factor)).min(3_600_000)
}

pub fn state_label(s: State) -> &'static str {
    match s {
        State::None => "none",
        State::ToProcess => "to_process",
        State::Sending => "sending",
        State::Blocked => "blocked",
        State::Sent => "sent",
        State::Delivered => "delivered",
        State::Failed => "failed",
        State::Invalid => "invalid",
        State::Cancelled => "cancelled",
        State::Unknown => "unknown",
        State::Undelivered => "undelivered",
    }
}
