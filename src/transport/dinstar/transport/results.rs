//! Results and delivery reports: the table of accepted messages awaiting
//! their final word, rebuilt after a restart, fed by the result poller and
//! by pushes, and matched to reports on port, number, ref_id and time. Its
//! own file because this matching is where a report could be credited to
//! the wrong message, and it reads best on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{
    Inner, REPORT_PATIENCE, RESULT_PATIENCE, SETTLED_KEEP, SETTLED_MAX, State, UNMATCHED_KEEP,
    lock, same_number,
};
use crate::transport::Event;
use smsgate_proto::dinstar::wire::{
    DeliverStatus, DeliverStatusQuery, DeliveryOutcome, SmsResult, SmsStatus,
};

impl Inner {
    pub(super) fn track(&self, user_id: u32, port: u8, number: &str) {
        lock(&self.state).pending.insert(
            user_id,
            Pending {
                port,
                number: number.to_string(),
                accepted: Instant::now(),
                resumed: None,
                stage: Stage::AwaitResult,
                seen: Vec::new(),
            },
        );
    }

    /// Rebuilds the table of messages awaiting their final word from what
    /// an earlier run (crashed or stopped) left SENT on this gateway within
    /// [`RESUME_WINDOW`]. They are asked for by user_id again (their ref_id
    /// and send time come with the result, so pushed and polled delivery
    /// reports match them as usual). Entries this run has already made are
    /// kept as they are.
    async fn resume(&self) {
        let rows = std::mem::take(&mut *lock(&self.awaiting));
        if rows.is_empty() {
            return;
        }
        let now = crate::now_ms();
        let (mut resumed, mut skipped) = (0usize, 0usize);
        {
            let mut st = lock(&self.state);
            for row in rows {
                let user_id = row
                    .reference
                    .and_then(|r| u32::try_from(r).ok())
                    .filter(|u| (1..=i32::MAX as u32).contains(u))
                    .filter(|u| row.gateway_ref == u.to_string());
                let port = row
                    .port
                    .filter(|p| *p < self.ports)
                    .and_then(|p| u8::try_from(p).ok());
                let (Some(user_id), Some(port)) = (user_id, port) else {
                    skipped += 1;
                    continue;
                };
                let age = Duration::from_millis(u64::try_from(now - row.sent_at).unwrap_or(0));
                st.pending.entry(user_id).or_insert_with(|| {
                    resumed += 1;
                    Pending {
                        port,
                        number: row.number.clone().unwrap_or_default(),
                        accepted: Instant::now(),
                        resumed: Some(age),
                        stage: Stage::AwaitResult,
                        seen: Vec::new(),
                    }
                });
            }
        }
        if resumed > 0 {
            tracing::info!(gateway = %self.name, count = resumed, "waiting again for the results and delivery reports of messages sent before the restart");
            self.wake_results.notify_one();
        }
        if skipped > 0 {
            tracing::warn!(gateway = %self.name, count = skipped, "SENT messages without a usable user_id or port; they stay SENT");
        }
    }

