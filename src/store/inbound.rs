//! Received messages.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{StoreError, now_ms};

#[derive(Debug, Clone)]
pub struct NewInbound {
    pub gateway: String,
    pub port: Option<u32>,
    /// The gateway's own identity of the message; the same message seen by
    /// push and by poll has the same key and is stored once.
    pub source_key: String,
    pub sender: String,
    pub number: Option<String>,
    pub recipient: Option<String>,
    pub text: String,
    pub sent_at: Option<String>,
    /// The campaign it was routed to; None: unrouted.
    pub campaign: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Inbound {
    pub id: i64,
    pub gateway: String,
    pub port: Option<u32>,
    pub sender: String,
    pub number: Option<String>,
    pub recipient: Option<String>,
    pub text: String,
    pub sent_at: Option<String>,
    pub received_at: i64,
    pub campaign: Option<String>,
}

/// Stores a received message; None when it was stored before.
pub fn insert(tx: &Transaction<'_>, m: &NewInbound) -> Result<Option<i64>, StoreError> {
    let n = tx
        .prepare_cached(
            "INSERT INTO inbound (gateway, port, source_key, sender, number, recipient, text, sent_at, received_at, campaign) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT(gateway, source_key) DO NOTHING",
        )?
        .execute(params![
            m.gateway,
            m.port,
            m.source_key,
            m.sender,
            m.number,
            m.recipient,
            m.text,
            m.sent_at,
            now_ms(),
            m.campaign,
        ])?;
    if n == 1 {
        // A campaign's received count, kept so its dashboard never counts
        // the table.
        let key = match &m.campaign {
            Some(c) => received_key(c),
            None => UNROUTED_KEY.to_string(),
        };
        tx.prepare_cached(
            "INSERT INTO kv (key, value) VALUES (?1, 1) ON CONFLICT(key) DO UPDATE SET value = value + 1",
        )?
        .execute([key])?;
    }
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

/// Where a campaign's count of received messages is kept.
pub fn received_key(campaign: &str) -> String {
    format!("campaign.received.{campaign}")
}

/// Where the count of received messages no campaign took is kept.
pub const UNROUTED_KEY: &str = "inbound.unrouted";

/// The received counts of these campaigns, and of unrouted messages.
pub fn received_counts(
    conn: &Connection,
    campaigns: &[String],
) -> Result<(Vec<i64>, i64), StoreError> {
    let each = campaigns
        .iter()
        .map(|c| kv_get(conn, &received_key(c)).map(|v| v.unwrap_or(0)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((each, kv_get(conn, UNROUTED_KEY)?.unwrap_or(0)))
}

/// Which received messages a list shows; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct InboundFilter {
    pub gateway: Option<String>,
    pub port: Option<u32>,
    /// The sender's number, E.164.
    pub number: Option<String>,
    /// The sender as the gateway wrote it (an alphanumeric sender has no
    /// number).
    pub sender: Option<String>,
    pub campaign: Option<String>,
    /// Only those no campaign took (true), or only those one did (false).
    pub unrouted: Option<bool>,
    /// Received at or after, unix ms.
    pub from_ms: Option<i64>,
    /// Received before, unix ms.
    pub to_ms: Option<i64>,
    /// The page's cursor: ids below it.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// Newest first, `before_id` as the cursor. The statement holds only the
/// conditions asked for, so a number or a time range seeks its index
/// rather than reading the table (`?1 IS NULL OR ...` would read it all).
pub fn list(
    conn: &Connection,
    f: &InboundFilter,
) -> Result<(Vec<Inbound>, Option<i64>), StoreError> {
    let limit = i64::from(f.limit.clamp(1, 1000));
    let (sql, args) = select(f, limit);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(Inbound {
            id: r.get(0)?,
            gateway: r.get(1)?,
            port: r.get(2)?,
            sender: r.get(3)?,
            number: r.get(4)?,
            recipient: r.get(5)?,
            text: r.get(6)?,
            sent_at: r.get(7)?,
            received_at: r.get(8)?,
            campaign: r.get(9)?,
        })
    })?;
    let items = rows.collect::<Result<Vec<_>, _>>()?;
    Ok(super::page(items, limit, |m| m.id))
}

/// The statement for a filter, and its arguments.
fn select(f: &InboundFilter, limit: i64) -> (String, Vec<rusqlite::types::Value>) {
    let mut sql = String::from(
        "SELECT id, gateway, port, sender, number, recipient, text, sent_at, received_at, campaign \
         FROM inbound WHERE 1",
    );
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, cond: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(g) = &f.gateway {
        arg(&mut sql, " AND gateway = ?", g.clone().into());
    }
    if let Some(p) = f.port {
        arg(&mut sql, " AND port = ?", i64::from(p).into());
    }
    if let Some(n) = &f.number {
        arg(&mut sql, " AND number = ?", n.clone().into());
    }
    if let Some(s) = &f.sender {
        arg(&mut sql, " AND sender = ?", s.clone().into());
    }
    if let Some(c) = &f.campaign {
        arg(&mut sql, " AND campaign = ?", c.clone().into());
    }
    match f.unrouted {
        Some(true) => sql.push_str(" AND campaign IS NULL"),
        Some(false) => sql.push_str(" AND campaign IS NOT NULL"),
        None => {}
    }
    if let Some(t) = f.from_ms {
        arg(&mut sql, " AND received_at >= ?", t.into());
    }
    if let Some(t) = f.to_ms {
        arg(&mut sql, " AND received_at < ?", t.into());
    }
    if let Some(b) = f.before_id {
        arg(&mut sql, " AND id < ?", b.into());
    }
    arg(&mut sql, " ORDER BY id DESC LIMIT ?", (limit + 1).into());
    (sql, args)
}

/// Where a gateway's inbound mark is kept: `<kind>.incoming_hwm.<gateway>`
/// (Dinstar's highest fetched incoming_sms_id).
pub fn mark_key(gateway_kind: &str, gateway: &str) -> String {
    format!("{gateway_kind}.incoming_hwm.{gateway}")
}

/// Each customer's last message to `gateway` since `since_ms` (E.164,
/// unix ms): the WhatsApp windows still open at a start.
pub fn last_by_number(
    conn: &Connection,
    gateway: &str,
    since_ms: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT number, max(received_at) FROM inbound \
         WHERE gateway = ?1 AND received_at >= ?2 AND number IS NOT NULL GROUP BY number",
    )?;
    let rows = stmt.query_map(params![gateway, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A persistent integer (counters, high-water marks).
pub fn kv_get(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Raises a high-water mark; never lowers it.
pub fn kv_raise(tx: &Transaction<'_>, key: &str, value: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO kv(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = max(value, ?2)",
    )?
    .execute(params![key, value])?;
    Ok(())
}

/// Which of `source_keys` are not stored for `gateway`. A poller raises its
/// high-water mark only past messages that are on disk, so a message the
/// engine failed to store is fetched again.
pub fn missing(
    conn: &Connection,
    gateway: &str,
    source_keys: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT 1 FROM inbound WHERE gateway = ?1 AND source_key = ?2")?;
    let mut out = Vec::new();
    for k in source_keys {
        if !stmt.exists(params![gateway, k])? {
            out.push(k.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list by sender, number or time seeks an index; none reads the
    /// whole table.
    #[test]
    fn the_inbound_lists_seek_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let cases = [
            (
                InboundFilter {
                    number: Some("+59899111222".into()),
                    ..Default::default()
                },
                "inbound_number",
            ),
            (
                InboundFilter {
                    sender: Some("BANCO".into()),
                    port: Some(1),
                    ..Default::default()
                },
                "inbound_sender",
            ),
            (
                InboundFilter {
                    from_ms: Some(1),
                    to_ms: Some(2),
                    ..Default::default()
                },
                "inbound_received",
            ),
        ];
        for (f, index) in cases {
            let (sql, _) = select(&f, 100);
            let plan = crate::store::query_plan(&s, &sql);
            assert!(plan.contains(index), "{sql}\n  wants {index}, plan: {plan}");
            assert!(!plan.contains("SCAN inbound"), "{sql}\n  plan: {plan}");
        }
        s.close();
    }
}
