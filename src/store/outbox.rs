//! The webhook outbox: each webhook's durable position in the event log
//! (`webhook_outbox`) and the deliveries given up on (`webhook_dead`).
//!
//! A position means: every event up to it was delivered, dead-lettered or
//! not wanted by that webhook. It is written after the fact, so a crash
//! re-sends what was delivered after the last write (at least once). The
//! event purge never passes the lowest position ([`super::events::purge`]).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{StoreError, events, now_ms};

/// A delivery given up on, as the API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub webhook: String,
    pub seq: i64,
    pub kind: String,
    /// The body exactly as it was sent (JSON text).
    pub body: String,
    pub attempts: i64,
    /// Unix ms of the first failed attempt, and of the giving up.
    pub first_at: i64,
    pub dead_at: i64,
    pub last_error: Option<String>,
    pub replayed_at: Option<i64>,
}

/// What a worker knows of a delivery it gives up on.
#[derive(Debug, Clone)]
pub struct NewDeadLetter {
    pub webhook: String,
    pub seq: i64,
    pub kind: String,
    pub body: String,
    pub attempts: i64,
    pub first_at: i64,
    pub last_error: String,
}

/// One webhook's row, for the API.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub webhook: String,
    pub delivered: i64,
    /// Dead letters not replayed yet, and all of them.
    pub dead_open: i64,
    pub dead_total: i64,
}

/// Makes the table hold exactly `names`: a webhook new to it starts at the
/// newest event (it is not sent the history), one no longer configured
/// loses its row (so it no longer holds back the purge). Each webhook's
/// position.
pub fn sync(tx: &Transaction<'_>, names: &[String]) -> Result<Vec<(String, i64)>, StoreError> {
    let existing: Vec<String> = tx
        .prepare_cached("SELECT webhook FROM webhook_outbox")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for gone in existing.iter().filter(|e| !names.contains(e)) {
        tx.prepare_cached("DELETE FROM webhook_outbox WHERE webhook = ?1")?
            .execute([gone])?;
    }
    let newest = events::newest(tx)?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        tx.prepare_cached(
            "INSERT INTO webhook_outbox (webhook, delivered, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (webhook) DO NOTHING",
        )?
        .execute(params![name, newest, now_ms()])?;
        let pos: i64 = tx
            .prepare_cached("SELECT delivered FROM webhook_outbox WHERE webhook = ?1")?
            .query_row([name], |r| r.get(0))?;
        out.push((name.clone(), pos));
    }
    Ok(out)
}

/// Moves a webhook's position forward (never back).
pub fn advance(tx: &Transaction<'_>, webhook: &str, delivered: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE webhook_outbox SET delivered = MAX(delivered, ?2), updated_at = ?3 WHERE webhook = ?1",
    )?
    .execute(params![webhook, delivered, now_ms()])?;
    Ok(())
}

/// Records a delivery given up on; its id.
pub fn bury(tx: &Transaction<'_>, d: &NewDeadLetter) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO webhook_dead (webhook, seq, kind, body, attempts, first_at, dead_at, last_error) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        d.webhook,
        d.seq,
        d.kind,
        d.body,
        d.attempts,
        d.first_at,
        now_ms(),
        d.last_error
    ])?;
    Ok(tx.last_insert_rowid())
}

const DEAD_COLUMNS: &str =
    "id, webhook, seq, kind, body, attempts, first_at, dead_at, last_error, replayed_at";

fn dead_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetter> {
    Ok(DeadLetter {
        id: r.get(0)?,
        webhook: r.get(1)?,
        seq: r.get(2)?,
        kind: r.get(3)?,
        body: r.get(4)?,
        attempts: r.get(5)?,
        first_at: r.get(6)?,
        dead_at: r.get(7)?,
        last_error: r.get(8)?,
        replayed_at: r.get(9)?,
    })
}

/// A webhook's dead letters, newest first, `before_id` as the cursor;
/// only those not replayed yet when `open_only`.
pub fn list(
    conn: &Connection,
    webhook: &str,
    open_only: bool,
    before_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<DeadLetter>, Option<i64>), StoreError> {
    let limit = i64::from(limit.clamp(1, 1000));
    let sql = format!(
        "SELECT {DEAD_COLUMNS} FROM webhook_dead WHERE webhook = ?1 AND id < ?2 {} \
         ORDER BY id DESC LIMIT ?3",
        if open_only {
            "AND replayed_at IS NULL"
        } else {
            ""
        }
    );
    let items = conn
        .prepare_cached(&sql)?
        .query_map(
            params![webhook, before_id.unwrap_or(i64::MAX), limit + 1],
            dead_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::page(items, limit, |d| d.id))
}