    /// Applies a send result for one of our user_ids.
    pub(super) fn apply_result(&self, user_id: u32, r: &SmsResult) {
        // No room for the event it may make: left as it is, so the poller
        // asks again, rather than the message forgotten here and its
        // event dropped (the message would stay SENT).
        if self.events.room() == 0 {
            return;
        }
        let mut st = lock(&self.state);
        let Some(p) = st.pending.get_mut(&user_id) else {
            return;
        };
        let port = r.port.unwrap_or(p.port);
        match &r.status {
            SmsStatus::Sending | SmsStatus::Other(_) => {}
            SmsStatus::SentOk => {
                if matches!(p.stage, Stage::AwaitResult) {
                    tracing::debug!(gateway = %self.name, port, user_id, ref_id = ?r.ref_id, "message left the gateway");
                    if let Some(n) = r.number.as_deref().filter(|n| !n.is_empty()) {
                        p.number = n.to_string();
                    }
                    p.port = port;
                    p.stage = Stage::AwaitReport {
                        ref_id: r.ref_id,
                        time: r.time.clone(),
                        since: Instant::now(),
                    };
                    drop(st);
                    self.retry_unmatched();
                }
            }
            SmsStatus::Delivered => {
                settle(&mut st, user_id, r, None);
                drop(st);
                tracing::info!(gateway = %self.name, port, user_id, "message delivered");
                self.emit(Event::Delivered {
                    gateway: self.name.clone(),
                    gateway_ref: user_id.to_string(),
                    delivered: true,
                    detail: "the gateway reports it delivered".into(),
                });
            }
            SmsStatus::Failed => {
                settle(&mut st, user_id, r, None);
                drop(st);
                let detail = format!(
                    "the gateway could not send it on port {port} ({} of {} segments sent)",
                    r.succ_count.unwrap_or(0),
                    r.count.map_or("?".to_string(), |c| c.to_string())
                );
                tracing::warn!(gateway = %self.name, port, user_id, reason = %detail, "message failed after the gateway accepted it");
                self.emit(Event::Result {
                    gateway: self.name.clone(),
                    gateway_ref: user_id.to_string(),
                    ok: false,
                    detail,
                });
            }
        }
    }

    /// A send result without our user_id (the manual's push example has
    /// none): applied when exactly one awaiting message fits its port and
    /// number; otherwise the poller asks by user_id at once.
    pub(super) fn apply_anonymous_result(&self, r: &SmsResult) {
        let candidates: Vec<u32> = {
            let st = lock(&self.state);
            st.pending
                .iter()
                .filter(|(_, p)| matches!(p.stage, Stage::AwaitResult))
                .filter(|(_, p)| r.port.is_none_or(|port| port == p.port))
                .filter(|(_, p)| {
                    r.number
                        .as_deref()
                        .is_some_and(|n| same_number(n, &p.number))
                })
                .map(|(u, _)| *u)
                .collect()
        };
        if let [one] = candidates[..] {
            self.apply_result(one, r);
        } else {
            self.wake_results.notify_one();
        }
    }

    /// Matches a delivery report to a sent message: same port, same number,
    /// same ref_id, and not older than the send. A final report settles
    /// it; a pending one is noted (each status once). One that fits a
    /// message settled within [`SETTLED_KEEP`] is noted as late (each
    /// once), and changes nothing. Returns false when nothing fits.
    pub(super) fn apply_report(&self, r: &DeliverStatus) -> bool {
        if r.ref_id.is_none() || r.number.is_none() {
            return false;
        }
        let found = {
            let st = lock(&self.state);
            st.pending
                .iter()
                .filter_map(|(u, p)| match &p.stage {
                    Stage::AwaitReport { ref_id, time, .. }
                        if fits(r, *ref_id, p.port, &p.number, time.as_deref()) =>
                    {
                        Some((*u, time.clone()))
                    }
                    _ => None,
                })
                // ref_id wraps at 256: the latest send before the report is
                // the one it answers.
                .max_by(|a, b| a.1.cmp(&b.1))
                .map(|(u, _)| u)
        };
        let Some(user_id) = found else {
            return self.late_report(r);
        };
        if self.events.room() == 0 {
            // As unmatched: tried again later (a push) or read again at the
            // next poll, instead of its event dropped.
            return false;
        }
        let port = r.port.map(u32::from);
        let seen = (r.status_code, r.time.clone());
        let delivered = match r.outcome() {
            DeliveryOutcome::Pending | DeliveryOutcome::Unknown => {
                // Read again at every poll until the final one comes: told
                // once.
                let told = {
                    let mut st = lock(&self.state);
                    match st.pending.get_mut(&user_id) {
                        Some(p) if !p.seen.contains(&seen) => {
                            if p.seen.len() >= SEEN_MAX {
                                p.seen.remove(0);
                            }
                            p.seen.push(seen);
                            true
                        }
                        _ => false,
                    }
                };
                if told {
                    tracing::debug!(gateway = %self.name, port = ?port, user_id, status = ?r.status_code, "delivery report: not final yet");
                    self.emit(Event::Noted {
                        gateway: self.name.clone(),
                        gateway_ref: user_id.to_string(),
                        detail: report_words(r),
                    });
                }
                return true;
            }
            DeliveryOutcome::Delivered | DeliveryOutcome::CompletedUnconfirmed => true,
            DeliveryOutcome::Failed => false,
        };
        {
            let mut st = lock(&self.state);
            if let Some(p) = st.pending.remove(&user_id) {
                remember(&mut st, user_id, p, Some(seen));
            }
        }
        tracing::info!(gateway = %self.name, port = ?port, user_id, delivered, "delivery report");
        self.emit(Event::Delivered {
            gateway: self.name.clone(),
            gateway_ref: user_id.to_string(),
            delivered,
            detail: report_words(r),
        });
        true
    }

