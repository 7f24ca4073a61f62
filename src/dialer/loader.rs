//! A dialer's loader loop: what it may send next, when, and what became of
//! what it handed out. Each turn it beats its heartbeat, checks whether the
//! dialer may send (enabled, not stopped by an operator, inside its
//! schedule), tops its memory up to [`IN_MEMORY`] messages and hands them
//! to its channels; then it sleeps until a channel finishes, the channel
//! whose turn it is has room, a wake-up, a retry falls due, or a beat.
//!
//! It reads on from where its last read stopped (an index range on
//! `(dialer, state, priority, id)`), so messages already handed to a
//! channel are not read again; a wake-up (new messages), a message back in
//! the queue, a read that came up short, and at least once a second
//! ([`RESCAN`]) send it back to the top, so an urgent message or a retry
//! falling due is not passed over.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{IN_MEMORY, Rate, dispatch};
use crate::config::DialerConfig;
use crate::gateways::{Channel, Failover, Gateways, JobDone, JobOutcome};
use crate::metrics::{DialerLabel, DialerStateLabels};
use crate::now_ms;
use crate::runtime::{Heartbeat, Shared};
use crate::store::spool::{self, State};

/// The loader reads its queue from the top at least this often, so a
/// retry that fell due while it was busy is not left behind.
const RESCAN: Duration = Duration::from_secs(1);

/// One dialer's loader: reads its queue (at most [`IN_MEMORY`] messages in
/// memory, lower priority number first, then load order, the DNCR checked
/// in the same read) and hands the messages out through `dispatch`.
pub(super) struct DialerLoop {
    pub(super) name: String,
    pub(super) shared: Shared,
    pub(super) gateways: Gateways,
    pub(super) stop: CancellationToken,
    pub(super) wake: Arc<Notify>,
    pub(super) stopped: Arc<AtomicBool>,
    pub(super) in_memory: Arc<Mutex<usize>>,
    pub(super) rate: Arc<Mutex<Rate>>,
    pub(super) heartbeat: Heartbeat,
}

impl DialerLoop {
    pub(super) async fn run(self) {
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let mut failover = Failover::default();
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
            Ok(s) => self.stopped.store(s, Ordering::SeqCst),
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
                // Nothing to send, nothing to decide: a group switches (and says
                // so) only when it has traffic to move.
                if !pending.is_empty() && dialer.system {
                    let (t, orphans) =
                        dispatch::pinned(&self.gateways, &dialer, &mut pending, &done_tx);
                    turn = t;
                    self.fail_orphans(orphans, &mut held).await;
                } else if !pending.is_empty() {
                    let channels = failover.channels(&self.gateways, &config, &dialer);
                    turn =
                        dispatch::dispatch(&channels, &dialer, &mut pending, &mut cursor, &done_tx);
                }
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

    /// Fails the messages whose pinned channel left the config.
    async fn fail_orphans(&self, orphans: Vec<dispatch::Orphan>, held: &mut HashSet<i64>) {
        if orphans.is_empty() {
            return;
        }
        for (id, _) in &orphans {
            held.remove(id);
        }
        let n = orphans.len();
        let first = orphans[0].1.clone();
        match self
            .shared
            .store
            .write(move |tx| {
                for (id, reason) in &orphans {
                    spool::fail_queued(tx, *id, reason)?;
                }
                Ok(())
            })
            .await
        {
            Ok(()) => {
                tracing::warn!(dialer = %self.name, count = n, reason = %first, "replies failed: their channel is gone")
            }
            Err(e) => {
                tracing::error!(dialer = %self.name, error = %e, "cannot fail replies whose channel is gone; tried again")
            }
        }
    }

    async fn inactive_reason(&self, dialer: &DialerConfig) -> Option<String> {
        if !dialer.enabled {
            return Some("disabled in the config".into());
        }
        if self.stopped.load(Ordering::SeqCst) {
            return Some("stopped by an operator".into());
        }
        if !super::in_schedule(&self.shared.config(), dialer, jiff::Timestamp::now()) {
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
        let store = self.shared.store.clone();
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
                    self.shared
                        .metrics
                        .dialer_messages
                        .get_or_create(&DialerStateLabels {
                            dialer: dialer.name.clone(),
                            state: State::Blocked.label(),
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

    async fn next_retry_wait(&self, dialer: &DialerConfig) -> Duration {
        let name = dialer.name.clone();
        let now = now_ms();
        let next = self
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
