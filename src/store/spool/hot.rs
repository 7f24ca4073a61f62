//! The spool's hot path: what the dialers and channels run per message or
//! per turn. Reading a dialer's queue, claiming messages for an attempt
//! (SENDING, with a fresh persistent reference), recording each outcome
//! (SENT, retry, requeue, FAILED, UNKNOWN) and applying results and
//! delivery reports. Its own file because these statements carry the
//! store's invariants (an attempt is on disk before the transport is
//! called; a number on the DNCR list is never sent to) and their index use
//! decides throughput, which `HOT_QUERIES` pins.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::State;
use crate::store::{StoreError, now_ms};

/// A message a dialer may take, as the loader sees it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: i64,
    pub number: Option<String>,
    pub text: String,
    pub priority: i64,
    pub attempts: i64,
    /// The number is on the DNCR list for this dialer (when asked).
    pub listed: bool,
    /// The one channel ("gateway:port") it may go out on: a reply to a
    /// customer leaves by the number the customer wrote to.
    pub pin: Option<String>,
    /// A provider's template (WhatsApp), sent instead of the text.
    pub template: Option<std::sync::Arc<smsgate_proto::whatsapp_rules::MessageTemplate>>,
}

impl Queued {
    /// Where the message stands in its dialer's queue: the loader's order.
    pub fn position(&self) -> (i64, i64) {
        (self.priority, self.id)
    }
}