    /// A report that fits no message awaiting one but a settled one: noted
    /// in its history (once), nothing else. False when none fits.
    fn late_report(&self, r: &DeliverStatus) -> bool {
        let seen = (r.status_code, r.time.clone());
        let mut st = lock(&self.state);
        let Some(s) = st
            .settled
            .iter_mut()
            .filter(|s| s.at.elapsed() < SETTLED_KEEP)
            .filter(|s| fits(r, s.ref_id, s.port, &s.number, s.time.as_deref()))
            .max_by(|a, b| a.time.cmp(&b.time))
        else {
            return false;
        };
        if s.seen.contains(&seen) {
            // Read again (a poll for another message to the same number).
            return true;
        }
        if self.events.room() == 0 {
            return false;
        }
        if s.seen.len() >= SEEN_MAX {
            s.seen.remove(0);
        }
        s.seen.push(seen);
        let user_id = s.user_id;
        drop(st);
        tracing::info!(gateway = %self.name, port = ?r.port, user_id, status = ?r.status_code, "delivery report for a message already settled; noted, nothing changes");
        self.emit(Event::Noted {
            gateway: self.name.clone(),
            gateway_ref: user_id.to_string(),
            detail: format!("late {}", report_words(r)),
        });
        true
    }

    fn retry_unmatched(&self) {
        let reports: Vec<(Instant, DeliverStatus)> =
            std::mem::take(&mut lock(&self.state).unmatched_reports);
        let mut keep = Vec::new();
        for (at, r) in reports {
            if !self.apply_report(&r) && at.elapsed() < UNMATCHED_KEEP {
                keep.push((at, r));
            }
        }
        let mut st = lock(&self.state);
        keep.append(&mut st.unmatched_reports);
        st.unmatched_reports = keep;
    }

    async fn poll_results(&self) {
        let ids: Vec<u32> = {
            let st = lock(&self.state);
            let mut v: Vec<u32> = st
                .pending
                .iter()
                .filter(|(_, p)| matches!(p.stage, Stage::AwaitResult))
                .map(|(u, _)| *u)
                .collect();
            v.sort_unstable();
            v
        };
        if ids.is_empty() {
            return;
        }
        // The client asks 32 user_ids a call (reference §2.7).
        match self.client.query_sms_result(&ids).await {
            Ok(results) => {
                for r in &results {
                    if let Some(u) = r.user_id.filter(|u| ids.contains(u)) {
                        self.apply_result(u, r);
                    }
                }
                self.forget_unknown_resumed(&ids, &results);
            }
            Err(e) => {
                tracing::debug!(gateway = %self.name, error = %e, "cannot read send results now")
            }
        }
    }

