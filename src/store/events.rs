//! The portal's event log: every change the portal is told about, with a
//! sequence number that only rises, written in the transaction of the
//! change it reports (outbound state changes by the `message_state_changed`
//! trigger, the rest by [`append`]). Webhooks and the event stream read it
//! from a position; a purge drops what is older than the retention.

use rusqlite::{Connection, Transaction, params};

use super::{StoreError, now_ms};

/// One event as read back.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    pub kind: String,
    pub campaign: Option<String>,
    pub interaction: Option<i64>,
    pub data: serde_json::Value,
}

/// Appends an event in the caller's transaction; its sequence number.
pub fn append(
    tx: &Transaction<'_>,
    kind: &str,
    campaign: Option<&str>,
    interaction: Option<i64>,
    data: &serde_json::Value,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO event (at, kind, campaign, interaction_id, data) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        now_ms(),
        kind,
        campaign,
        interaction,
        data.to_string()
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The newest sequence number ever given (0 before the first event),
/// purged or not.
pub fn newest(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'event'), 0)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// The oldest event still kept, if any.
pub fn oldest(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT MIN(seq) FROM event")?
        .query_row([], |r| r.get(0))?)
}

/// Events after `seq`, oldest first, at most `limit`.
pub fn after(conn: &Connection, seq: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, kind, campaign, interaction_id, data FROM event \
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![seq, limit as i64], |r| {
        let data: String = r.get(5)?;
        Ok(Event {
            seq: r.get(0)?,
            at: r.get(1)?,
            kind: r.get(2)?,
            campaign: r.get(3)?,
            interaction: r.get(4)?,
            data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Drops events older than `before_ms`, at most `limit` at a time (a
/// purge must not hold the writer for long); how many went. An event a
/// webhook still owes (after the lowest position in `webhook_outbox`) is
/// kept until it is delivered or dead-lettered, whatever its age.
pub fn purge(tx: &Transaction<'_>, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM event WHERE seq IN \
             (SELECT seq FROM event WHERE at < ?1 \
              AND seq <= (SELECT COALESCE(MIN(delivered), 9223372036854775807) FROM webhook_outbox) \
              ORDER BY seq LIMIT ?2)",
        )?
        .execute(params![before_ms, limit as i64])?)
}
