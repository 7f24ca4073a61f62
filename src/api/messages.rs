//! Messages: single sends (the seed's "Envío de mensaje único"), one
//! message, and lists.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState};
use crate::config::{MAX_PRIORITY, MIN_PRIORITY};
use crate::store::spool::{self, Inserted, ListFilter, NewMessage, State as MsgState};
use smsgate_proto::sms::phone;

pub use smsgate_proto::sms::MAX_SEGMENTS;
const MAX_CLIENT_ID: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub dialer: String,
    pub to: String,
    pub text: String,
    pub priority: Option<i64>,
    pub client_id: Option<String>,
}

pub async fn send(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let config = st.shared.config();
    let Some(dialer) = config.dialer(&req.dialer) else {
        let known: Vec<&str> = config.dialers.iter().map(|d| d.name.as_str()).collect();
        return Err(ApiError::unprocessable(
            "unknown_dialer",
            format!(
                "no dialer is named {:?}; configured dialers: {}",
                req.dialer,
                known.join(", ")
            ),
        ));
    };
    if req.text.is_empty() {
        return Err(ApiError::unprocessable("empty_text", "the text is empty"));
    }
    let plan = smsgate_proto::sms::plan(&req.text);
    if plan.segments > MAX_SEGMENTS {
        return Err(ApiError::unprocessable(
            "text_too_long",
            format!(
                "the text needs {} SMS parts ({}); at most {MAX_SEGMENTS} are sent (1530 GSM-7 or 670 UCS-2 characters)",
                plan.segments,
                plan.encoding.as_str()
            ),
        ));
    }
    // A Dinstar gateway takes at most 670 characters whatever the encoding
    // (reference §5): refuse now rather than fail the message later.
    if let Some((max, gateway)) = config.text_limit(dialer) {
        let n = smsgate_proto::dinstar::wire::text_length(&req.text);
        if n > max {
            return Err(ApiError::unprocessable(
                "text_too_long",
                format!(
                    "the text is {n} characters long; dialer {:?} sends through the Dinstar gateway {gateway:?}, which takes at most {max}",
                    dialer.name
                ),
            ));
        }
    }
    let priority = req.priority.unwrap_or(dialer.priority);
    if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(ApiError::unprocessable(
            "bad_priority",
            format!(
                "priority must be between {MIN_PRIORITY} (urgent) and {MAX_PRIORITY} (routine), found {priority}"
            ),
        ));
    }
    if let Some(cid) = &req.client_id {
        if cid.is_empty() || cid.len() > MAX_CLIENT_ID || cid.chars().any(char::is_control) {
            return Err(ApiError::unprocessable(
                "bad_client_id",
                format!("client_id must be 1 to {MAX_CLIENT_ID} printable characters"),
            ));
        }
    }
    let number = phone::normalise(&req.to, &config.daemon.default_country).map_err(|e| {
        ApiError::unprocessable(
            "invalid_number",
            format!("{:?} cannot be a phone number: {e}", req.to),
        )
    })?;
    let new = NewMessage {
        dialer: dialer.name.clone(),
        destination: req.to.trim().to_string(),
        number: Some(number.into_string()),
        text: req.text,
        priority,
        client_id: req.client_id,
        import_id: None,
        encoding: plan.encoding.as_str(),
        segments: plan.segments as u32,
        state: MsgState::ToProcess,
    };
    let inserted = st
        .shared
        .store
        .write(move |tx| spool::insert(tx, &new))
        .await;
    let (msg, replayed) = match inserted {
        Ok(Inserted::New(m)) => (m, false),
        Ok(Inserted::Replayed(m)) => (m, true),
        Err(crate::store::StoreError::Conflict(detail)) => {
            return Err(ApiError::conflict("client_id_reused", detail));
        }
        Err(e) => return Err(e.into()),
    };
    if !replayed {
        st.engine.wake(&msg.dialer);
    }
    let mut body = json!(msg);
    body["replayed"] = json!(replayed);
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

pub async fn get(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let msg = st.shared.store.read(move |c| spool::get(c, id)).await?;
    match msg {
        Some(m) => Ok(axum::Json(json!(m))),
        None => Err(ApiError::not_found(format!("no message has id {id}"))),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub dialer: Option<String>,
    /// A state code (1) or name (TO_PROCESS).
    pub state: Option<String>,
    /// A number in any written form.
    pub number: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .and_then(MsgState::from_code)
                .or_else(|| MsgState::from_name(s))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        format!("state {s:?} is neither a state code (0 to 10) nor a state name"),
                    )
                })?,
        ),
    };
    let before_id = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                "cursor must be the `next` value of a previous page",
            )
        })?),
    };
    let country = st.shared.config().daemon.default_country.clone();
    let number = q.number.map(|n| {
        phone::normalise(&n, &country)
            .map(|p| p.into_string())
            .unwrap_or(n)
    });
    let filter = ListFilter {
        dialer: q.dialer,
        state,
        number,
        before_id,
        limit: q.limit.unwrap_or(100),
    };
    let (items, next) = st
        .shared
        .store
        .read(move |c| spool::list(c, &filter))
        .await?;
    Ok(axum::Json(
        json!({"items": items, "next": next.map(|n| n.to_string())}),
    ))
}