/// One dead letter of a webhook.
pub fn get(conn: &Connection, webhook: &str, id: i64) -> Result<Option<DeadLetter>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEAD_COLUMNS} FROM webhook_dead WHERE webhook = ?1 AND id = ?2"
        ))?
        .query_row(params![webhook, id], dead_row)
        .optional()?)
}

/// The oldest dead letters of a webhook not replayed yet, at most `limit`.
pub fn open_oldest(
    conn: &Connection,
    webhook: &str,
    limit: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEAD_COLUMNS} FROM webhook_dead WHERE webhook = ?1 AND replayed_at IS NULL \
             ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![webhook, i64::from(limit)], dead_row)?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Marks a dead letter replayed (its receiver took it again).
pub fn mark_replayed(tx: &Transaction<'_>, webhook: &str, id: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE webhook_dead SET replayed_at = ?3 WHERE webhook = ?1 AND id = ?2")?
        .execute(params![webhook, id, now_ms()])?;
    Ok(())
}

/// Every webhook's row with its dead-letter counts.
pub fn rows(conn: &Connection) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT o.webhook, o.delivered, \
               (SELECT COUNT(*) FROM webhook_dead d WHERE d.webhook = o.webhook AND d.replayed_at IS NULL), \
               (SELECT COUNT(*) FROM webhook_dead d WHERE d.webhook = o.webhook) \
             FROM webhook_outbox o ORDER BY o.webhook",
        )?
        .query_map([], |r| {
            Ok(OutboxRow {
                webhook: r.get(0)?,
                delivered: r.get(1)?,
                dead_open: r.get(2)?,
                dead_total: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn ev(tx: &Transaction<'_>) -> i64 {
        events::append(tx, "test", None, None, &serde_json::json!({})).unwrap()
    }

    /// A new webhook starts at the newest event; the purge keeps what the
    /// slowest webhook still owes and drops it once the position passes;
    /// a removed webhook holds nothing back.
    #[test]
    fn positions_start_at_the_newest_and_hold_back_the_purge() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let first = s.write_blocking(|tx| Ok(ev(tx))).unwrap();
        let pos = s.write_blocking(|tx| sync(tx, &["a".to_string()])).unwrap();
        assert_eq!(pos, [("a".to_string(), first)]);
        let later: Vec<i64> = s
            .write_blocking(|tx| Ok((0..3).map(|_| ev(tx)).collect()))
            .unwrap();
        let far = crate::now_ms() + 1000;
        let gone = s
            .write_blocking(move |tx| events::purge(tx, far, 100))
            .unwrap();
        assert_eq!(gone, 1, "only the event the webhook never owed");
        let keep = later[0];
        s.write_blocking(move |tx| advance(tx, "a", keep)).unwrap();
        s.write_blocking(move |tx| advance(tx, "a", keep - 1))
            .unwrap();
        let rows = s.read_blocking(rows).unwrap();
        assert_eq!(rows[0].delivered, keep, "a position never goes back");
        assert_eq!(
            s.write_blocking(move |tx| events::purge(tx, far, 100))
                .unwrap(),
            1
        );
        s.write_blocking(|tx| sync(tx, &[]).map(|_| ())).unwrap();
        assert_eq!(
            s.write_blocking(move |tx| events::purge(tx, far, 100))
                .unwrap(),
            1,
            "all but the newest, which numbers the next"
        );
        // Re-added, it starts after the newest, purged or not.
        let pos = s.write_blocking(|tx| sync(tx, &["a".to_string()])).unwrap();
        assert_eq!(pos[0].1, later[2]);
    }

    #[test]
    fn dead_letters_are_listed_newest_first_and_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        for seq in 1..=3 {
            s.write_blocking(move |tx| {
                bury(
                    tx,
                    &NewDeadLetter {
                        webhook: "a".into(),
                        seq,
                        kind: "k".into(),
                        body: format!("{{\"seq\":{seq}}}"),
                        attempts: 2,
                        first_at: 1,
                        last_error: "HTTP 500".into(),
                    },
                )
            })
            .unwrap();
        }
        let (page, next) = s.read_blocking(|c| list(c, "a", false, None, 2)).unwrap();
        assert_eq!(page.iter().map(|d| d.seq).collect::<Vec<_>>(), [3, 2]);
        let (rest, end) = s
            .read_blocking(move |c| list(c, "a", false, next, 2))
            .unwrap();
        assert_eq!(rest.len(), 1);
        assert!(end.is_none());
        let id = rest[0].id;
        s.write_blocking(move |tx| mark_replayed(tx, "a", id))
            .unwrap();
        let open = s.read_blocking(|c| open_oldest(c, "a", 10)).unwrap();
        assert_eq!(open.iter().map(|d| d.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(s.read_blocking(|c| get(c, "b", 1)).unwrap().is_none());
    }
}