/// The next messages in state TO_PROCESS of one dialer, lower priority
/// number first, then load order. `after` resumes behind a position the
/// loader reached before (nothing before it is read); `skip` are the
/// messages already in memory. With `dncr_dialer`, each says whether its
/// number is on that dialer's DNCR list, checked in the same read.
pub fn next_to_process(
    conn: &Connection,
    dialer: &str,
    now: i64,
    limit: usize,
    after: Option<(i64, i64)>,
    skip: &std::collections::HashSet<i64>,
    dncr_dialer: Option<&str>,
) -> Result<Vec<Queued>, StoreError> {
    let map = |r: &Row<'_>| {
        Ok(Queued {
            id: r.get(0)?,
            number: r.get(1)?,
            text: r.get(2)?,
            priority: r.get(3)?,
            attempts: r.get(4)?,
            listed: r.get(5)?,
            pin: r.get(6)?,
            template: r
                .get::<_, Option<String>>(7)?
                .and_then(|t| serde_json::from_str(&t).ok())
                .map(std::sync::Arc::new),
        })
    };
    let mut out = Vec::with_capacity(limit);
    let mut keep = |q: Queued| {
        if !skip.contains(&q.id) {
            out.push(q);
        }
        out.len() < limit
    };
    match after {
        Some((priority, id)) => {
            let mut stmt = conn.prepare_cached(NEXT_TO_PROCESS_AFTER_SQL)?;
            let rows = stmt.query_map(
                params![dialer, now, limit as i64, dncr_dialer, priority, id],
                map,
            )?;
            for row in rows {
                if !keep(row?) {
                    break;
                }
            }
        }
        None => {
            let mut stmt = conn.prepare_cached(NEXT_TO_PROCESS_SQL)?;
            let rows = stmt.query_map(
                params![dialer, now, (limit + skip.len()) as i64, dncr_dialer],
                map,
            )?;
            for row in rows {
                if !keep(row?) {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// When the earliest retry of a dialer becomes due, if any is waiting.
pub fn next_retry_at(conn: &Connection, dialer: &str, now: i64) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(NEXT_RETRY_SQL)?
        .query_row(params![dialer, now], |r| r.get(0))?)
}

// `not_before > 0` spelled out lets SQLite use the partial index
// message_retry (a bound parameter proves nothing about it).
const NEXT_RETRY_SQL: &str = "SELECT min(not_before) FROM message \
     WHERE dialer = ?1 AND state = 1 AND not_before > 0 AND not_before > ?2";
const NEXT_TO_PROCESS_SQL: &str = "SELECT id, number, text, priority, attempts, \
       ?4 IS NOT NULL AND EXISTS (SELECT 1 FROM dncr WHERE key = message.number AND dialer IN ('', ?4)), \
       pin_channel, template \
     FROM message \
     WHERE dialer = ?1 AND state = 1 AND not_before <= ?2 \
     ORDER BY priority, id LIMIT ?3";
const NEXT_TO_PROCESS_AFTER_SQL: &str = "SELECT id, number, text, priority, attempts, \
       ?4 IS NOT NULL AND EXISTS (SELECT 1 FROM dncr WHERE key = message.number AND dialer IN ('', ?4)), \
       pin_channel, template \
     FROM message \
     WHERE dialer = ?1 AND state = 1 AND (priority, id) > (?5, ?6) AND not_before <= ?2 \
     ORDER BY priority, id LIMIT ?3";
// Only from SENT: a late or repeated report never moves a message out of
// a final state (DELIVERED after UNDELIVERED changes nothing).
const APPLY_REPORT_SQL: &str = "UPDATE message SET state = ?3, updated_at = ?4, final_at = ?4, \
     error = CASE WHEN ?5 THEN error ELSE ?6 END, report = ?6 \
     WHERE gateway = ?1 AND gateway_ref = ?2 AND state = 4";

/// The queries the dialers run per message or per turn, with the index
/// each must use: a plan that scans the table makes throughput fall with
/// the size of the spool.
#[cfg(test)]
pub(crate) const HOT_QUERIES: &[(&str, &str)] = &[
    (NEXT_RETRY_SQL, "message_retry"),
    (NEXT_TO_PROCESS_SQL, "message_queue"),
    // SQLite's plan names only the row value's first column; the
    // comparison itself is exact (see the store's loader test).
    (
        NEXT_TO_PROCESS_AFTER_SQL,
        "message_queue (dialer=? AND state=? AND priority>?)",
    ),
    (APPLY_REPORT_SQL, "message_gateway_ref"),
    (NOTE_SQL, "message_gateway_ref"),
];

/// A number is blocked when the DNCR list holds it for every dialer ('') or
/// for this one.
pub fn is_blocked(conn: &Connection, key: &str, dialer: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM dncr WHERE key = ?1 AND dialer IN ('', ?2) LIMIT 1")?
        .query_row(params![key, dialer], |_| Ok(()))
        .optional()?
        .is_some())
}

fn set_final(
    tx: &Transaction<'_>,
    id: i64,
    from: State,
    to: State,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let n = tx
        .prepare_cached(
            "UPDATE message SET state = ?3, error = coalesce(?4, error), updated_at = ?5, \
             final_at = CASE WHEN ?6 THEN ?5 ELSE final_at END \
             WHERE id = ?1 AND state = ?2",
        )?
        .execute(params![
            id,
            from.code(),
            to.code(),
            error,
            now,
            to.is_final()
        ])?;
    Ok(n == 1)
}

/// Fails a queued message that can never be sent (its pinned channel is
/// gone from the config); false when it was no longer queued.
pub fn fail_queued(tx: &Transaction<'_>, id: i64, reason: &str) -> Result<bool, StoreError> {
    set_final(tx, id, State::ToProcess, State::Failed, Some(reason))
}

pub fn mark_blocked(tx: &Transaction<'_>, id: i64) -> Result<bool, StoreError> {
    set_final(
        tx,
        id,
        State::ToProcess,
        State::Blocked,
        Some("the number is on the DNCR list"),
    )
}

/// What [`begin_attempts`] decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begun {
    /// Recorded as SENDING: call the transport with this reference. The
    /// attempt row's id goes back with the outcome.
    Attempt { reference: i64, attempt: i64 },
    /// The number went on the DNCR list while the message waited: BLOCKED.
    Blocked,
    /// The message left TO_PROCESS meanwhile (cancelled by an operator).
    Gone,
}

/// [`begin_attempts`] for one message.
pub fn begin_attempt(
    tx: &Transaction<'_>,
    id: i64,
    gateway: &str,
    channel: &str,
    dncr_dialer: Option<&str>,
) -> Result<Begun, StoreError> {
    let begun = begin_attempts(tx, &[id], gateway, channel, dncr_dialer)?;
    Ok(begun.first().copied().unwrap_or(Begun::Gone))
}

