//! Messages in doubt: sent without a clear answer (the request timed out,
//! the connection broke, the reply was unreadable) through a gateway that
//! can be asked afterwards (Dinstar, by user_id), or found in SENDING at a
//! start when the gateway could not answer for them yet. They stay
//! SENDING, so no loader reads them and no channel sends them again, while
//! one task per gateway asks about them:
//!
//! - the gateway has it: SENT with its reference, and followed from there
//!   like any other (send result, delivery report);
//! - the gateway does not know it: that counts only once the gateway has
//!   had time to act on a request it may still hold (its grace,
//!   `reconcile_grace_ms`, from when the request may have reached it): a
//!   gateway too slow to answer in time may still take it. Until then it
//!   is asked again; after it, the message never left and goes again (a
//!   send of this run after the dialer's backoff, spending the attempt;
//!   one found at a start at once, spending none);
//! - the question fails: asked again with backoff, 1 s doubling to 30 s,
//!   for the gateway's patience (`reconcile_patience_s`), then UNKNOWN, or
//!   sent again when the dialer says `resend_unknown = true`.
//!
//! A stop or a crash leaves them SENDING on disk, where the next start's
//! reconciliation (`dialer::reconcile`) asks again and hands back here what
//! it cannot settle at once.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Gateways;
use crate::metrics::{DialerStateLabels, GatewayLabel};
use crate::runtime::Shared;
use crate::store::StoreError;
use crate::store::spool::{self, AttemptRow, State};
use crate::transport::{ReconcileTiming, Reconciled};

/// The first question about a send without an answer: soon, because a
/// lost reply is the common case and the gateway then already has it.
pub const FIRST_ASK: Duration = Duration::from_millis(500);
/// "Not yet" is asked again after 0.5 s, 1 s, 2 s, ... at most this
/// apart, and once more when the grace ends.
const ASK_STEP_MAX: Duration = Duration::from_secs(8);
/// A question that failed is asked again after 1 s, doubling to this.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// The longest one question may take (the transport bounds its own
/// requests; this only keeps a transport bug from stalling the rest).
const ASK_LIMIT: Duration = Duration::from_secs(120);

/// Where a message in doubt came from, which decides what "it never
/// left" does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A send of this run: it goes again after the dialer's backoff for
    /// retry number `retry`, the attempt spent (a gateway that keeps
    /// failing to take it ends it FAILED).
    Send { retry: i64 },
    /// Found in SENDING at the start: back to the queue at once, no
    /// attempt spent, as the rest of crash reconciliation.
    Restart,
}

/// The message a settlement is about.
#[derive(Debug, Clone)]
pub struct Subject {
    pub message_id: i64,
    pub attempt: AttemptRow,
    pub dialer: String,
    pub origin: Origin,
}

/// A message in doubt, handed to [`Gateways::doubt`].
#[derive(Debug, Clone)]
pub struct Doubt {
    pub subject: Subject,
    pub gateway: String,
    pub port: u32,
    /// Our reference of the attempt (Dinstar's user_id).
    pub reference: i64,
    /// What was sent, for a transport that finds a message by its content
    /// (see [`Asked`](crate::transport::Asked)).
    pub to: String,
    pub text: String,
    /// Unix ms when the attempt began.
    pub started_ms: i64,
    /// Why it is in doubt, for the journal.
    pub reason: String,
    /// The latest moment the request may have reached the gateway: when
    /// the send began, or, for one found at a start, the start (the last
    /// run may have sent it just before it died).
    pub since: Instant,
    /// The gateway's [`ReconcileTiming`](crate::transport::ReconcileTiming).
    pub timing: ReconcileTiming,
    /// The first question, not before.
    pub first_ask: Instant,
}

impl Doubt {
    fn asked(&self) -> crate::transport::Asked {
        crate::transport::Asked {
            message_id: self.subject.message_id,
            port: self.port,
            reference: self.reference,
            to: self.to.clone(),
            text: self.text.clone(),
            started_ms: self.started_ms,
        }
    }

    /// Until then "the gateway does not know it" means "not yet".
    fn grace_end(&self) -> Instant {
        self.since + self.timing.grace
    }

    /// After it, a question that fails settles the message as unknown.
    fn give_up(&self) -> Instant {
        self.since + self.timing.patience.max(self.timing.grace)
    }
}

/// What is known of a message in doubt, in the end.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// It left, with the gateway's reference.
    Sent(String),
    /// It never left (and will not any more): why we know.
    NotSent(String),
    /// Nobody can tell: why.
    Unknown(String),
}

/// Where messages in doubt are handed over. Cheap to clone.
#[derive(Clone)]
pub struct Doubts {
    tx: mpsc::UnboundedSender<Doubt>,
}

