//! The do-not-contact list and import records.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::{StoreError, now_ms};

#[derive(Debug, Clone, Serialize)]
pub struct DncrEntry {
    pub key: String,
    /// The dialer it applies to; null for every dialer.
    pub dialer: Option<String>,
    pub written: String,
    pub source: String,
    pub added_at: i64,
}

const UPSERT_SQL: &str = "INSERT INTO dncr (key, dialer, written, source, added_at, import_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
     ON CONFLICT(key, dialer) DO UPDATE SET written = ?3, source = ?4, added_at = ?5, import_id = ?6";

/// Adds (or refreshes) an entry; `dialer` None means every dialer.
/// `import_id` names the upload it came from (none for a keyword or an
/// operator), so a number's consent history can name it.
pub fn upsert(
    tx: &Transaction<'_>,
    key: &str,
    dialer: Option<&str>,
    written: &str,
    source: &str,
    import_id: Option<i64>,
) -> Result<(), StoreError> {
    tx.prepare_cached(UPSERT_SQL)?.execute(params![
        key,
        dialer.unwrap_or(""),
        written,
        source,
        now_ms(),
        import_id
    ])?;
    Ok(())
}

/// One upload's batch of entries: `(key, dialer, written)` each, with one
/// statement and one time for the batch (an import of millions pays for
/// neither per row).
pub fn upsert_batch<'r>(
    tx: &Transaction<'_>,
    rows: impl IntoIterator<Item = (&'r str, Option<&'r str>, &'r str)>,
    source: &str,
    import_id: i64,
) -> Result<u64, StoreError> {
    let mut stmt = tx.prepare_cached(UPSERT_SQL)?;
    let now = now_ms();
    let mut n = 0;
    for (key, dialer, written) in rows {
        stmt.execute(params![
            key,
            dialer.unwrap_or(""),
            written,
            source,
            now,
            import_id
        ])?;
        n += 1;
    }
    Ok(n)
}

/// Who made an import and from which registry, recorded with it.
pub fn describe_import(
    tx: &Transaction<'_>,
    id: i64,
    who: Option<&str>,
    registry: Option<&str>,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE import SET who = ?2, registry = ?3 WHERE id = ?1")?
        .execute(params![id, who, registry])?;
    Ok(())
}

/// An import that put a number on the list, as its consent history shows.
#[derive(Debug, Clone, Serialize)]
pub struct ListedBy {
    pub dialer: Option<String>,
    /// Unix ms.
    pub at: i64,
    /// import | registry | keyword | api
    pub source: String,
    pub import: Option<i64>,
    pub filename: Option<String>,
    pub registry: Option<String>,
    pub who: Option<String>,
}

/// The current entries of a key with the import behind each.
pub fn listed_by(conn: &Connection, key: &str) -> Result<Vec<ListedBy>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.dialer, d.added_at, d.source, d.import_id, i.filename, i.registry, i.who \
         FROM dncr d LEFT JOIN import i ON i.id = d.import_id WHERE d.key = ?1 ORDER BY d.dialer",
    )?;
    let rows = stmt.query_map([key], |r| {
        let dialer: String = r.get(0)?;
        let import: Option<i64> = r.get(3)?;
        let registry: Option<String> = r.get(5)?;
        let source: String = r.get(2)?;
        Ok(ListedBy {
            dialer: (!dialer.is_empty()).then_some(dialer),
            at: r.get(1)?,
            source: match (&registry, import) {
                (Some(_), _) => "registry".to_string(),
                (None, Some(_)) => "import".to_string(),
                (None, None) => source,
            },
            import,
            filename: r.get(4)?,
            registry,
            who: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<DncrEntry> {
    let dialer: String = r.get(1)?;
    Ok(DncrEntry {
        key: r.get(0)?,
        dialer: (!dialer.is_empty()).then_some(dialer),
        written: r.get(2)?,
        source: r.get(3)?,
        added_at: r.get(4)?,
    })
}

/// Entries of one key (for every dialer that lists it).
const BY_KEY_SQL: &str = "SELECT key, dialer, written, source, added_at FROM dncr \
     WHERE key = ?1 AND (?2 IS NULL OR key > ?2) ORDER BY key, dialer LIMIT ?3";
/// A page of all entries, in key order.
const PAGE_SQL: &str = "SELECT key, dialer, written, source, added_at FROM dncr \
     WHERE (?1 IS NULL OR key > ?1) ORDER BY key, dialer LIMIT ?2";

/// Entries for one key (every dialer), or a page of all entries by key.
/// Two statements, not one with `(?1 IS NULL OR key = ?1)`: SQLite cannot
/// seek an index on a condition that may be true for every row, so that
/// form read the whole list for each look-up.
pub fn list(
    conn: &Connection,
    key: Option<&str>,
    after_key: Option<&str>,
    limit: u32,
) -> Result<(Vec<DncrEntry>, Option<String>), StoreError> {
    let limit = limit.clamp(1, 1000) as i64;
    let items = match key {
        Some(key) => conn
            .prepare_cached(BY_KEY_SQL)?
            .query_map(params![key, after_key, limit + 1], entry)?
            .collect::<Result<Vec<_>, _>>()?,
        None => conn
            .prepare_cached(PAGE_SQL)?
            .query_map(params![after_key, limit + 1], entry)?
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(super::page(items, limit, |e| e.key.clone()))
}

/// Removes a key, for one dialer or for all; the number of entries removed.
pub fn remove(tx: &Transaction<'_>, key: &str, dialer: Option<&str>) -> Result<usize, StoreError> {
    Ok(tx
        .prepare_cached("DELETE FROM dncr WHERE key = ?1 AND (?2 IS NULL OR dialer = ?2)")?
        .execute(params![key, dialer])?)
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM dncr", [], |r| r.get(0))?)
}

/// Starts an import record; its counts are filled in at the end.
pub fn begin_import(tx: &Transaction<'_>, kind: &str, filename: &str) -> Result<i64, StoreError> {
    tx.prepare_cached("INSERT INTO import (kind, filename, lines, accepted, created_at) VALUES (?1, ?2, 0, 0, ?3)")?
        .execute(params![kind, filename, now_ms()])?;
    Ok(tx.last_insert_rowid())
}

pub fn finish_import(
    tx: &Transaction<'_>,
    id: i64,
    lines: u64,
    accepted: u64,
) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE import SET lines = ?2, accepted = ?3 WHERE id = ?1")?
        .execute(params![id, lines as i64, accepted as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A look-up by key seeks the primary key; it never reads the list.
    #[test]
    fn a_look_up_by_key_seeks_the_primary_key() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let delete = "DELETE FROM dncr WHERE key = ?1 AND (?2 IS NULL OR dialer = ?2)";
        for sql in [BY_KEY_SQL, delete] {
            let plan = crate::store::query_plan(&s, sql);
            assert!(
                plan.contains("USING PRIMARY KEY (key=?") && !plan.contains("SCAN"),
                "{sql}\n  plan: {plan}"
            );
        }
        s.close();
    }
}