/// Records attempts before the transport is called (invariants 1 and 2):
/// each message moves to SENDING with the channel and a fresh reference.
/// The DNCR list is checked again in the same statement, so a number
/// listed after the message was loaded is still never sent to (invariant
/// 4). One answer per id, in order.
pub fn begin_attempts(
    tx: &Transaction<'_>,
    ids: &[i64],
    gateway: &str,
    channel: &str,
    dncr_dialer: Option<&str>,
) -> Result<Vec<Begun>, StoreError> {
    let now = now_ms();
    let mut references = References::read(tx)?;
    let mut out = Vec::with_capacity(ids.len());
    {
        // One statement moves the message, unless it left the queue or its
        // number is listed; only then is it worth asking which.
        let mut take = tx.prepare_cached(
            "UPDATE message SET state = 2, attempts = attempts + 1, gateway = ?2, channel = ?3, \
             reference = ?4, gateway_ref = NULL, updated_at = ?5 \
             WHERE id = ?1 AND state = 1 AND (?6 IS NULL OR number IS NULL OR NOT EXISTS \
               (SELECT 1 FROM dncr WHERE key = message.number AND dialer IN ('', ?6)))",
        )?;
        let mut attempt = tx.prepare_cached(
            "INSERT INTO attempt (message_id, channel, reference, started_at) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for &id in ids {
            let reference = references.next();
            if take.execute(params![id, gateway, channel, reference, now, dncr_dialer])? == 1 {
                attempt.execute(params![id, channel, reference, now])?;
                out.push(Begun::Attempt {
                    reference,
                    attempt: tx.last_insert_rowid(),
                });
            } else {
                references.give_back();
                out.push(not_taken(tx, id, dncr_dialer)?);
            }
        }
    }
    references.write(tx)?;
    Ok(out)
}

/// Why [`begin_attempts`] did not take a message.
fn not_taken(
    tx: &Transaction<'_>,
    id: i64,
    dncr_dialer: Option<&str>,
) -> Result<Begun, StoreError> {
    let row: Option<(i64, Option<String>)> = tx
        .prepare_cached("SELECT state, number FROM message WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let (Some((1, Some(number))), Some(dialer)) = (row, dncr_dialer) {
        if is_blocked(tx, &number, dialer)? {
            mark_blocked(tx, id)?;
            return Ok(Begun::Blocked);
        }
    }
    Ok(Begun::Gone)
}

/// The persistent reference counter: 1 to 2^31-1 (Dinstar's user_id
/// range), then around again; old references are long final by the time
/// it wraps. Read once and written once per batch of attempts.
struct References {
    last: i64,
    changed: bool,
}

impl References {
    const MAX: i64 = (1 << 31) - 1;

    fn read(tx: &Transaction<'_>) -> Result<Self, StoreError> {
        let last: Option<i64> = tx
            .prepare_cached("SELECT value FROM kv WHERE key = 'reference'")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(Self {
            last: last.unwrap_or(0),
            changed: false,
        })
    }

    fn next(&mut self) -> i64 {
        self.last = if (1..Self::MAX).contains(&self.last) {
            self.last + 1
        } else {
            1
        };
        self.changed = true;
        self.last
    }

    /// Returns the reference just taken (its message was not sent).
    fn give_back(&mut self) {
        self.last = if self.last > 1 {
            self.last - 1
        } else {
            Self::MAX
        };
    }

    fn write(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        if self.changed {
            tx.prepare_cached(
                "INSERT INTO kv(key, value) VALUES ('reference', ?1) \
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
            )?
            .execute([self.last])?;
        }
        Ok(())
    }
}

/// Which attempt row an outcome closes: known to the channel that began
/// it; looked up (the message's latest) when settling after a restart.
#[derive(Debug, Clone, Copy)]
pub enum AttemptRow {
    Id(i64),
    Latest,
}

const FINISH_ATTEMPT_SQL: &str = "UPDATE attempt SET finished_at = ?2, outcome = ?3, \
     gateway_ref = ?4, detail = ?5 WHERE id = ?1";
const MARK_SENT_SQL: &str = "UPDATE message SET state = 4, gateway_ref = ?2, sent_at = ?3, \
     updated_at = ?3, error = NULL WHERE id = ?1 AND state = 2";

fn finish_attempt(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    outcome: &str,
    gateway_ref: Option<&str>,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    let now = now_ms();
    match row {
        AttemptRow::Id(attempt) => tx.prepare_cached(FINISH_ATTEMPT_SQL)?.execute(params![
            attempt,
            now,
            outcome,
            gateway_ref,
            detail
        ])?,
        AttemptRow::Latest => tx
            .prepare_cached(
                "UPDATE attempt SET finished_at = ?2, outcome = ?3, gateway_ref = ?4, detail = ?5 \
                 WHERE id = (SELECT max(id) FROM attempt WHERE message_id = ?1)",
            )?
            .execute(params![id, now, outcome, gateway_ref, detail])?,
    };
    Ok(())
}