impl Doubts {
    pub(super) fn channel() -> (Self, mpsc::UnboundedReceiver<Doubt>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, rx)
    }

    /// Hands a message over. When the reconciler has stopped (the daemon is
    /// stopping) it stays SENDING and the next start settles it.
    pub fn add(&self, d: Doubt) {
        if let Err(e) = self.tx.send(d) {
            tracing::debug!(
                message = e.0.subject.message_id,
                "stopping: the message stays SENDING and is settled at the next start"
            );
        }
    }
}

/// Records what became of a message in doubt (or of one a start found in
/// SENDING): SENT, back to the queue, or UNKNOWN, as its origin and its
/// dialer's `resend_unknown` say. The state it ended in.
pub async fn settle(shared: &Shared, s: &Subject, verdict: Verdict) -> Result<State, StoreError> {
    let config = shared.config();
    let dialer = config.dialer(&s.dialer);
    let resend = dialer.is_some_and(|d| d.resend_unknown);
    let retry = |outcome: &'static str, why: String, retry: i64| match dialer {
        Some(d) => Write::Retry {
            outcome,
            why,
            backoff_ms: d.backoff_ms(retry),
            max_attempts: i64::from(d.max_attempts),
        },
        // Its dialer is gone: back to the queue, where nothing loads it.
        None => Write::Requeue { outcome, why },
    };
    let write = match (verdict, s.origin) {
        (Verdict::Sent(gateway_ref), _) => Write::Sent(gateway_ref),
        (Verdict::NotSent(why), Origin::Restart) => Write::Requeue {
            outcome: "not_sent",
            why,
        },
        (Verdict::NotSent(why), Origin::Send { retry: n }) => retry("not_sent", why, n),
        (Verdict::Unknown(why), _) if !resend => Write::Unknown(why),
        (Verdict::Unknown(why), Origin::Restart) => Write::Requeue {
            outcome: "unknown",
            why: format!("{why}; resending as configured (resend_unknown)"),
        },
        (Verdict::Unknown(why), Origin::Send { retry: n }) => retry(
            "unknown",
            format!("{why}; resending as configured (resend_unknown)"),
            n,
        ),
    };
    let (id, row) = (s.message_id, s.attempt);
    let state = shared
        .store
        .write(move |tx| match write {
            Write::Sent(gateway_ref) => {
                spool::mark_sent(tx, id, row, &gateway_ref).map(|_| State::Sent)
            }
            Write::Requeue { outcome, why } => {
                spool::requeue(tx, id, row, outcome, &why).map(|_| State::ToProcess)
            }
            Write::Retry {
                outcome,
                why,
                backoff_ms,
                max_attempts,
            } => spool::mark_retry(tx, id, row, outcome, &why, backoff_ms, max_attempts),
            Write::Unknown(why) => spool::mark_unknown(tx, id, row, &why).map(|_| State::Unknown),
        })
        .await?;
    shared
        .metrics
        .dialer_messages
        .get_or_create(&DialerStateLabels {
            dialer: s.dialer.clone(),
            state: state.label(),
        })
        .inc();
    Ok(state)
}

/// The one write a settlement makes.
enum Write {
    Sent(String),
    Requeue {
        outcome: &'static str,
        why: String,
    },
    Retry {
        outcome: &'static str,
        why: String,
        backoff_ms: i64,
        max_attempts: i64,
    },
    Unknown(String),
}

/// Hands each message to its gateway's worker, started on first use.
/// Workers outlive a gateway's restart on reload: they look its transport
/// up for every question.
pub(super) async fn run(
    gateways: Gateways,
    mut rx: mpsc::UnboundedReceiver<Doubt>,
    stop: CancellationToken,
) {
    let mut workers: HashMap<String, mpsc::UnboundedSender<Doubt>> = HashMap::new();
    loop {
        let d = tokio::select! {
            _ = stop.cancelled() => return,
            d = rx.recv() => match d { Some(d) => d, None => return },
        };
        let tx = workers.entry(d.gateway.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let worker = Worker {
                gateways: gateways.clone(),
                gateway: d.gateway.clone(),
                stop: stop.clone(),
            };
            gateways.inner.tracker.spawn(worker.run(rx));
            tx
        });
        let _ = tx.send(d);
    }
}

struct Entry {
    d: Doubt,
    next: Instant,
    /// "Not yet" answers so far.
    not_yet: u32,
    /// Failed questions in a row.
    failures: u32,
}

/// What to do with a message after one answer.
enum Step {
    Settle(Verdict),
    AskAt(Instant),
}

/// A stretch of time in which the gateway could not be asked.
struct Outage {
    since: Instant,
    failed: u64,
}

