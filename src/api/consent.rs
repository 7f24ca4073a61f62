//! A number's consent: `GET /api/v1/consent?phone=` shows its history
//! (every opt-out and opt-in, by keyword, operator, import or registry,
//! with who, when and the text received) and the DNCR entries that list
//! it now; `POST /api/v1/consent` records an operator's opt-out or opt-in
//! (a customer who asked on the phone, say).

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use smsgate_proto::sms::phone;

use super::{ApiError, ApiJson, ApiQuery, AppState, Caller};
use crate::store::consent::{self, Action};
use crate::store::{StoreError, dncr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentQuery {
    pub phone: Option<String>,
}

/// The DNCR key of a number; `None` when it has no digits.
fn key_of(st: &AppState, written: &str) -> Option<String> {
    let country = st.shared.config().daemon.default_country.clone();
    Some(phone::dncr_key(written, &country)).filter(|k| !k.is_empty())
}

async fn describe(
    st: &AppState,
    written: &str,
    key: String,
) -> Result<serde_json::Value, ApiError> {
    let k = key.clone();
    let (ledger, listed) = st
        .shared
        .store
        .read(move |c| Ok((consent::history(c, &k)?, dncr::listed_by(c, &k)?)))
        .await?;
    // Imports write no ledger row per number (a registry holds millions):
    // the entries they made stand in the history as the change they were.
    let mut history: Vec<serde_json::Value> = ledger.iter().map(|e| json!(e)).collect();
    for l in listed.iter().filter(|l| l.import.is_some()) {
        history.push(json!({
            "id": null, "at": l.at, "action": "opt_out", "dialer": l.dialer,
            "source": l.source, "who": l.who,
            "detail": l.registry.as_ref().or(l.filename.as_ref()),
            "import": l.import, "filename": l.filename, "registry": l.registry,
        }));
    }
    history.sort_by_key(|h| h["at"].as_i64().unwrap_or(0));
    Ok(json!({
        "phone": written,
        "key": key,
        "opted_out": !listed.is_empty(),
        "listed": listed,
        "history": history,
    }))
}

pub async fn get(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ConsentQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let Some(written) = q.phone.filter(|p| !p.is_empty()) else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give the number as ?phone=, in any written form",
        ));
    };
    let key = key_of(&st, &written).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            format!("phone {written:?} has no digits: it cannot be a phone number"),
        )
    })?;
    Ok(axum::Json(describe(&st, &written, key).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    pub phone: String,
    pub action: Action,
    /// One dialer's list; every dialer when absent.
    pub dialer: Option<String>,
    /// Why, in the operator's words (kept in the ledger).
    pub note: Option<String>,
}

pub async fn change(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ConsentChange>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let key = key_of(&st, &body.phone).ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_number",
            format!(
                "phone {:?} has no digits: it cannot be a phone number",
                body.phone
            ),
        )
    })?;
    if let Some(d) = &body.dialer {
        if st.shared.config().user_dialer(d).is_none() {
            return Err(ApiError::unprocessable(
                "unknown_dialer",
                format!("no dialer is named {d:?}"),
            ));
        }
    }
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "note must be at most 500 characters",
        ));
    }
    let (k, written, who) = (key.clone(), body.phone.clone(), caller.label());
    let (action, dialer, note) = (body.action, body.dialer.clone(), body.note.clone());
    let changed = st
        .shared
        .store
        .write(move |tx| {
            let dialers: Vec<String> = dialer.iter().cloned().collect();
            let changed = match action {
                Action::OptOut => !consent::opt_out(tx, &k, &written, &dialers, "api")?.is_empty(),
                Action::OptIn => consent::operator_opt_in(tx, &k, dialer.as_deref())?,
            };
            if changed {
                consent::record(
                    tx,
                    &consent::Change {
                        number: &k,
                        action,
                        dialers: &dialers,
                        source: "api",
                        who: Some(&who),
                        detail: note.as_deref(),
                        campaign: None,
                        interaction: None,
                    },
                )?;
            }
            Ok::<_, StoreError>(changed)
        })
        .await?;
    if changed {
        tracing::info!(action = action.as_str(), by = %caller.label(), "consent changed by an operator");
        st.shared
            .metrics
            .consent_changes
            .get_or_create(&crate::metrics::ConsentLabels {
                action: action.as_str(),
                source: "api",
            })
            .inc();
    }
    let mut v = describe(&st, &body.phone, key).await?;
    v["changed"] = json!(changed);
    Ok(axum::Json(v))
}
