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

/// The newest sequence number ever given (0 before the first event): the
/// purge never deletes the newest event, so this never goes back.
pub fn newest(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM event")?
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
/// kept until it is delivered or dead-lettered, whatever its age, and the
/// newest event is always kept (its seq is where the next one counts
/// from). The oldest events by seq are the oldest in time (one writer
/// appends them), so it reads them by the primary key; should the clock
/// have stepped back, the purge stops at the first event not old enough
/// and goes on once it is.
pub fn purge(tx: &Transaction<'_>, before_ms: i64, limit: usize) -> Result<usize, StoreError> {
    let candidates: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT seq, at FROM event \
             WHERE seq < (SELECT MAX(seq) FROM event) \
             AND seq <= (SELECT COALESCE(MIN(delivered), 9223372036854775807) FROM webhook_outbox) \
             ORDER BY seq LIMIT ?1",
        )?
        .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let Some(last) = candidates
        .iter()
        .take_while(|(_, at)| *at < before_ms)
        .map(|(seq, _)| *seq)
        .last()
    else {
        return Ok(0);
    };
    Ok(tx
        .prepare_cached("DELETE FROM event WHERE seq <= ?1")?
        .execute(params![last])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge drops the oldest events by seq up to the first one not
    /// old enough (a clock stepped back leaves a later `at` behind an
    /// earlier one), keeps the newest whatever its age, and a number is
    /// never given twice.
    #[test]
    fn the_purge_stops_at_the_first_young_event_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let seqs: Vec<i64> = s
            .write_blocking(|tx| {
                (0..5)
                    .map(|_| append(tx, "test", None, None, &serde_json::json!({})))
                    .collect()
            })
            .unwrap();
        let now = crate::now_ms();
        // The third event is "from the future" (the clock stepped back
        // after it was written).
        let third = seqs[2];
        s.write_blocking(move |tx| {
            tx.execute(
                "UPDATE event SET at = ?2 WHERE seq = ?1",
                params![third, now + 3_600_000],
            )?;
            Ok(())
        })
        .unwrap();
        let cutoff = now + 1000;
        assert_eq!(
            s.write_blocking(move |tx| purge(tx, cutoff, 100)).unwrap(),
            2
        );
        assert_eq!(
            s.read_blocking(oldest).unwrap(),
            Some(third),
            "stops at the young one"
        );
        let later = now + 7_200_000;
        assert_eq!(
            s.write_blocking(move |tx| purge(tx, later, 100)).unwrap(),
            2
        );
        assert_eq!(
            s.read_blocking(oldest).unwrap(),
            Some(seqs[4]),
            "the newest stays"
        );
        assert_eq!(s.read_blocking(newest).unwrap(), seqs[4]);
        let next = s
            .write_blocking(|tx| append(tx, "test", None, None, &serde_json::json!({})))
            .unwrap();
        assert_eq!(next, seqs[4] + 1);
    }
}
