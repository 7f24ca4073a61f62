//! A channel is one port of one gateway (or one modem): its health, its
//! pacer and its queue. One worker task per channel sends one message at a
//! time, never two closer than the dialer's interval (invariant 3).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::breaker::Breaker;
use super::doubts::{self, Doubt, Doubts, Origin, Subject};
use crate::config::DialerConfig;
use crate::metrics::{ChannelLabel, ChannelOutcomeLabels, DialerStateLabels};
use crate::runtime::{Heartbeat, Shared};
use crate::store::spool::{self, Queued, State};
use crate::transport::{Outbound, PortHealth, ReconcileTiming, SendError, Transport};

/// How long a port that answered "unusable" is left out before it is tried
/// again, when the transport has no fresher health to offer.
const PORT_QUARANTINE: Duration = Duration::from_secs(60);

/// The longest a transport's send may take before the channel gives up on
/// it (transports have their own, much shorter, timeouts).
const SEND_HARD_LIMIT: Duration = Duration::from_secs(600);

/// A channel records its next attempts together, in one transaction, when
/// it will send them all within this time: with no interval and a fast
/// gateway, one commit per message would cap the rate at the commit rate.
/// What a crash can leave in SENDING is bounded by the same time.
pub const CLAIM_HORIZON: Duration = Duration::from_millis(50);
/// The most attempts a channel records (and jobs it queues) at once.
pub const CLAIM_MAX: usize = 16;

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
    /// Signalled each time the worker takes jobs off the queue.
    taken: tokio::sync::Notify,
    /// How long a send takes, smoothed, in microseconds. Starts at the
    /// claim horizon so a new channel claims one message at a time until
    /// its gateway has shown it is fast.
    latency_us: AtomicU64,
    /// Whether the transport can be asked afterwards whether a message
    /// left (Dinstar by user_id), how, and where such messages go. Only
    /// then are attempts recorded ahead, and a send without a clear answer
    /// left to the reconciler instead of settled here.
    reconcile: Option<(ReconcileTiming, Doubts)>,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Channel {
    /// Creates the channel and spawns its worker. `reconcile`: the
    /// transport's [`Capabilities::reconcile`](crate::transport::Capabilities),
    /// with the reconciler that takes messages in doubt.
    // Each argument is one of the gateway's parts the channel works with;
    // a struct for them would only be unpacked again here.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        shared: &Shared,
        transport: Arc<dyn Transport>,
        breaker: Arc<Breaker>,
        reconcile: Option<(ReconcileTiming, Doubts)>,
        port: u32,
        heartbeat: Heartbeat,
        stop: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Self> {
        // A channel holds at most the messages it sends now and as many
        // again queued (see claim_depth), so a crash leaves little in flight
        // and an unhealthy channel strands little.
        let (tx, rx) = mpsc::channel(CLAIM_MAX);
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
            taken: tokio::sync::Notify::new(),
            latency_us: AtomicU64::new(CLAIM_HORIZON.as_micros() as u64),
            reconcile,
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

    /// How many messages of this dialer the channel records at once, and
    /// queues ahead: as many as it sends within [`CLAIM_HORIZON`], given
    /// the dialer's interval and how long the gateway takes per send. One
    /// for a paced dialer or a slow gateway (a modem), so nothing waits in
    /// SENDING behind a pacer. Always one for a transport that cannot be
    /// asked after a crash (sim, at, dinstar-dwg): what it had recorded
    /// ahead would end UNKNOWN (or, with `resend_unknown`, some of it sent
    /// twice), so a crash leaves at most one message per channel in doubt.
    pub fn claim_depth(&self, dialer: &DialerConfig) -> usize {
        if self.reconcile.is_none() {
            return 1;
        }
        let latency = Duration::from_micros(self.latency_us.load(Ordering::Relaxed));
        let per_message = dialer.interval.max(latency);
        if per_message.is_zero() {
            return CLAIM_MAX;
        }
        ((CLAIM_HORIZON.as_micros() / per_message.as_micros().max(1)) as usize).clamp(1, CLAIM_MAX)
    }

    fn observe_latency(&self, took: Duration) {
        let sample = took.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.latency_us.load(Ordering::Relaxed);
        self.latency_us
            .store((old * 7 + sample) / 8, Ordering::Relaxed);
    }

    /// Offers a job without waiting. Gives it back when the channel holds
    /// as many of this dialer's jobs as it claims at once, or the worker is
    /// gone.
    // The job comes back by value when refused; boxing it would cost an
    // allocation per message on the send path to shrink the rare refusal.
    #[allow(clippy::result_large_err)]
    pub fn offer(&self, job: Job) -> Result<(), Job> {
        if self.queued.load(Ordering::Relaxed) >= self.claim_depth(&job.dialer) as u64 {
            return Err(job);
        }
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

    /// Jobs waiting in the channel's queue.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Whether the channel's worker has ended (it takes no more jobs).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Resolves when the queue holds fewer than `depth` jobs (or the
    /// worker ended).
    pub async fn has_room(&self, depth: usize) {
        loop {
            // Registered before the check, so a take in between is not missed.
            let taken = self.taken.notified();
            tokio::pin!(taken);
            taken.as_mut().enable();
            if self.queued.load(Ordering::Relaxed) < depth as u64 || self.queue.is_closed() {
                return;
            }
            tokio::select! {
                _ = taken => {}
                // The worker may end without taking anything.
                _ = self.queue.closed() => return,
            }
        }
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
        let queued_gauge = self
            .shared
            .metrics
            .channel_queued
            .get_or_create(&label)
            .clone();
        // A job of another dialer met while gathering a batch waits here
        // for the next one.
        let mut carried: Option<Job> = None;
        loop {
            self.heartbeat.beat();
            let first = match carried.take() {
                Some(j) => j,
                None => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => break,
                    j = rx.recv() => match j { Some(j) => j, None => break },
                    _ = tokio::time::sleep(self.heartbeat.period()) => continue,
                },
            };
            // Claim ahead: the jobs of the same dialer already queued, as
            // many as this channel sends within the claim horizon.
            let depth = self.ch.claim_depth(&first.dialer);
            let mut batch = vec![first];
            while batch.len() < depth {
                match rx.try_recv() {
                    Ok(j) if j.dialer.name == batch[0].dialer.name => batch.push(j),
                    Ok(j) => {
                        carried = Some(j);
                        break;
                    }
                    Err(_) => break,
                }
            }
            // A carried job stays counted as queued until its batch.
            self.ch
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            self.ch.taken.notify_waiters();
            queued_gauge.set(self.ch.queued.load(Ordering::Relaxed) as i64);
            if !self.pace(&batch[0].dialer).await {
                for job in batch {
                    let _ = job.done.send(JobDone {
                        id: job.message.id,
                        outcome: JobOutcome::Returned(job.message),
                    });
                }
                break;
            }
            if !self.send_batch(batch).await {
                break;
            }
        }
        // Jobs still queued were never marked SENDING: hand them back.
        rx.close();
        self.ch.taken.notify_waiters();
        let rest = carried
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()));
        for job in rest {
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

    /// Records the batch's attempts in one transaction, then sends them one
    /// by one, paced. False when the daemon is stopping.
    async fn send_batch(&self, batch: Vec<Job>) -> bool {
        let dialer = batch[0].dialer.clone();
        if let Err(why) = self.ch.usable() {
            tracing::debug!(channel = %self.ch.id, count = batch.len(), reason = %why, "channel unusable; messages returned to their dialer");
            for job in batch {
                let _ = job.done.send(JobDone {
                    id: job.message.id,
                    outcome: JobOutcome::Returned(job.message),
                });
            }
            return true;
        }
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            if job.message.number.is_some() {
                jobs.push(job);
            } else {
                // Invalid numbers never reach a channel; be safe anyway.
                let _ = job.done.send(JobDone {
                    id: job.message.id,
                    outcome: JobOutcome::Finished(State::Invalid),
                });
            }
        }
        if jobs.is_empty() {
            return true;
        }
        let ids: Vec<i64> = jobs.iter().map(|j| j.message.id).collect();
        let (gw, chan) = (self.ch.gateway.clone(), self.ch.id.clone());
        let dncr = dialer.dncr.then(|| dialer.name.clone());
        let begun = self
            .shared
            .store
            .write_unguarded(move |tx| spool::begin_attempts(tx, &ids, &gw, &chan, dncr.as_deref()))
            .await;
        let begun = match begun {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(channel = %self.ch.id, count = jobs.len(), error = %e, "cannot record the attempts; not sending");
                for job in jobs {
                    let _ = job.done.send(JobDone {
                        id: job.message.id,
                        outcome: JobOutcome::Returned(job.message),
                    });
                }
                return true;
            }
        };
        let mut sent = Vec::new();
        let mut claimed = jobs.into_iter().zip(begun).peekable();
        let mut first = true;
        let mut stopping = false;
        while let Some((job, begun)) = claimed.next() {
            let (reference, attempt) = match begun {
                spool::Begun::Attempt { reference, attempt } => (reference, attempt),
                spool::Begun::Blocked => {
                    tracing::info!(channel = %self.ch.id, message = job.message.id, "number listed on the DNCR while the message waited; blocked");
                    self.finished(&job, State::Blocked);
                    continue;
                }
                spool::Begun::Gone => {
                    // Cancelled while it waited in memory.
                    let _ = job.done.send(JobDone {
                        id: job.message.id,
                        outcome: JobOutcome::Finished(State::Cancelled),
                    });
                    continue;
                }
            };
            // The first was paced before the claim; the rest are paced here,
            // and given back if the channel stops or fails meanwhile.
            let release = if first {
                None
            } else if !self.pace(&dialer).await {
                stopping = true;
                Some("claimed, but the daemon stopped before it was sent".to_string())
            } else {
                self.ch.usable().err()
            };
            first = false;
            if let Some(reason) = release {
                let rest = std::iter::once((job, spool::Begun::Attempt { reference, attempt }))
                    .chain(claimed.by_ref());
                self.release(rest, &reason).await;
                break;
            }
            if let Some(mark) = self.send(job, reference, attempt).await {
                sent.push(mark);
            }
        }
        if !sent.is_empty() {
            self.record_sent(sent);
        }
        !stopping
    }

    /// Gives claimed, unsent messages back: TO_PROCESS again without
    /// spending an attempt, and back to their dialer.
    async fn release(&self, claimed: impl Iterator<Item = (Job, spool::Begun)>, reason: &str) {
        let mut jobs = Vec::new();
        for (job, begun) in claimed {
            if let spool::Begun::Attempt { attempt, .. } = begun {
                jobs.push((job, attempt));
            } else {
                let state = if begun == spool::Begun::Blocked {
                    State::Blocked
                } else {
                    State::Cancelled
                };
                let _ = job.done.send(JobDone {
                    id: job.message.id,
                    outcome: JobOutcome::Finished(state),
                });
            }
        }
        let rows: Vec<(i64, i64)> = jobs.iter().map(|(j, a)| (j.message.id, *a)).collect();
        let why = reason.to_string();
        let done = self
            .shared
            .store
            .write_unguarded(move |tx| {
                for (id, attempt) in rows {
                    spool::requeue(tx, id, spool::AttemptRow::Id(attempt), "not_sent", &why)?;
                }
                Ok(())
            })
            .await;
        match done {
            Ok(()) => {
                tracing::debug!(channel = %self.ch.id, count = jobs.len(), reason = %reason, "claimed messages given back unsent");
                for (job, _) in jobs {
                    let id = job.message.id;
                    let _ = job.done.send(JobDone {
                        id,
                        outcome: JobOutcome::Returned(job.message),
                    });
                }
            }
            Err(e) => {
                // They stay SENDING; reconciliation at the next start
                // settles them. Never resend from here.
                tracing::error!(channel = %self.ch.id, count = jobs.len(), error = %e, "cannot give claimed messages back; they are settled at the next start");
                for (job, _) in jobs {
                    let _ = job.done.send(JobDone {
                        id: job.message.id,
                        outcome: JobOutcome::Finished(State::Sending),
                    });
                }
            }
        }
    }

    /// Records SENT for messages the gateway took, in one job, without
    /// waiting: the next send on this channel need not wait for this
    /// commit. The writer keeps the order of writes, and if the process
    /// dies first the messages are still SENDING on disk and
    /// reconciliation settles them; they are never resent from here.
    fn record_sent(&self, sent: Vec<(i64, i64, String)>) {
        let count = sent.len();
        match self
            .shared
            .store
            .write_unguarded_detached(move |tx| spool::mark_sent_many(tx, &sent))
        {
            Ok(wait) => {
                let channel = self.ch.id.clone();
                tokio::spawn(async move {
                    if let Ok(Err(e)) = wait.await {
                        tracing::error!(channel = %channel, count, error = %e, "cannot record send results; the messages are settled at the next start");
                    }
                });
            }
            Err(e) => {
                tracing::error!(channel = %self.ch.id, count, error = %e, "cannot record send results; the messages are settled at the next start");
            }
        }
    }

    fn finished(&self, job: &Job, state: State) {
        self.shared
            .metrics
            .dialer_messages
            .get_or_create(&DialerStateLabels {
                dialer: job.dialer.name.clone(),
                state: state.label(),
            })
            .inc();
        let _ = job.done.send(JobDone {
            id: job.message.id,
            outcome: JobOutcome::Finished(state),
        });
    }

    /// Sends one recorded attempt. A message the gateway took comes back
    /// as (id, attempt, gateway reference) for [`record_sent`]; every other
    /// outcome is recorded here.
    async fn send(&self, job: Job, reference: i64, attempt: i64) -> Option<(i64, i64, String)> {
        let id = job.message.id;
        let dialer = job.dialer.clone();
        let outbound = Outbound {
            message_id: id,
            port: self.ch.port,
            to: job.message.number.clone().unwrap_or_default(),
            text: job.message.text.clone(),
            reference,
            template: job.message.template.clone(),
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
        // A template is WhatsApp's; an SMS gateway would send the text
        // that only describes it. (A dialer over mixed gateways can route
        // one to an SMS channel.)
        let sms_template =
            outbound.template.is_some() && self.ch.transport.window(&outbound.to).is_none();
        let result = if sms_template {
            Err(SendError::Permanent {
                reason: format!(
                    "a WhatsApp template cannot go through gateway {:?}, which sends SMS",
                    self.ch.gateway
                ),
            })
        } else {
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
        self.ch.observe_latency(latency);
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
            // The gateway answered, and clearly.
            Err(SendError::OptedOut { .. }) | Err(SendError::Deferred { .. }) => {
                self.ch.breaker.success()
            }
            Err(SendError::Permanent { .. }) | Err(SendError::PortUnusable { .. }) => None,
        };
        if let Some(t) = transition {
            super::breaker::announce(&self.shared, &self.ch.breaker, &t);
        }
        let max_attempts = dialer.max_attempts as i64;
        let backoff = dialer.backoff_ms(job.message.attempts + 1);
        let row = spool::AttemptRow::Id(attempt);
        let mut accepted = None;
        let state = match result {
            Ok(acc) => {
                self.ch.sent.fetch_add(1, Ordering::Relaxed);
                accepted = Some((id, attempt, acc.gateway_ref));
                State::Sent
            }
            Err(e) => {
                self.ch.failed.fetch_add(1, Ordering::Relaxed);
                let outcome = e.outcome();
                match e {
                    SendError::Permanent { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "the gateway refused the message for good");
                        self.record(id, move |tx| {
                            spool::mark_failed(tx, id, row, outcome, &reason).map(|_| State::Failed)
                        })
                        .await
                    }
                    SendError::Unknown { reason } if self.ch.reconcile.is_some() => {
                        self.in_doubt(
                            id,
                            row,
                            &dialer,
                            &outbound,
                            job.message.attempts + 1,
                            started,
                            reason,
                        );
                        State::Sending
                    }
                    SendError::Unknown { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "cannot tell whether the message left");
                        if dialer.resend_unknown {
                            self.record(id, move |tx| {
                                spool::mark_retry(
                                    tx,
                                    id,
                                    row,
                                    outcome,
                                    &reason,
                                    backoff,
                                    max_attempts,
                                )
                            })
                            .await
                        } else {
                            self.record(id, move |tx| {
                                spool::mark_unknown(tx, id, row, &reason).map(|_| State::Unknown)
                            })
                            .await
                        }
                    }
                    SendError::PortUnusable { reason } | SendError::Auth { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "channel taken out of use; the message goes to another channel");
                        self.ch.quarantine(&reason);
                        self.record(id, move |tx| {
                            spool::requeue(tx, id, row, outcome, &reason).map(|_| State::ToProcess)
                        })
                        .await
                    }
                    SendError::OptedOut { reason } => {
                        tracing::warn!(channel = %self.ch.id, message = id, reason = %reason, "the recipient opted out with the provider; the message failed and the number goes on the DNCR list");
                        let number = job.message.number.clone().unwrap_or_default();
                        let per_dialer = matches!(
                            self.shared.config().inbound.opt_out_scope,
                            crate::config::OptOutScope::Dialers
                        );
                        let gateway = self.ch.gateway.clone();
                        let state = self
                            .record(id, move |tx| {
                                spool::mark_failed(tx, id, row, outcome, &reason)?;
                                if !number.is_empty() {
                                    let added = crate::store::consent::provider_opt_out(
                                        tx, &number, per_dialer, &gateway, &reason,
                                    )?;
                                    if !added.is_empty() {
                                        tracing::info!(number = %number, gateway = %gateway, "opt-out recorded from the provider's refusal");
                                    }
                                }
                                Ok(State::Failed)
                            })
                            .await;
                        self.shared
                            .metrics
                            .consent_changes
                            .get_or_create(&crate::metrics::ConsentLabels {
                                action: "opt_out",
                                source: "provider",
                            })
                            .inc();
                        state
                    }
                    SendError::Deferred { reason, retry_in } => {
                        tracing::info!(channel = %self.ch.id, message = id, reason = %reason, retry_in_s = retry_in.as_secs(), "deferred by the gateway's limit; back to the queue without spending an attempt");
                        let not_before = crate::now_ms() + retry_in.as_millis() as i64;
                        self.record(id, move |tx| {
                            spool::defer(tx, id, row, outcome, &reason, not_before)
                                .map(|_| State::ToProcess)
                        })
                        .await
                    }
                    SendError::Temporary { reason } => {
                        tracing::info!(channel = %self.ch.id, message = id, reason = %reason, backoff_ms = backoff, "temporary failure; will retry");
                        self.record(id, move |tx| {
                            spool::mark_retry(tx, id, row, outcome, &reason, backoff, max_attempts)
                        })
                        .await
                    }
                }
            }
        };
        self.finished(&job, state);
        accepted
    }

    /// A send without a clear answer on a transport that can be asked
    /// later: nothing is written (the message stays SENDING, so nobody
    /// sends it again); the reconciler asks the gateway until it has had
    /// time to act on the request, counted from when it may have reached
    /// it (the send's start).
    // The parts of one send the reconciler needs, straight from `send`.
    #[allow(clippy::too_many_arguments)]
    fn in_doubt(
        &self,
        id: i64,
        attempt: spool::AttemptRow,
        dialer: &DialerConfig,
        outbound: &Outbound,
        retry: i64,
        started: Instant,
        reason: String,
    ) {
        let reference = outbound.reference;
        let Some((timing, doubts)) = &self.ch.reconcile else {
            return;
        };
        tracing::info!(channel = %self.ch.id, message = id, user_id = reference, reason = %reason, grace_s = timing.grace.as_secs_f32(), "no clear answer from the gateway; the message is in doubt and is asked about, not sent again, until the gateway has had time to act on it");
        doubts.add(Doubt {
            subject: Subject {
                message_id: id,
                attempt,
                dialer: dialer.name.clone(),
                origin: Origin::Send { retry },
            },
            gateway: self.ch.gateway.clone(),
            port: self.ch.port,
            reference,
            to: outbound.to.clone(),
            text: outbound.text.clone(),
            started_ms: crate::now_ms() - started.elapsed().as_millis() as i64,
            reason,
            since: tokio::time::Instant::from_std(started),
            timing: *timing,
            first_ask: tokio::time::Instant::now() + doubts::FIRST_ASK,
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
