//! Send results and delivery reports: a report marks its SENT message
//! DELIVERED or UNDELIVERED, and one that changes nothing (a pending
//! status, a late report) is noted in the message's history; a failed
//! result sends it back to its dialer's queue (or FAILED when its attempts
//! are spent).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dialer::Dialers;
use crate::runtime::Shared;
use crate::store::spool::{self, State};

/// Records delivery reports and notes ([`spool::ReportKind::Noted`]), all
/// that have arrived, in order, in one job. A report or note can overtake
/// the SENT record of its message: one that finds no message is tried again for a while before it is given up. A batch the
/// store cannot write (a full disk) is kept and written again later, never
/// dropped: its messages would stay SENT for ever.
pub(super) async fn record(
    shared: Shared,
    mut rx: mpsc::Receiver<(spool::Report, u32)>,
    again: mpsc::Sender<(spool::Report, u32)>,
    stop: CancellationToken,
) {
    const MAX_TRIES: u32 = 30;
    const MAX_BATCH: usize = 1024;
    // Kept while the store cannot write. At ~200 bytes a report, the cap
    // is ~40 MB; beyond it the oldest go, each said in the journal.
    const MAX_WAITING: usize = 200_000;
    let mut waiting: VecDeque<(spool::Report, u32)> = VecDeque::new();
    // Dropped in this episode of a failing store, told when it ends.
    let mut dropped: u64 = 0;
    let mut pause = RETRY_MIN;
    loop {
        let first = if waiting.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                r = rx.recv() => match r { Some(r) => Some(r), None => return },
            }
        } else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => None,
                r = rx.recv() => match r { Some(r) => Some(r), None => return },
            }
        };
        let mut batch: Vec<(spool::Report, u32)> = Vec::new();
        while batch.len() < MAX_BATCH {
            match waiting.pop_front() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
        batch.extend(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // The rest waits here, not in the queue: the queue stays short, so
        // the events behind it (port health, received messages) keep moving
        // while the store cannot write.
        while let Ok(r) = rx.try_recv() {
            waiting.push_back(r);
        }
        let reports: Vec<spool::Report> = batch.iter().map(|(r, _)| r.clone()).collect();
        let found = shared
            .store
            .write_unguarded(move |tx| spool::apply_reports(tx, &reports))
            .await;
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                // Once per episode: the pause grows from its minimum only
                // while the store keeps failing.
                if pause == RETRY_MIN {
                    tracing::error!(count = batch.len(), error = %e, "cannot record delivery reports; they are kept and written when the store can write again");
                }
                for r in batch.into_iter().rev() {
                    waiting.push_front(r);
                }
                while waiting.len() > MAX_WAITING {
                    if let Some((r, _)) = waiting.pop_back() {
                        if dropped == 0 {
                            tracing::error!(gateway = %r.gateway, reference = %r.gateway_ref, waiting = MAX_WAITING, "too many delivery reports wait for the store; the newest are dropped and their messages stay SENT (counted until the store writes again)");
                        }
                        dropped += 1;
                    }
                }
                shared.metrics.reports_waiting.set(waiting.len() as i64);
                pause = (pause * 2).min(RETRY_MAX);
                continue;
            }
        };
        if pause != RETRY_MIN {
            if dropped > 0 {
                tracing::warn!(
                    waiting = waiting.len(),
                    dropped,
                    "delivery reports are recorded again; some were dropped while the store could not write, and their messages stay SENT"
                );
            } else {
                tracing::info!(
                    waiting = waiting.len(),
                    "delivery reports are recorded again"
                );
            }
            dropped = 0;
            pause = RETRY_MIN;
        }
        shared.metrics.reports_waiting.set(waiting.len() as i64);
        for ((report, tries), found) in batch.into_iter().zip(found) {
            if found {
                continue;
            }
            if tries + 1 >= MAX_TRIES {
                if report.kind == spool::ReportKind::Noted {
                    // Nothing would have changed: said quietly.
                    tracing::debug!(gateway = %report.gateway, reference = %report.gateway_ref, detail = %report.detail, "report to note for a message we do not know; dropped");
                } else {
                    tracing::warn!(gateway = %report.gateway, reference = %report.gateway_ref, "delivery report for a message we do not know; ignored");
                }
                continue;
            }
            let again = again.clone();
            tokio::spawn(async move {
                tokio::time::sleep(super::retry_delay(tries)).await;
                let _ = again.send((report, tries + 1)).await;
            });
        }
    }
}

/// How soon a batch the store could not write is tried again, doubling up
/// to the maximum while the store keeps failing.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The gateway could not send a message it had accepted: back to the
/// queue after the dialer's backoff, or FAILED when its attempts are spent.
pub(super) async fn result_failed(
    shared: &Shared,
    dialers: &Dialers,
    gateway: String,
    gateway_ref: String,
    detail: String,
) {
    let store = shared.store.clone();
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
    let config = shared.config();
    let (backoff, max) = config
        .dialer(&dialer_name)
        .map(|d| (d.backoff_ms(attempts), d.max_attempts as i64))
        .unwrap_or((30_000, 1));
    tracing::warn!(gateway = %gateway, message = id, reason = %detail, "the gateway could not send a message it had accepted");
    match store
        .write(move |tx| spool::sent_but_failed(tx, id, &detail, backoff, max))
        .await
    {
        Ok(State::ToProcess) => dialers.wake(&dialer_name),
        Ok(_) => {}
        Err(e) => {
            tracing::error!(message = id, error = %e, "cannot record a failed send result")
        }
    }
}
