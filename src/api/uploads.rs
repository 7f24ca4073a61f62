//! CSV uploads (bulk messages, DNCR lists) and the DNCR list itself.
//!
//! An upload is received whole into a staged file first (`staging`), then
//! parsed and imported from there: never held in memory, and never making
//! the store's writer wait on the network.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::staging::{Staged, Turn, stage};
use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::dialer::DialerError;
use crate::dialer::importer;
use crate::store::{consent, dncr};
use smsgate_proto::sms::phone;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub filename: Option<String>,
}

fn filename(q: UploadQuery) -> Result<String, ApiError> {
    let name = q.filename.filter(|f| !f.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_filename",
            "give the file's name as ?filename=NAME (letters, digits, '.', '-', '_'; at most 64), as in DISCTEST29042014.csv",
        )
    })?;
    // Before the body is received: a misnamed file is refused at once.
    crate::dialer::import::check_file_name(&name).map_err(DialerError::from)?;
    Ok(name)
}

/// Takes an upload's turn and receives its body whole (see `staging`).
async fn receive(st: &AppState, body: Body) -> Result<(Turn, Staged), ApiError> {
    let turn = st.uploads.take()?;
    let config = st.shared.config();
    let staged = stage(
        body,
        &config.daemon.state_dir,
        config.api.upload_idle_timeout,
    )
    .await?;
    Ok((turn, staged))
}

pub async fn import_messages(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = filename(q)?;
    let (_turn, staged) = receive(&st, body).await?;
    let summary = st
        .engine
        .import(name, staged)
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DncrUploadQuery {
    pub filename: Option<String>,
    /// The national do-not-call registry the file is (as `no-llame`):
    /// its numbers' consent history names it as their source.
    pub registry: Option<String>,
}

/// A registry's name: what the consent history shows as the source.
fn registry(r: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(r) = r else { return Ok(None) };
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(ApiError::bad_request(
            "invalid_query",
            "registry must be 1 to 64 letters, digits, '-', '_' or '.', as in no-llame",
        ));
    }
    Ok(Some(r))
}

pub async fn import_dncr(
    State(st): State<AppState>,
    caller: super::Caller,
    ApiQuery(q): ApiQuery<DncrUploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let registry = registry(q.registry)?;
    let name = filename(UploadQuery {
        filename: q.filename,
    })?;
    let (_turn, staged) = receive(&st, body).await?;
    let config = st.shared.config();
    let store = st.shared.store.clone();
    let origin = importer::DncrOrigin {
        who: Some(caller.label()),
        registry,
    };
    let summary = tokio::task::spawn_blocking(move || {
        importer::import_dncr(&store, &config, &name, origin, staged)
    })
    .await
    .map_err(|_| ApiError::internal("the import task ended unexpectedly"))?
    .map_err(ApiError::from)?;
    tracing::info!(import = summary.import_id, file = %summary.filename, registry = ?summary.registry, entries = summary.entries, "DNCR list imported");
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DncrQuery {
    pub phone: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<super::extract::Limit>,
}

pub async fn list_dncr(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<DncrQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let country = st.shared.config().daemon.default_country.clone();
    let key = q.phone.as_deref().map(|p| phone::dncr_key(p, &country));
    if key.as_deref() == Some("") {
        return Err(ApiError::bad_request(
            "invalid_query",
            "phone has no digits",
        ));
    }
    let cursor = q.cursor.filter(|c| !c.is_empty());
    let limit = super::extract::Limit::or_default(q.limit);
    let (items, next) = st
        .shared
        .store
        .read(move |c| dncr::list(c, key.as_deref(), cursor.as_deref(), limit))
        .await?;
    Ok(Json(json!({"items": items, "next": next})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DncrDeleteQuery {
    pub dialer: Option<String>,
}

pub async fn delete_dncr(
    State(st): State<AppState>,
    caller: super::Caller,
    ApiPath(phone_written): ApiPath<String>,
    ApiQuery(q): ApiQuery<DncrDeleteQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let country = st.shared.config().daemon.default_country.clone();
    let key = phone::dncr_key(&phone_written, &country);
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_path",
            "the phone number has no digits",
        ));
    }
    let k = key.clone();
    let dialer = q.dialer.clone();
    let who = caller.label();
    let removed = st
        .shared
        .store
        .write(move |tx| {
            let removed = dncr::remove(tx, &k, dialer.as_deref())?;
            if removed > 0 {
                let dialers: Vec<String> = dialer.into_iter().collect();
                consent::record(
                    tx,
                    &consent::Change {
                        number: &k,
                        action: consent::Action::OptIn,
                        dialers: &dialers,
                        source: "api",
                        who: Some(&who),
                        detail: Some("removed from the DNCR list (DELETE /api/v1/dncr)"),
                        campaign: None,
                        interaction: None,
                    },
                )?;
            }
            Ok(removed)
        })
        .await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "{phone_written:?} ({key}) is not on the DNCR list"
        )));
    }
    tracing::info!(removed, "DNCR entry removed by an operator");
    st.shared
        .metrics
        .consent_changes
        .get_or_create(&crate::metrics::ConsentLabels {
            action: "opt_in",
            source: "api",
        })
        .inc();
    Ok(Json(json!({"key": key, "removed": removed})))
}