struct Worker {
    gateways: Gateways,
    gateway: String,
    stop: CancellationToken,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Doubt>) {
        let shared = self.gateways.inner.shared.clone();
        let in_doubt = shared
            .metrics
            .messages_in_doubt
            .get_or_create(&GatewayLabel {
                gateway: self.gateway.clone(),
            })
            .clone();
        let mut entries: Vec<Entry> = Vec::new();
        let mut outage: Option<Outage> = None;
        loop {
            let next = entries.iter().map(|e| e.next).min();
            tokio::select! {
                _ = self.stop.cancelled() => return,
                d = rx.recv() => {
                    let Some(d) = d else { return };
                    let mut new = vec![d];
                    while let Ok(d) = rx.try_recv() {
                        new.push(d);
                    }
                    for d in new {
                        in_doubt.inc();
                        entries.push(Entry { next: d.first_ask, d, not_yet: 0, failures: 0 });
                    }
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            }
            let now = Instant::now();
            let (mut due, rest): (Vec<Entry>, Vec<Entry>) =
                entries.into_iter().partition(|e| e.next <= now);
            entries = rest;
            due.sort_by_key(|e| e.next);
            // Once a question failed, the others due now are not asked
            // this round: one failing request per round, not one per
            // message, on a gateway that is already struggling.
            let mut failed_now: Option<String> = None;
            for mut e in due {
                if self.stop.is_cancelled() {
                    // Stays SENDING; the next start settles it.
                    return;
                }
                let answer = match &failed_now {
                    Some(reason) => Reconciled::Unanswered {
                        reason: reason.clone(),
                    },
                    None => self.ask(&e.d).await,
                };
                if let Reconciled::Unanswered { reason } = &answer {
                    if failed_now.is_none() {
                        failed_now = Some(reason.clone());
                        let o = outage.get_or_insert_with(|| {
                            tracing::warn!(gateway = %self.gateway, reason = %reason, in_doubt = entries.len() + 1, "cannot ask the gateway about messages in doubt; asking again with backoff, none is sent again meanwhile");
                            Outage {
                                since: Instant::now(),
                                failed: 0,
                            }
                        });
                        o.failed += 1;
                    }
                } else if let Some(o) = outage.take() {
                    tracing::info!(gateway = %self.gateway, failed_questions = o.failed, after_s = o.since.elapsed().as_secs(), "the gateway answers questions about messages in doubt again");
                }
                match step(&mut e, answer, Instant::now()) {
                    Step::AskAt(at) => {
                        e.next = at;
                        entries.push(e);
                    }
                    Step::Settle(verdict) => {
                        self.settled(&shared, &e.d, verdict).await;
                        in_doubt.dec();
                    }
                }
            }
        }
    }

    /// One question, bounded, given up at once when the daemon stops.
    async fn ask(&self, d: &Doubt) -> Reconciled {
        let Some(transport) = self.gateways.transport(&d.gateway) else {
            let configured = self
                .gateways
                .inner
                .shared
                .config()
                .gateways
                .iter()
                .any(|g| g.name == d.gateway && g.enabled);
            return if configured {
                Reconciled::Unanswered {
                    reason: format!("gateway {} is not running", d.gateway),
                }
            } else {
                // Removed or disabled: nobody can be asked any more.
                Reconciled::Unknown
            };
        };
        let asked = d.asked();
        tokio::select! {
            _ = self.stop.cancelled() => Reconciled::Unanswered { reason: "stopping".into() },
            r = tokio::time::timeout(ASK_LIMIT, transport.reconcile(&asked)) => {
                r.unwrap_or_else(|_| Reconciled::Unanswered {
                    reason: format!("no answer within {} s", ASK_LIMIT.as_secs()),
                })
            }
        }
    }

    async fn settled(&self, shared: &Shared, d: &Doubt, verdict: Verdict) {
        let (message, user_id, port) = (d.subject.message_id, d.reference, d.port);
        let channel = format!("{}:{port}", d.gateway);
        let what = verdict.clone();
        match settle(shared, &d.subject, verdict).await {
            Ok(state) => match what {
                Verdict::Sent(_) => {
                    tracing::info!(channel = %channel, message, user_id, "the gateway has the message in doubt: SENT, sent once")
                }
                Verdict::NotSent(why) => {
                    tracing::info!(channel = %channel, message, user_id, reason = %why, state = state.name(), "the gateway never got the message in doubt; it goes again")
                }
                Verdict::Unknown(why) => {
                    tracing::warn!(channel = %channel, message, user_id, reason = %why, state = state.name(), "cannot tell whether the message in doubt left")
                }
            },
            Err(e) => {
                // Still SENDING: the next start asks again. Never resent
                // from here.
                tracing::error!(channel = %channel, message, user_id, error = %e, "cannot record what became of a message in doubt; it is settled at the next start");
            }
        }
    }
}

