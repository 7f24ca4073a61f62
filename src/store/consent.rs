//! The consent ledger: every change of a number's consent (an opt-out or
//! opt-in keyword, an operator through the API, a DNCR import or a
//! national registry), with who, when, where it came from and the text
//! received; and the DNCR entries a keyword adds and an opt-in takes back.
//! Each change writes a `consent.changed` event in its transaction.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;
use serde_json::json;

use super::{StoreError, dncr, events, now_ms};

/// The DNCR source of entries an opt-out keyword made; an opt-in removes
/// only these (a registry's or an operator's entries stay).
pub const KEYWORD_SOURCE: &str = "keyword";

/// One change of a number's consent.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The DNCR key (E.164, or the bare digits).
    pub number: &'a str,
    pub action: Action,
    /// The dialers whose lists changed; empty for every dialer.
    pub dialers: &'a [String],
    /// keyword | api | import | registry
    pub source: &'a str,
    /// The customer, a token's name, an import's file.
    pub who: Option<&'a str>,
    /// The text received, the registry's name, the file.
    pub detail: Option<&'a str>,
    /// The campaign of the message that asked, when one did.
    pub campaign: Option<&'a str>,
    pub interaction: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    OptOut,
    OptIn,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::OptOut => "opt_out",
            Action::OptIn => "opt_in",
        }
    }
}

/// Appends a change to the ledger (one row per dialer, or one for every
/// dialer) and its event.
pub fn record(tx: &Transaction<'_>, c: &Change<'_>) -> Result<(), StoreError> {
    let now = now_ms();
    let every = [String::new()];
    let dialers = if c.dialers.is_empty() {
        &every[..]
    } else {
        c.dialers
    };
    for d in dialers {
        tx.prepare_cached(
            "INSERT INTO consent (number, at, action, dialer, source, who, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            c.number,
            now,
            c.action.as_str(),
            d,
            c.source,
            c.who,
            c.detail
        ])?;
    }
    events::append(
        tx,
        "consent.changed",
        c.campaign,
        c.interaction,
        &json!({
            "phone": c.number,
            "action": c.action.as_str(),
            "dialers": c.dialers,
            "source": c.source,
            "who": c.who,
            "detail": c.detail,
            "campaign": c.campaign,
            "interaction": c.interaction,
        }),
    )?;
    Ok(())
}

/// The dialers that ever texted a number (not the built-in reply dialers):
/// whose lists an opt-out puts it on.
pub fn dialers_that_texted(tx: &Transaction<'_>, number: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT DISTINCT dialer FROM message WHERE number = ?1 AND dialer NOT LIKE 'system:%' ORDER BY dialer",
    )?;
    let rows = stmt.query_map([number], |r| r.get(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Puts a number on the lists of `dialers` (every dialer when empty),
/// recording `source` (a keyword, an operator); the dialers whose lists it
/// was not on yet (empty string for the global list). Nothing new where
/// it already was, on that dialer's list or the global one.
pub fn opt_out(
    tx: &Transaction<'_>,
    number: &str,
    written: &str,
    dialers: &[String],
    source: &str,
) -> Result<Vec<String>, StoreError> {
    let every = [String::new()];
    let dialers = if dialers.is_empty() {
        &every[..]
    } else {
        dialers
    };
    let mut added = Vec::new();
    for d in dialers {
        let listed: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM dncr WHERE key = ?1 AND dialer IN ('', ?2))",
            )?
            .query_row(params![number, d], |r| r.get(0))?;
        if !listed {
            dncr::upsert(
                tx,
                number,
                (!d.is_empty()).then_some(d.as_str()),
                written,
                source,
                None,
            )?;
            added.push(d.clone());
        }
    }
    Ok(added)
}

/// The DNCR source of entries a provider's refusal made (Twilio 21610:
/// the recipient replied STOP to the provider).
pub const PROVIDER_SOURCE: &str = "provider";

/// A provider told us `number` has opted out: it goes on the global list,
/// or with `per_dialer` on the lists of the dialers that texted it (the
/// `[inbound] opt_out_scope`), and the change is kept in the ledger with
/// the gateway and the provider's words. The lists it was not on yet.
pub fn provider_opt_out(
    tx: &Transaction<'_>,
    number: &str,
    per_dialer: bool,
    gateway: &str,
    detail: &str,
) -> Result<Vec<String>, StoreError> {
    let dialers = if per_dialer {
        dialers_that_texted(tx, number)?
    } else {
        Vec::new()
    };
    let added = opt_out(tx, number, number, &dialers, PROVIDER_SOURCE)?;
    if !added.is_empty() {
        let lists: Vec<String> = added.iter().filter(|d| !d.is_empty()).cloned().collect();
        record(
            tx,
            &Change {
                number,
                action: Action::OptOut,
                dialers: &lists,
                source: PROVIDER_SOURCE,
                who: Some(gateway),
                detail: Some(detail),
                campaign: None,
                interaction: None,
            },
        )?;
    }
    Ok(added)
}

/// Takes back what opt-out keywords added for a number; the lists it left
/// (empty string for the global one).
pub fn opt_in(tx: &Transaction<'_>, number: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt =
        tx.prepare_cached("DELETE FROM dncr WHERE key = ?1 AND source = ?2 RETURNING dialer")?;
    let rows = stmt.query_map(params![number, KEYWORD_SOURCE], |r| r.get::<_, String>(0))?;
    let mut removed = rows.collect::<Result<Vec<_>, _>>()?;
    removed.sort();
    Ok(removed)
}

/// Takes back an operator's choice for a number: every entry on the
/// dialer's list (all lists when None) but a national registry's, which
/// is the law's list, not the customer's word. Whether any went.
pub fn operator_opt_in(
    tx: &Transaction<'_>,
    number: &str,
    dialer: Option<&str>,
) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "DELETE FROM dncr WHERE key = ?1 AND (?2 IS NULL OR dialer = ?2) \
             AND source NOT LIKE 'registry:%'",
        )?
        .execute(params![number, dialer])?
        > 0)
}

/// One row of a number's consent history.
#[derive(Debug, Clone, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    pub action: String,
    /// The dialer whose list changed; null for every dialer.
    pub dialer: Option<String>,
    pub source: String,
    pub who: Option<String>,
    pub detail: Option<String>,
}

/// A number's consent history, oldest first.
pub fn history(conn: &Connection, number: &str) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, action, dialer, source, who, detail FROM consent WHERE number = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([number], |r| {
        let dialer: String = r.get(3)?;
        Ok(LedgerEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            action: r.get(2)?,
            dialer: (!dialer.is_empty()).then_some(dialer),
            source: r.get(4)?,
            who: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