    async fn poll_reports(&self) {
        let (numbers, ports, after) = {
            let st = lock(&self.state);
            let mut numbers: Vec<String> = Vec::new();
            let mut ports: Vec<u8> = Vec::new();
            let mut after: Option<String> = None;
            let mut all_timed = true;
            for p in st.pending.values() {
                if let Stage::AwaitReport { time, .. } = &p.stage {
                    if !numbers.contains(&p.number) {
                        numbers.push(p.number.clone());
                    }
                    if !ports.contains(&p.port) {
                        ports.push(p.port);
                    }
                    match time {
                        Some(t) if after.as_ref().is_none_or(|a| t < a) => after = Some(t.clone()),
                        Some(_) => {}
                        None => all_timed = false,
                    }
                }
            }
            (numbers, ports, if all_timed { after } else { None })
        };
        if numbers.is_empty() {
            return;
        }
        let q = DeliverStatusQuery {
            numbers,
            ports,
            time_after: after,
            time_before: None,
        };
        match self.client.query_sms_deliver_status(&q).await {
            Ok(reports) => {
                for r in &reports {
                    self.apply_report(r);
                }
            }
            Err(e) => {
                tracing::debug!(gateway = %self.name, error = %e, "cannot read delivery reports now")
            }
        }
    }

    /// A message sent before a restart that the gateway no longer knows
    /// (its reply to our question by user_id does not have it) will get no
    /// result and no report we could match: stop asking (it stays SENT).
    /// Messages of this run are never dropped this way; they may simply be
    /// too new for the gateway's answer.
    fn forget_unknown_resumed(&self, asked: &[u32], results: &[SmsResult]) {
        let mut st = lock(&self.state);
        let mut gone = 0usize;
        for u in asked {
            if results.iter().any(|r| r.user_id == Some(*u)) {
                continue;
            }
            if st
                .pending
                .get(u)
                .is_some_and(|p| p.resumed.is_some() && matches!(p.stage, Stage::AwaitResult))
            {
                st.pending.remove(u);
                gone += 1;
            }
        }
        drop(st);
        if gone > 0 {
            tracing::warn!(gateway = %self.name, count = gone, "the gateway no longer knows messages sent before the restart; they stay SENT");
        }
    }

    /// Forgets messages whose final word never came (they stay SENT).
    fn expire(&self) {
        let mut st = lock(&self.state);
        let before = st.pending.len();
        st.pending.retain(|_, p| match &p.stage {
            Stage::AwaitResult => p.accepted.elapsed() < RESULT_PATIENCE,
            // A message sent before a restart counts the time it waited
            // then.
            Stage::AwaitReport { since, .. } => {
                since.elapsed() + p.resumed.unwrap_or_default() < REPORT_PATIENCE
            }
        });
        let gone = before - st.pending.len();
        st.unmatched_reports
            .retain(|(at, _)| at.elapsed() < UNMATCHED_KEEP);
        while st
            .settled
            .front()
            .is_some_and(|s| s.at.elapsed() >= SETTLED_KEEP)
        {
            st.settled.pop_front();
        }
        drop(st);
        if gone > 0 {
            tracing::info!(gateway = %self.name, count = gone, "stopped waiting for results or reports of old messages; they stay SENT");
        }
    }

