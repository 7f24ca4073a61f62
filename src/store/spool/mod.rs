//! The spool: outbound messages and their states.
//!
//! This file holds the message states and rows, inserting, and the reads
//! and controls of the API and the dashboard (lists, counts, stopping a
//! dialer) and of start-up (what a crash left in SENDING or SENT). The
//! engine's per-message statements are in `hot`, re-exported here.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use super::{StoreError, now_ms};

mod hot;

#[cfg(test)]
pub(crate) use hot::HOT_QUERIES;
pub use hot::{
    AttemptRow, Begun, Queued, Report, ReportKind, apply_reports, begin_attempt, begin_attempts,
    defer, fail_queued, find_sent, is_blocked, mark_blocked, mark_failed, mark_retry, mark_sent,
    mark_sent_many, mark_unknown, next_retry_at, next_to_process, note, requeue, sent_but_failed,
};

/// Message states. The numbers are part of the API and the database; 0, 1
/// and 3 are the seed's and never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    None = 0,
    ToProcess = 1,
    Sending = 2,
    Blocked = 3,
    Sent = 4,
    Delivered = 5,
    Failed = 6,
    Invalid = 7,
    Cancelled = 8,
    Unknown = 9,
    Undelivered = 10,
}

impl State {
    pub const ALL: [State; 11] = [
        State::None,
        State::ToProcess,
        State::Sending,
        State::Blocked,
        State::Sent,
        State::Delivered,
        State::Failed,
        State::Invalid,
        State::Cancelled,
        State::Unknown,
        State::Undelivered,
    ];

    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            State::None => "NONE",
            State::ToProcess => "TO_PROCESS",
            State::Sending => "SENDING",
            State::Blocked => "BLOCKED",
            State::Sent => "SENT",
            State::Delivered => "DELIVERED",
            State::Failed => "FAILED",
            State::Invalid => "INVALID",
            State::Cancelled => "CANCELLED",
            State::Unknown => "UNKNOWN",
            State::Undelivered => "UNDELIVERED",
        }
    }

    /// The state as a metric label (`smsgate_dialer_messages_total{state}`).
    pub fn label(self) -> &'static str {
        match self {
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

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// No further transition is expected from a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Blocked
                | State::Delivered
                | State::Failed
                | State::Invalid
                | State::Cancelled
                | State::Unknown
                | State::Undelivered
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: i64,
    pub dialer: String,
    pub to: String,
    pub number: Option<String>,
    pub text: String,
    pub priority: i64,
    pub state: i64,
    pub state_name: &'static str,
    pub client_id: Option<String>,
    pub import_id: Option<i64>,
    pub encoding: String,
    pub segments: i64,
    pub attempts: i64,
    pub channel: Option<String>,
    pub gateway_ref: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub final_at: Option<i64>,
    /// A provider's template (WhatsApp), sent instead of the text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<smsgate_proto::whatsapp_rules::MessageTemplate>,
}