/// What one answer means for a message in doubt, at `now`.
fn step(e: &mut Entry, answer: Reconciled, now: Instant) -> Step {
    match answer {
        Reconciled::Sent { gateway_ref } => Step::Settle(Verdict::Sent(gateway_ref)),
        Reconciled::Unknown => Step::Settle(Verdict::Unknown(format!(
            "{}; the gateway cannot tell whether it left",
            e.d.reason
        ))),
        Reconciled::NotSent if now >= e.d.grace_end() => Step::Settle(Verdict::NotSent(format!(
            "{}; the gateway still did not have it {} s later",
            e.d.reason,
            (now - e.d.since).as_secs()
        ))),
        Reconciled::NotSent => {
            e.failures = 0;
            let wait = FIRST_ASK
                .saturating_mul(1 << e.not_yet.min(8))
                .min(ASK_STEP_MAX);
            e.not_yet += 1;
            Step::AskAt((now + wait).min(e.d.grace_end()))
        }
        Reconciled::Unanswered { reason } if now >= e.d.give_up() => {
            Step::Settle(Verdict::Unknown(format!(
                "{}; and the gateway could not be asked whether it took it ({reason})",
                e.d.reason
            )))
        }
        Reconciled::Unanswered { .. } => {
            let wait = RETRY_FIRST
                .saturating_mul(1 << e.failures.min(8))
                .min(RETRY_MAX);
            e.failures += 1;
            Step::AskAt((now + wait).min(e.d.give_up()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(grace: Duration, patience: Duration) -> Entry {
        let now = Instant::now();
        Entry {
            d: Doubt {
                subject: Subject {
                    message_id: 1,
                    attempt: AttemptRow::Latest,
                    dialer: "d".into(),
                    origin: Origin::Restart,
                },
                gateway: "gw".into(),
                port: 0,
                reference: 7,
                to: "+59899000001".into(),
                text: "hola".into(),
                started_ms: 0,
                reason: "timed out".into(),
                since: now,
                timing: ReconcileTiming { grace, patience },
                first_ask: now,
            },
            next: now,
            not_yet: 0,
            failures: 0,
        }
    }

    #[test]
    fn not_found_within_the_grace_is_asked_again_up_to_its_end() {
        let mut e = entry(Duration::from_secs(30), Duration::from_secs(900));
        let start = e.d.first_ask;
        let mut now = start;
        let mut asks = Vec::new();
        loop {
            match step(&mut e, Reconciled::NotSent, now) {
                Step::AskAt(at) => {
                    assert!(at > now && at <= e.d.grace_end());
                    asks.push(at - start);
                    now = at;
                }
                Step::Settle(Verdict::NotSent(why)) => {
                    assert!(why.contains("still did not have it 30 s later"), "{why}");
                    break;
                }
                Step::Settle(v) => panic!("{v:?}"),
            }
        }
        assert_eq!(
            now,
            e.d.grace_end(),
            "the last question is at the grace's end"
        );
        assert!(asks.len() < 10, "{asks:?}");
    }

    #[test]
    fn a_failed_question_backs_off_until_the_patience_ends_then_unknown() {
        let mut e = entry(Duration::from_secs(3), Duration::from_secs(120));
        let mut now = e.d.first_ask;
        let mut waits = Vec::new();
        let unanswered = || Reconciled::Unanswered {
            reason: "connection refused".into(),
        };
        loop {
            match step(&mut e, unanswered(), now) {
                Step::AskAt(at) => {
                    waits.push((at - now).as_secs());
                    now = at;
                }
                Step::Settle(Verdict::Unknown(why)) => {
                    assert!(why.contains("connection refused"), "{why}");
                    break;
                }
                Step::Settle(v) => panic!("{v:?}"),
            }
        }
        assert_eq!(&waits[..6], &[1, 2, 4, 8, 16, 30]);
        assert_eq!(now, e.d.give_up());
        // Once it answers, the message is settled by what it says.
        let mut e = entry(Duration::from_secs(3), Duration::from_secs(120));
        let now = e.d.first_ask + Duration::from_secs(10);
        assert!(matches!(step(&mut e, unanswered(), now), Step::AskAt(_)));
        assert!(matches!(
            step(&mut e, Reconciled::Sent { gateway_ref: "7".into() }, now),
            Step::Settle(Verdict::Sent(r)) if r == "7"
        ));
        assert!(matches!(
            step(&mut e, Reconciled::NotSent, now),
            Step::Settle(Verdict::NotSent(_))
        ));
    }
}
