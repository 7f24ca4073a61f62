//! CSV uploads (bulk messages, DNCR lists) and the DNCR list itself.
//!
//! Uploads are streamed: the body is read by a blocking parser as it
//! arrives and never held whole in memory.

use std::io::BufReader;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::{ApiError, ApiPath, ApiQuery, AppState};
use crate::dialer::DialerError;
use crate::dialer::importer;
use crate::store::dncr;
use smsgate_proto::sms::phone;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    pub filename: Option<String>,
}

type DataStream =
    futures_util::stream::MapErr<axum::body::BodyDataStream, fn(axum::Error) -> std::io::Error>;

/// The request body as a blocking reader, for the parsers.
fn reader(body: Body) -> BufReader<SyncIoBridge<StreamReader<DataStream, bytes::Bytes>>> {
    let to_io: fn(axum::Error) -> std::io::Error = std::io::Error::other;
    let stream: DataStream = body.into_data_stream().map_err(to_io);
    BufReader::with_capacity(64 * 1024, SyncIoBridge::new(StreamReader::new(stream)))
}

fn filename(q: UploadQuery) -> Result<String, ApiError> {
    q.filename.filter(|f| !f.is_empty()).ok_or_else(|| {
        ApiError::bad_request(
            "missing_filename",
            "give the file's name as ?filename=NAME (letters, digits, '.', '-', '_'; at most 64), as in DISCTEST29042014.csv",
        )
    })
}

/// The parsers' signature: a store, the config, the file name, the body.
type Importer<S> = fn(
    &crate::store::Store,
    &crate::config::Config,
    &str,
    BufReader<SyncIoBridge<StreamReader<DataStream, bytes::Bytes>>>,
) -> Result<S, DialerError>;

/// Runs a streaming import on a blocking thread.
async fn run<S: Send + 'static>(
    st: &AppState,
    q: UploadQuery,
    body: Body,
    import: Importer<S>,
) -> Result<S, ApiError> {
    let name = filename(q)?;
    let config = st.shared.config();
    let store = st.shared.store.clone();
    let r = reader(body);
    tokio::task::spawn_blocking(move || import(&store, &config, &name, r))
        .await
        .map_err(|_| ApiError::internal("the import task ended unexpectedly"))?
        .map_err(ApiError::from)
}

pub async fn import_messages(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = filename(q)?;
    let summary = st
        .engine
        .import(name, reader(body))
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

pub async fn import_dncr(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    let summary = run(&st, q, body, importer::import_dncr).await?;
    tracing::info!(import = summary.import_id, file = %summary.filename, entries = summary.entries, "DNCR list imported");
    Ok((StatusCode::CREATED, Json(summary)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DncrQuery {
    pub phone: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
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
    let limit = q.limit.unwrap_or(100);
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
    let removed = st
        .shared
        .store
        .write(move |tx| dncr::remove(tx, &k, dialer.as_deref()))
        .await?;
    if removed == 0 {
        return Err(ApiError::not_found(format!(
            "{phone_written:?} ({key}) is not on the DNCR list"
        )));
    }
    tracing::info!(removed, "DNCR entry removed by an operator");
    Ok(Json(json!({"key": key, "removed": removed})))
}