const COLUMNS: &str = "id, dialer, destination, number, text, priority, state, client_id, import_id, \
    encoding, segments, attempts, channel, gateway_ref, error, created_at, updated_at, sent_at, final_at, \
    template";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Message> {
    let state: i64 = r.get(6)?;
    Ok(Message {
        id: r.get(0)?,
        dialer: r.get(1)?,
        to: r.get(2)?,
        number: r.get(3)?,
        text: r.get(4)?,
        priority: r.get(5)?,
        state,
        state_name: State::from_code(state).map_or("UNRECOGNISED", State::name),
        client_id: r.get(7)?,
        import_id: r.get(8)?,
        encoding: r.get(9)?,
        segments: r.get(10)?,
        attempts: r.get(11)?,
        channel: r.get(12)?,
        gateway_ref: r.get(13)?,
        error: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        sent_at: r.get(17)?,
        final_at: r.get(18)?,
        template: r
            .get::<_, Option<String>>(19)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub dialer: String,
    pub destination: String,
    pub number: Option<String>,
    pub text: String,
    pub priority: i64,
    pub client_id: Option<String>,
    pub import_id: Option<i64>,
    pub encoding: &'static str,
    pub segments: u32,
    pub state: State,
    /// A provider's template, as JSON (see `MessageTemplate`).
    pub template: Option<String>,
}

#[derive(Debug)]
pub enum Inserted {
    New(Message),
    /// The client id was seen before with the same content: the first
    /// message, unchanged. Nothing new will be sent.
    Replayed(Message),
}

/// Inserts a message, idempotently on `client_id`.
pub fn insert(tx: &Transaction<'_>, m: &NewMessage) -> Result<Inserted, StoreError> {
    if let Some(cid) = &m.client_id {
        let existing = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM message WHERE client_id = ?1"
            ))?
            .query_row([cid], from_row)
            .optional()?;
        if let Some(first) = existing {
            let same_template = first
                .template
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok())
                == m.template;
            if first.dialer == m.dialer
                && first.to == m.destination
                && first.text == m.text
                && same_template
            {
                return Ok(Inserted::Replayed(first));
            }
            return Err(StoreError::Conflict(format!(
                "client_id {cid:?} was already used for message {} with a different dialer, number, text or template",
                first.id
            )));
        }
    }
    let id = insert_fast(tx, m, now_ms())?;
    let msg = tx
        .prepare_cached(&format!("SELECT {COLUMNS} FROM message WHERE id = ?1"))?
        .query_row([id], from_row)?;
    Ok(Inserted::New(msg))
}

const INSERT_SQL: &str = "INSERT INTO message (dialer, destination, number, text, priority, state, \
     client_id, import_id, encoding, segments, created_at, updated_at, final_at, template) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13)";

/// Inserts without reading back.
pub fn insert_fast(tx: &Transaction<'_>, m: &NewMessage, now: i64) -> Result<i64, StoreError> {
    let mut stmt = tx.prepare_cached(INSERT_SQL)?;
    insert_with(&mut stmt, m, m.import_id, now)?;
    let id = tx.last_insert_rowid();
    count_new(tx, &m.dialer, m.state, 1)?;
    Ok(id)
}

/// Inserts a message that must leave by one channel (a reply to a
/// customer, on the channel they wrote to) and belongs to an interaction;
/// its id. Its queueing is an event of the interaction (the trigger tells
/// only changes of state).
pub fn insert_pinned(
    tx: &Transaction<'_>,
    m: &NewMessage,
    pin_channel: &str,
    interaction: Option<i64>,
) -> Result<i64, StoreError> {
    let id = insert_fast(tx, m, now_ms())?;
    // Not a change of state: the trigger that keeps the counts, the
    // history and the events does not see it.
    tx.prepare_cached("UPDATE message SET pin_channel = ?2, interaction_id = ?3 WHERE id = ?1")?
        .execute(params![id, pin_channel, interaction])?;
    Ok(id)
}

/// Inserts rows of a bulk import, all with the import's id, through one
/// prepared statement, and adds them to the kept counts once per dialer
/// and state.
pub fn insert_many(
    tx: &Transaction<'_>,
    rows: &[NewMessage],
    import_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(INSERT_SQL)?;
    let mut counts: Vec<(&str, State, i64)> = Vec::new();
    for m in rows {
        insert_with(&mut stmt, m, Some(import_id), now)?;
        match counts
            .iter_mut()
            .find(|(d, s, _)| *s == m.state && *d == m.dialer)
        {
            Some(c) => c.2 += 1,
            None => counts.push((&m.dialer, m.state, 1)),
        }
    }
    for (dialer, state, n) in counts {
        count_new(tx, dialer, state, n)?;
    }
    Ok(())
}

/// Adds new rows to the kept counts (schema 4: its triggers follow
/// updates and deletes; inserts are counted here, in bulk).
fn count_new(tx: &Transaction<'_>, dialer: &str, state: State, n: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO message_count (dialer, state, n) VALUES (?1, ?2, ?3) \
         ON CONFLICT (dialer, state) DO UPDATE SET n = n + ?3",
    )?
    .execute(params![dialer, state.code(), n])?;
    Ok(())
}