pub fn mark_sent(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    gateway_ref: &str,
) -> Result<bool, StoreError> {
    let now = now_ms();
    let n = tx
        .prepare_cached(MARK_SENT_SQL)?
        .execute(params![id, gateway_ref, now])?;
    finish_attempt(tx, id, row, "sent", Some(gateway_ref), None)?;
    Ok(n == 1)
}

/// [`mark_sent`] for many messages of one channel: (message id, attempt
/// row, the gateway's reference).
pub fn mark_sent_many(tx: &Transaction<'_>, sent: &[(i64, i64, String)]) -> Result<(), StoreError> {
    let now = now_ms();
    let mut message = tx.prepare_cached(MARK_SENT_SQL)?;
    let mut attempt = tx.prepare_cached(FINISH_ATTEMPT_SQL)?;
    for (id, row, gateway_ref) in sent {
        message.execute(params![id, gateway_ref, now])?;
        attempt.execute(params![row, now, "sent", gateway_ref, None::<&str>])?;
    }
    Ok(())
}

/// A failed attempt: back to the queue after `backoff_ms`, or FAILED when
/// the attempts are used up.
pub fn mark_retry(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    outcome: &str,
    reason: &str,
    backoff_ms: i64,
    max_attempts: i64,
) -> Result<State, StoreError> {
    finish_attempt(tx, id, row, outcome, None, Some(reason))?;
    retry_or_fail(tx, id, State::Sending, reason, backoff_ms, max_attempts)
}

/// Back to the queue after `backoff_ms`, or FAILED when the message's
/// attempts are spent; only from state `from`.
fn retry_or_fail(
    tx: &Transaction<'_>,
    id: i64,
    from: State,
    reason: &str,
    backoff_ms: i64,
    max_attempts: i64,
) -> Result<State, StoreError> {
    let attempts: i64 = tx
        .prepare_cached("SELECT attempts FROM message WHERE id = ?1")?
        .query_row([id], |r| r.get(0))?;
    if attempts >= max_attempts {
        set_final(
            tx,
            id,
            from,
            State::Failed,
            Some(&format!("{reason} (after {attempts} attempts)")),
        )?;
        return Ok(State::Failed);
    }
    let now = now_ms();
    tx.prepare_cached(
        "UPDATE message SET state = 1, not_before = ?2, error = ?3, updated_at = ?4, sent_at = NULL \
         WHERE id = ?1 AND state = ?5",
    )?
    .execute(params![id, now + backoff_ms, reason, now, from.code()])?;
    Ok(State::ToProcess)
}

/// Back to the queue at once, without spending an attempt: the channel was
/// at fault (port unusable), not the message.
pub fn requeue(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    outcome: &str,
    reason: &str,
) -> Result<(), StoreError> {
    finish_attempt(tx, id, row, outcome, None, Some(reason))?;
    tx.prepare_cached(
        "UPDATE message SET state = 1, attempts = max(attempts - 1, 0), error = ?2, updated_at = ?3 \
         WHERE id = ?1 AND state = 2",
    )?
    .execute(params![id, reason, now_ms()])?;
    Ok(())
}

/// Back to the queue, not before `not_before` (unix ms), without spending
/// an attempt: the gateway asked us to wait (a WhatsApp messaging limit).
pub fn defer(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    outcome: &str,
    reason: &str,
    not_before: i64,
) -> Result<(), StoreError> {
    finish_attempt(tx, id, row, outcome, None, Some(reason))?;
    tx.prepare_cached(
        "UPDATE message SET state = 1, attempts = max(attempts - 1, 0), not_before = ?2, \
         error = ?3, updated_at = ?4 WHERE id = ?1 AND state = 2",
    )?
    .execute(params![id, not_before, reason, now_ms()])?;
    Ok(())
}

pub fn mark_failed(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    outcome: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    finish_attempt(tx, id, row, outcome, None, Some(reason))?;
    set_final(tx, id, State::Sending, State::Failed, Some(reason))
}

pub fn mark_unknown(
    tx: &Transaction<'_>,
    id: i64,
    row: AttemptRow,
    reason: &str,
) -> Result<bool, StoreError> {
    finish_attempt(tx, id, row, "unknown", None, Some(reason))?;
    set_final(tx, id, State::Sending, State::Unknown, Some(reason))
}