    pub(super) async fn result_loop(self: Arc<Self>, stop: CancellationToken) {
        self.resume().await;
        if !self.after_first_poll(&stop).await {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.result_poll) => {}
                _ = self.wake_results.notified() => {}
            }
            if self.auth_blocked() {
                continue;
            }
            self.poll_results().await;
            self.poll_reports().await;
            self.expire();
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Stage {
    /// Accepted (202); waiting for SENT_OK / FAILED.
    AwaitResult,
    /// Left on the air; waiting for the delivery report of its first segment.
    AwaitReport {
        ref_id: Option<u8>,
        /// Send time in the gateway's clock, "YYYY-MM-DD HH:MM:SS".
        time: Option<String>,
        since: Instant,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    port: u8,
    number: String,
    accepted: Instant,
    /// Rebuilt from the store when the transport started (sent by an
    /// earlier run): how long before the start it was sent.
    resumed: Option<Duration>,
    stage: Stage,
    /// The reports that did not settle it, already told (status, time).
    seen: Vec<Seen>,
}

/// A report as told once: its status code and time.
type Seen = (Option<u8>, Option<String>);

/// The reports told per message, at most (the oldest forgotten first).
const SEEN_MAX: usize = 8;

/// A message whose final word came, remembered for a while
/// ([`SETTLED_KEEP`], [`SETTLED_MAX`]) so a late report still fits it.
#[derive(Debug, Clone)]
pub(super) struct Settled {
    user_id: u32,
    port: u8,
    number: String,
    ref_id: Option<u8>,
    /// Send time in the gateway's clock, as in [`Stage::AwaitReport`].
    time: Option<String>,
    at: Instant,
    /// The reports already told or applied for it.
    seen: Vec<Seen>,
}

/// Moves an awaited message to the settled ones on its send result
/// (delivered, or failed): its ref_id and time from the result when no
/// report was awaited yet.
fn settle(st: &mut State, user_id: u32, r: &SmsResult, seen: Option<Seen>) {
    if let Some(mut p) = st.pending.remove(&user_id) {
        if matches!(p.stage, Stage::AwaitResult) {
            if let Some(n) = r.number.as_deref().filter(|n| !n.is_empty()) {
                p.number = n.to_string();
            }
            p.stage = Stage::AwaitReport {
                ref_id: r.ref_id,
                time: r.time.clone(),
                since: Instant::now(),
            };
        }
        remember(st, user_id, p, seen);
    }
}

/// Keeps a settled message (within [`SETTLED_MAX`], the oldest forgotten).
fn remember(st: &mut State, user_id: u32, p: Pending, seen: Option<Seen>) {
    let (ref_id, time) = match p.stage {
        Stage::AwaitReport { ref_id, time, .. } => (ref_id, time),
        Stage::AwaitResult => (None, None),
    };
    let mut all = p.seen;
    all.extend(seen);
    if st.settled.len() >= SETTLED_MAX {
        st.settled.pop_front();
    }
    st.settled.push_back(Settled {
        user_id,
        port: p.port,
        number: p.number,
        ref_id,
        time,
        at: Instant::now(),
        seen: all,
    });
}

/// Whether a report answers a send: same ref_id, port and number, and not
/// older than the send (`sent`, in the gateway's clock).
fn fits(
    r: &DeliverStatus,
    ref_id: Option<u8>,
    port: u8,
    sent_to: &str,
    sent: Option<&str>,
) -> bool {
    let (Some(rid), Some(number)) = (r.ref_id, r.number.as_deref()) else {
        return false;
    };
    ref_id == Some(rid)
        && r.port.is_none_or(|p| p == port)
        && same_number(number, sent_to)
        && match (sent, r.time.as_deref()) {
            (Some(sent), Some(rep)) => rep >= sent,
            _ => true,
        }
}

/// A delivery report in words, with its TP-Status code.
fn report_words(r: &DeliverStatus) -> String {
    let code = r.status_code.unwrap_or(0);
    match r.outcome() {
        DeliveryOutcome::Delivered => {
            format!("delivery report: received by the handset (status {code})")
        }
        // TP-Status 1-31: the SMSC completed it without the handset's
        // confirmation; counted as delivered and said so.
        DeliveryOutcome::CompletedUnconfirmed => {
            format!("delivery report: completed, reception not confirmed (status {code})")
        }
        // TP-Status 32-63: the SMSC is still trying.
        DeliveryOutcome::Pending => {
            format!(
                "delivery report: not delivered yet, the network is still trying (status {code})"
            )
        }
        DeliveryOutcome::Failed => format!("delivery report: not delivered (status {code})"),
        DeliveryOutcome::Unknown => "delivery report without a status code".to_string(),
    }
}