fn insert_with(
    stmt: &mut rusqlite::CachedStatement<'_>,
    m: &NewMessage,
    import_id: Option<i64>,
    now: i64,
) -> Result<(), StoreError> {
    let final_at = m.state.is_final().then_some(now);
    stmt.execute(params![
        m.dialer,
        m.destination,
        m.number,
        m.text,
        m.priority,
        m.state.code(),
        m.client_id,
        import_id,
        m.encoding,
        m.segments,
        now,
        final_at,
        m.template,
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: i64) -> Result<Option<Message>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM message WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?)
}

/// One entry of a message's history: its queueing, a change of state, or
/// a gateway's report that changed nothing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    /// Unix ms.
    pub at: i64,
    /// "queued" (the first entry: the message created, in its first
    /// state), "changed" (a change of state) or "noted" (a report that
    /// changed nothing: `from` and `state` are the same).
    pub kind: &'static str,
    /// The state it left; None for the first entry.
    pub from: Option<&'static str>,
    pub state: &'static str,
    /// The channel ("gateway:port") of the attempt, when there is one.
    pub channel: Option<String>,
    /// The report or failure that moved it, or the report noted, in the
    /// gateway's words.
    pub detail: Option<String>,
}

/// A message's history, oldest first: its queueing (not a row: a bulk
/// import writes no history, so it is made here from the message's
/// `created_at`, or its first change's time if that reads earlier, and its
/// first state, the first change's `from`, or its
/// state when it never changed), then every change of state and every
/// report noted. Empty when there is no such message.
pub fn history(conn: &Connection, id: i64) -> Result<Vec<Change>, StoreError> {
    let name = |code: i64| State::from_code(code).map_or("UNKNOWN_STATE", State::name);
    let Some((created_at, state)) = conn
        .prepare_cached("SELECT created_at, state FROM message WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
        .optional()?
    else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT at, from_state, state, channel, detail FROM message_history \
         WHERE message_id = ?1 ORDER BY id",
    )?;
    let rows = stmt
        .query_map([id], |r| {
            let (from, to): (i64, i64) = (r.get(1)?, r.get(2)?);
            Ok((
                from,
                Change {
                    at: r.get(0)?,
                    kind: if from == to { "noted" } else { "changed" },
                    from: Some(name(from)),
                    state: name(to),
                    channel: r.get(3)?,
                    detail: r.get(4)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let first = rows.first().map_or(state, |(from, _)| *from);
    // The trigger's clock (SQLite's julianday, truncated) can read a
    // millisecond behind ours: the queueing never comes after the first
    // change.
    let at = rows
        .first()
        .map_or(created_at, |(_, c)| c.at.min(created_at));
    let mut all = Vec::with_capacity(rows.len() + 1);
    all.push(Change {
        at,
        kind: "queued",
        from: None,
        state: name(first),
        channel: None,
        detail: None,
    });
    all.extend(rows.into_iter().map(|(_, c)| c));
    Ok(all)
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub dialer: Option<String>,
    pub state: Option<State>,
    pub number: Option<String>,
    /// Cursor: list ids strictly below this one (newest first).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Newest first. Returns the page and the cursor of the next one.
pub fn list(conn: &Connection, f: &ListFilter) -> Result<(Vec<Message>, Option<i64>), StoreError> {
    let limit = f.limit.clamp(1, 1000) as i64;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM message \
         WHERE (?1 IS NULL OR dialer = ?1) AND (?2 IS NULL OR state = ?2) \
           AND (?3 IS NULL OR number = ?3 OR destination = ?3) AND (?4 IS NULL OR id < ?4) \
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let rows = stmt.query_map(
        params![
            f.dialer,
            f.state.map(State::code),
            f.number,
            f.before_id,
            limit + 1
        ],
        from_row,
    )?;
    let items = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(super::page(items, limit, |m| m.id))
}

const COUNT_BY_STATE_SQL: &str =
    "SELECT state, sum(n) FROM message_count GROUP BY state HAVING sum(n) > 0";
const DIALER_COUNTS_SQL: &str =
    "SELECT state, n FROM message_count WHERE dialer = ?1 AND n > 0 ORDER BY state";

/// Messages per state, for the status line and the metrics: from the
/// counts the triggers keep (schema 4), a few rows whatever the spool holds.
pub fn count_by_state(conn: &Connection) -> Result<Vec<(State, i64)>, StoreError> {
    state_counts(conn, COUNT_BY_STATE_SQL, [])
}

/// Rows of (state code, count) as states and counts; unknown codes left out.
fn state_counts(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<(State, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (code, n) = row?;
        if let Some(s) = State::from_code(code) {
            out.push((s, n));
        }
    }
    Ok(out)
}

/// A message left in SENDING, for crash reconciliation.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub id: i64,
    pub dialer: String,
    pub gateway: Option<String>,
    pub channel: Option<String>,
    pub reference: Option<i64>,
    /// E.164, as handed to the transport.
    pub number: Option<String>,
    pub text: String,
    /// When its latest attempt began (unix ms).
    pub started_at: Option<i64>,
}

pub fn in_flight(conn: &Connection) -> Result<Vec<InFlight>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.dialer, m.gateway, m.channel, m.reference, m.number, m.text, \
                (SELECT max(a.started_at) FROM attempt a WHERE a.message_id = m.id) \
         FROM message m WHERE m.state = 2 ORDER BY m.id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(InFlight {
            id: r.get(0)?,
            dialer: r.get(1)?,
            gateway: r.get(2)?,
            channel: r.get(3)?,
            reference: r.get(4)?,
            number: r.get(5)?,
            text: r.get(6)?,
            started_at: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A message a gateway accepted that still waits for its final word
/// (state SENT), for a transport rebuilding its table after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAwaiting {
    pub id: i64,
    /// "gateway:port" of the attempt that sent it.
    pub channel: Option<String>,
    /// Our reference of that attempt (Dinstar's user_id).
    pub reference: Option<i64>,
    pub gateway_ref: String,
    /// E.164, as handed to the transport.
    pub number: Option<String>,
    pub sent_at: i64,
}

impl SentAwaiting {
    /// The port of [`channel`](Self::channel), if it has one.
    pub fn port(&self) -> Option<u32> {
        self.channel
            .as_deref()
            .and_then(|c| c.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
    }
}

/// Messages of `gateway` in state SENT since `since_ms` (unix ms), oldest
/// first. A transport calls this once when it starts, so results and
/// delivery reports of messages sent before a restart are still awaited.
pub fn sent_awaiting(
    conn: &Connection,
    gateway: &str,
    since_ms: i64,
) -> Result<Vec<SentAwaiting>, StoreError> {
    // `reference IS NOT NULL` lets SQLite walk the (gateway, reference)
    // index instead of the whole table: every sent message has one.
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, reference, gateway_ref, number, sent_at FROM message \
         WHERE gateway = ?1 AND reference IS NOT NULL AND state = 4 \
           AND gateway_ref IS NOT NULL AND sent_at >= ?2 \
         ORDER BY sent_at, id",
    )?;
    let rows = stmt.query_map(params![gateway, since_ms], |r| {
        Ok(SentAwaiting {
            id: r.get(0)?,
            channel: r.get(1)?,
            reference: r.get(2)?,
            gateway_ref: r.get(3)?,
            number: r.get(4)?,
            sent_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The templates `gateway` sent since `since_ms` (E.164, sent_at): what its
/// WhatsApp messaging limit has used.
pub fn templates_sent(
    conn: &Connection,
    gateway: &str,
    since_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, sent_at FROM message \
         WHERE gateway = ?1 AND template IS NOT NULL AND sent_at >= ?2 AND number IS NOT NULL",
    )?;
    let rows = stmt.query_map(params![gateway, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Counts per state of one dialer (the dashboard, /metrics), from the
/// counts the triggers keep.
pub fn dialer_counts(conn: &Connection, dialer: &str) -> Result<Vec<(State, i64)>, StoreError> {
    state_counts(conn, DIALER_COUNTS_SQL, [dialer])
}

/// Cancels what a dialer has not processed yet (state 0 and 1).
pub fn cancel_pending(tx: &Transaction<'_>, dialer: &str) -> Result<usize, StoreError> {
    let now = now_ms();
    Ok(tx
        .prepare_cached(
            "UPDATE message SET state = 8, updated_at = ?2, final_at = ?2, error = 'cancelled by an operator' \
             WHERE dialer = ?1 AND state IN (0, 1)",
        )?
        .execute(params![dialer, now])?)
}

pub fn dialer_stopped(conn: &Connection, dialer: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT stopped FROM dialer_state WHERE name = ?1")?
        .query_row([dialer], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

pub fn set_dialer_stopped(
    tx: &Transaction<'_>,
    dialer: &str,
    stopped: bool,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO dialer_state(name, stopped, changed_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(name) DO UPDATE SET stopped = ?2, changed_at = ?3",
    )?
    .execute(params![dialer, stopped, now_ms()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_are_the_documented_ones() {
        assert_eq!(State::None.code(), 0);
        assert_eq!(State::ToProcess.code(), 1);
        assert_eq!(State::Blocked.code(), 3);
        assert_eq!(State::Undelivered.code(), 10);
        for s in State::ALL {
            assert_eq!(State::from_code(s.code()), Some(s));
            assert_eq!(State::from_name(s.name()), Some(s));
        }
        assert_eq!(State::from_code(11), None);
    }

    fn new(dialer: &str, state: State) -> NewMessage {
        NewMessage {
            dialer: dialer.into(),
            destination: "099111222".into(),
            number: Some("+59899111222".into()),
            text: "hola".into(),
            priority: 9999,
            client_id: None,
            import_id: None,
            encoding: "gsm7",
            segments: 1,
            state,
            template: None,
        }
    }

    /// The kept counts equal a real count after inserts one by one and in
    /// bulk, state changes (including to the same state), a dialer renamed
    /// and deletes; and reading them never touches the message table.
    #[test]
    fn the_kept_counts_follow_every_change_and_are_read_without_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        s.write_blocking(|tx| {
            insert(tx, &new("a", State::ToProcess))?;
            insert(tx, &new("a", State::Invalid))?;
            let bulk: Vec<NewMessage> = (0..50).map(|_| new("b", State::ToProcess)).collect();
            let import = crate::store::dncr::begin_import(tx, "messages", "T.csv")?;
            insert_many(tx, &bulk, import, 1)?;
            tx.execute(
                "UPDATE message SET state = 2 WHERE dialer = 'b' AND id % 3 = 0",
                [],
            )?;
            tx.execute("UPDATE message SET state = state WHERE dialer = 'b'", [])?;
            tx.execute(
                "UPDATE message SET dialer = 'c' WHERE dialer = 'b' AND id % 5 = 0",
                [],
            )?;
            tx.execute("DELETE FROM message WHERE dialer = 'b' AND id % 7 = 0", [])?;
            Ok(())
        })
        .unwrap();
        let (kept, real) = s
            .read_blocking(|c| {
                let mut kept = Vec::new();
                for d in ["a", "b", "c", "none"] {
                    kept.push((d, dialer_counts(c, d)?));
                }
                let mut real = Vec::new();
                for d in ["a", "b", "c", "none"] {
                    let mut stmt = c.prepare(
                        "SELECT state, count(*) FROM message WHERE dialer = ?1 GROUP BY state ORDER BY state",
                    )?;
                    let rows = stmt
                        .query_map([d], |r| {
                            Ok((State::from_code(r.get(0)?).unwrap(), r.get::<_, i64>(1)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()?;
                    real.push((d, rows));
                }
                Ok((kept, real))
            })
            .unwrap();
        assert_eq!(kept, real);
        let total: i64 = s
            .read_blocking(count_by_state)
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum();
        let rows: i64 = s
            .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM message", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(total, rows);
        for sql in [COUNT_BY_STATE_SQL, DIALER_COUNTS_SQL] {
            let plan = crate::store::query_plan(&s, sql);
            assert!(
                !plan.contains(" message ") && !plan.ends_with(" message"),
                "{plan}"
            );
        }
        s.close();
    }

    /// Every state change lands in the history, with its channel and the
    /// words that moved it, after its queueing; a report arriving after
    /// the final one (here DELIVERED after UNDELIVERED) changes nothing
    /// but is kept in the history, from the final state to the same.
    #[test]
    fn the_history_keeps_every_change_and_a_late_report_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let id = s
            .write_blocking(|tx| {
                let Inserted::New(m) = insert(tx, &new("a", State::ToProcess))? else {
                    unreachable!("a new message")
                };
                tx.execute(
                    "UPDATE message SET state = 2, gateway = 'gw', channel = 'gw:3' WHERE id = ?1",
                    [m.id],
                )?;
                tx.execute(
                    "UPDATE message SET state = 4, gateway_ref = 'r1' WHERE id = ?1",
                    [m.id],
                )?;
                // Not a change of state: not in the history.
                tx.execute("UPDATE message SET attempts = 1 WHERE id = ?1", [m.id])?;
                Ok(m.id)
            })
            .unwrap();
        let report = |kind: ReportKind, detail: &str| Report {
            gateway: "gw".into(),
            gateway_ref: "r1".into(),
            kind,
            detail: detail.into(),
        };
        let undelivered = report(
            ReportKind::Undelivered,
            "delivery report: not delivered (status 70)",
        );
        let found = s
            .write_blocking(move |tx| apply_reports(tx, &[undelivered]))
            .unwrap();
        assert_eq!(found, [true]);
        let late = report(
            ReportKind::Delivered,
            "delivery report: received by the handset",
        );
        let found = s
            .write_blocking(move |tx| apply_reports(tx, &[late]))
            .unwrap();
        // Settled (not waited for again), and the state does not change.
        assert_eq!(found, [true], "a report for a final message is settled");
        let (m, h) = s
            .read_blocking(move |c| Ok((get(c, id)?.unwrap(), history(c, id)?)))
            .unwrap();
        assert_eq!(m.state_name, "UNDELIVERED");
        let steps: Vec<(&str, Option<&str>, &str)> =
            h.iter().map(|c| (c.kind, c.from, c.state)).collect();
        assert_eq!(
            steps,
            [
                ("queued", None, "TO_PROCESS"),
                ("changed", Some("TO_PROCESS"), "SENDING"),
                ("changed", Some("SENDING"), "SENT"),
                ("changed", Some("SENT"), "UNDELIVERED"),
                ("noted", Some("UNDELIVERED"), "UNDELIVERED"),
            ]
        );
        assert!(h[0].at <= m.created_at && h[0].at >= m.created_at - 1000);
        assert_eq!(h[0].channel, None);
        assert!(h[1..].iter().all(|c| c.channel.as_deref() == Some("gw:3")));
        assert_eq!(
            h[3].detail.as_deref(),
            Some("delivery report: not delivered (status 70)")
        );
        assert_eq!(
            h[4].detail.as_deref(),
            Some("delivery report: received by the handset")
        );
        assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(h[1].at >= m.created_at - 1000, "{h:?} {m:?}");
        s.close();
    }

    /// A message that never changed state has its queueing alone, in the
    /// state it was created in (a bulk import writes no history row); one
    /// that does not exist has no history.
    #[test]
    fn the_queueing_is_the_first_entry_even_without_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let ids = s
            .write_blocking(|tx| {
                let import = crate::store::dncr::begin_import(tx, "messages", "T.csv")?;
                insert_many(tx, &[new("a", State::ToProcess)], import, 1234)?;
                let bulk = tx.last_insert_rowid();
                let invalid = insert_fast(tx, &new("a", State::Invalid), 5678)?;
                Ok((bulk, invalid))
            })
            .unwrap();
        let (bulk, invalid, none) = s
            .read_blocking(move |c| {
                let rows: i64 =
                    c.query_row("SELECT count(*) FROM message_history", [], |r| r.get(0))?;
                assert_eq!(rows, 0, "no row is written at insert");
                Ok((history(c, ids.0)?, history(c, ids.1)?, history(c, 999)?))
            })
            .unwrap();
        let queued = |at: i64, state: &'static str| Change {
            at,
            kind: "queued",
            from: None,
            state,
            channel: None,
            detail: None,
        };
        assert_eq!(bulk, [queued(1234, "TO_PROCESS")]);
        assert_eq!(invalid, [queued(5678, "INVALID")]);
        assert!(none.is_empty());
        s.close();
    }

    /// A noted report goes to the history of the message with its
    /// reference, whatever its state, from that state to the same, with
    /// its channel: the state, the kept counts and the event log do not
    /// move. A reference no message has adds nothing.
    #[test]
    fn a_note_never_changes_the_state_and_an_unknown_reference_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let id = s
            .write_blocking(|tx| {
                let Inserted::New(m) = insert(tx, &new("a", State::ToProcess))? else {
                    unreachable!("a new message")
                };
                tx.execute(
                    "UPDATE message SET state = 4, gateway = 'gw', channel = 'gw:1', \
                     gateway_ref = 'r9' WHERE id = ?1",
                    [m.id],
                )?;
                Ok(m.id)
            })
            .unwrap();
        let snapshot = move |c: &Connection| -> Result<_, StoreError> {
            let events: i64 = c.query_row("SELECT count(*) FROM event", [], |r| r.get(0))?;
            Ok((
                get(c, id)?.unwrap().state_name,
                dialer_counts(c, "a")?,
                events,
            ))
        };
        let before = s.read_blocking(snapshot).unwrap();
        let noted = |gateway_ref: &str, detail: &str| Report {
            gateway: "gw".into(),
            gateway_ref: gateway_ref.into(),
            kind: ReportKind::Noted,
            detail: detail.into(),
        };
        let reports = [
            noted("r9", "delivery report: pending (status 48)"),
            noted("nobody", "delivery report: pending (status 33)"),
            noted("r9", "delivery report: pending (status 49)"),
        ];
        let found = s
            .write_blocking(move |tx| apply_reports(tx, &reports))
            .unwrap();
        assert_eq!(found, [true, false, true]);
        assert_eq!(
            s.read_blocking(snapshot).unwrap(),
            before,
            "the same state, kept counts and events"
        );
        assert_eq!(before.0, "SENT");
        assert_eq!(before.1, [(State::Sent, 1)]);
        // Directly too, on a final message.
        s.write_blocking(move |tx| {
            tx.execute("UPDATE message SET state = 5 WHERE id = ?1", [id])?;
            assert!(note(tx, "gw", "r9", "late: status 70", 42)?);
            assert!(!note(tx, "other", "r9", "not ours", 42)?);
            Ok(())
        })
        .unwrap();
        let h = s.read_blocking(move |c| history(c, id)).unwrap();
        let steps: Vec<(&str, Option<&str>, &str, Option<&str>)> = h
            .iter()
            .map(|c| (c.kind, c.from, c.state, c.detail.as_deref()))
            .collect();
        assert_eq!(
            steps,
            [
                ("queued", None, "TO_PROCESS", None),
                ("changed", Some("TO_PROCESS"), "SENT", None),
                (
                    "noted",
                    Some("SENT"),
                    "SENT",
                    Some("delivery report: pending (status 48)")
                ),
                (
                    "noted",
                    Some("SENT"),
                    "SENT",
                    Some("delivery report: pending (status 49)")
                ),
                ("changed", Some("SENT"), "DELIVERED", None),
                (
                    "noted",
                    Some("DELIVERED"),
                    "DELIVERED",
                    Some("late: status 70")
                ),
            ]
        );
        assert!(h[2..4].iter().all(|c| c.channel.as_deref() == Some("gw:1")));
        assert_eq!(h[5].at, 42);
        let after = s.read_blocking(snapshot).unwrap();
        assert_eq!(
            after.2,
            before.2 + 1,
            "only the change to DELIVERED is an event"
        );
        let unknown: i64 = s
            .read_blocking(|c| {
                Ok(c.query_row(
                    "SELECT count(*) FROM message_history WHERE detail LIKE '%33%' OR detail = 'not ours'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(unknown, 0);
        s.close();
    }
}