/// One delivery report, for [`apply_reports`].
#[derive(Debug, Clone)]
pub struct Report {
    pub gateway: String,
    pub gateway_ref: String,
    pub kind: ReportKind,
    /// The report in the gateway's words, with its code.
    pub detail: String,
}

/// What a report says of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    /// Final: it reached the handset (or the SMSC completed it).
    Delivered,
    /// Final: it never will.
    Undelivered,
    /// Not a change of state (the SMSC still trying, a part reported after
    /// its message was settled): kept in the history only, see [`note`].
    Noted,
}

/// Applies delivery reports, in order: whether each is settled (applied,
/// noted, or its message was already final, so it changes nothing but its
/// history). A report that found no message may have overtaken its SENT
/// record; the caller may try it again shortly.
pub fn apply_reports(tx: &Transaction<'_>, reports: &[Report]) -> Result<Vec<bool>, StoreError> {
    let now = now_ms();
    let mut stmt = tx.prepare_cached(APPLY_REPORT_SQL)?;
    let mut found = Vec::with_capacity(reports.len());
    for r in reports {
        let to = match r.kind {
            ReportKind::Delivered => State::Delivered,
            ReportKind::Undelivered => State::Undelivered,
            ReportKind::Noted => {
                found.push(note(tx, &r.gateway, &r.gateway_ref, &r.detail, now)?);
                continue;
            }
        };
        let n = stmt.execute(params![
            r.gateway,
            r.gateway_ref,
            to.code(),
            now,
            to == State::Delivered,
            r.detail
        ])?;
        // A report for a message already final (a repeated or late one) is
        // settled too: nothing to wait for, nothing to change; its words
        // go to the history.
        let settled = n > 0
            || (tx
                .prepare_cached(
                    "SELECT state FROM message WHERE gateway = ?1 AND gateway_ref = ?2",
                )?
                .query_map(params![r.gateway, r.gateway_ref], |row| {
                    row.get::<_, i64>(0)
                })?
                .filter_map(Result::ok)
                .any(|code| State::from_code(code).is_some_and(State::is_final))
                && note(tx, &r.gateway, &r.gateway_ref, &r.detail, now)?);
        found.push(settled);
    }
    Ok(found)
}

// From the message's current state to the same: not a change, so neither
// the counts nor the events (the trigger on `message`) see it. The newest
// message with the reference, whatever its state.
const NOTE_SQL: &str = "INSERT INTO message_history (message_id, at, from_state, state, channel, detail) \
     SELECT id, ?3, state, state, channel, ?4 FROM message \
     WHERE gateway = ?1 AND gateway_ref = ?2 ORDER BY id DESC LIMIT 1";

/// Appends a gateway's report that changes nothing (the SMSC still trying,
/// a late or repeated report after a final state) to the history of the
/// message with that reference, whatever its state, at `now`: from its
/// state to the same, with its channel. False when no message has the
/// reference (nothing is written).
pub fn note(
    tx: &Transaction<'_>,
    gateway: &str,
    gateway_ref: &str,
    detail: &str,
    now: i64,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(NOTE_SQL)?
        .execute(params![gateway, gateway_ref, now, detail])?
        > 0)
}

/// The message a gateway reference belongs to: (id, dialer, attempts).
pub fn find_sent(
    conn: &Connection,
    gateway: &str,
    gateway_ref: &str,
) -> Result<Option<(i64, String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, dialer, attempts FROM message WHERE gateway = ?1 AND gateway_ref = ?2 AND state = 4")?
        .query_row(params![gateway, gateway_ref], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?)
}

/// The gateway accepted a message but then reports it did not leave: back
/// to the queue after `backoff_ms`, or FAILED when the attempts are spent.
pub fn sent_but_failed(
    tx: &Transaction<'_>,
    id: i64,
    reason: &str,
    backoff_ms: i64,
    max_attempts: i64,
) -> Result<State, StoreError> {
    tx.prepare_cached(
        "UPDATE attempt SET outcome = 'failed_after_accept', detail = ?2 \
         WHERE id = (SELECT max(id) FROM attempt WHERE message_id = ?1)",
    )?
    .execute(params![id, reason])?;
    retry_or_fail(tx, id, State::Sent, reason, backoff_ms, max_attempts)
}
