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
            "INSERT INTO inbound (gateway, port, source_key, sender, number, recipient, text, sent_at, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(gateway, source_key) DO NOTHING",
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
            now_ms()
        ])?;
    Ok((n == 1).then(|| tx.last_insert_rowid()))
}

/// Newest first, `before_id` as the cursor.
pub fn list(
    conn: &Connection,
    number: Option<&str>,
    before_id: Option<i64>,
    limit: u32,
) -> Result<(Vec<Inbound>, Option<i64>), StoreError> {
    let limit = limit.clamp(1, 1000) as i64;
    let mut stmt = conn.prepare_cached(
        "SELECT id, gateway, port, sender, number, recipient, text, sent_at, received_at, campaign FROM inbound \
         WHERE (?1 IS NULL OR number = ?1 OR sender = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![number, before_id, limit + 1], |r| {
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

/// Where a gateway's inbound mark is kept: `<kind>.incoming_hwm.<gateway>`
/// (Dinstar's highest fetched incoming_sms_id).
pub fn mark_key(gateway_kind: &str, gateway: &str) -> String {
    format!("{gateway_kind}.incoming_hwm.{gateway}")
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
