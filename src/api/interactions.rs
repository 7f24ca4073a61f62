//! Conversations (the seed's "Grabaciones"): `GET /api/v1/interactions`
//! searches them by start time, origin number, campaigns and agents;
//! `GET /api/v1/interactions/{id}` shows one with its messages;
//! `.../download` writes it out as text, JSON or spreadsheet-safe CSV;
//! `POST .../close` closes it.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smsgate_proto::recording::{Line, Recording};
use smsgate_proto::sms::phone;

use super::{ApiError, ApiPath, ApiQuery, AppState, Caller};
use crate::store::interactions::{self, ConversationMessage, InteractionFilter, Summary};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InteractionsQuery {
    /// RFC 3339; started at or after.
    pub from: Option<String>,
    /// RFC 3339; started before.
    pub to: Option<String>,
    /// The customer's number (the seed's "origen"), in any written form.
    pub origin: Option<String>,
    /// The same as `origin` (the agent inbox's word).
    pub customer: Option<String>,
    /// One campaign, or several separated by commas.
    pub campaign: Option<String>,
    /// One agent id, or several separated by commas.
    pub agent: Option<String>,
    /// Only open (true) or only closed (false) interactions.
    pub open: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

fn list_of(v: Option<String>) -> Vec<String> {
    v.map(|v| {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
    .unwrap_or_default()
}

pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InteractionsQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let from_ms = super::inbound::instant("from", q.from.as_deref())?;
    let to_ms = super::inbound::instant("to", q.to.as_deref())?;
    let before_id = super::extract::id_cursor(q.cursor.as_deref())?;
    let country = st.shared.config().daemon.default_country.clone();
    let origin = match (
        q.origin.filter(|o| !o.is_empty()),
        q.customer.filter(|c| !c.is_empty()),
    ) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "origin and customer are the same filter; give one",
            ));
        }
        (a, b) => a.or(b),
    };
    // Customers are kept in E.164; an alphanumeric sender as written.
    let customer = origin.map(|o| match phone::normalise(&o, &country) {
        Ok(e164) => e164.into_string(),
        Err(_) => o,
    });
    let filter = InteractionFilter {
        from_ms,
        to_ms,
        customer,
        campaigns: list_of(q.campaign),
        agents: list_of(q.agent),
        open: q.open,
        before_id,
        limit: q.limit.unwrap_or(100),
    };
    let (items, next) = st
        .shared
        .store
        .read(move |c| interactions::list(c, &filter))
        .await?;
    Ok(axum::Json(
        json!({"items": items, "next": next.map(|n| n.to_string())}),
    ))
}

async fn read(st: &AppState, id: i64) -> Result<(Summary, Vec<ConversationMessage>), ApiError> {
    st.shared
        .store
        .read(move |c| interactions::get(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no interaction {id}")))
}

pub async fn get(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (summary, messages) = read(&st, id).await?;
    let gateway = summary
        .channel
        .rsplit_once(':')
        .map_or(summary.channel.as_str(), |(g, _)| g);
    // For the agent: whether free text can still go, or only a template.
    let window = st.engine.window(gateway, &summary.customer);
    let mut v = json!(summary);
    v["messages"] = json!(messages);
    if let Some(w) = window {
        v["whatsapp_window"] = super::whatsapp::window_json(&w);
    }
    Ok(axum::Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    /// txt (the default), json or csv.
    pub format: Option<String>,
}

pub async fn download(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_else(|| "txt".into());
    let (content_type, ext) = match format.as_str() {
        "txt" => ("text/plain; charset=utf-8", "txt"),
        "json" => ("application/json", "json"),
        "csv" => ("text/csv; charset=utf-8", "csv"),
        other => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("format {other:?} is not one of txt, json, csv"),
            ));
        }
    };
    let (s, messages) = read(&st, id).await?;
    let recording = Recording {
        id: s.id,
        campaign: s.campaign,
        customer: s.customer,
        agent: s.agent,
        started: s.started,
        closed: s.closed,
        messages: messages
            .into_iter()
            .map(|m| Line {
                at_ms: m.at_ms,
                at: m.at,
                direction: m.direction,
                sender: m.sender,
                channel: m.channel,
                text: m.text,
                state: m.state.map(String::from),
            })
            .collect(),
    };
    let body = match ext {
        "json" => recording.to_json(),
        "csv" => recording.to_csv(),
        _ => recording.to_text(),
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"interaction-{id}.{ext}\""),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn close(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let by = caller.label();
    let closed = st
        .shared
        .store
        .write(move |tx| interactions::close(tx, id, &by))
        .await?;
    let (summary, _) = read(&st, id).await?;
    if closed {
        tracing::info!(interaction = id, campaign = %summary.campaign, by = %caller.label(), "interaction closed");
    }
    // Closing a closed interaction changes nothing and says so: a portal
    // that retries gets the same answer.
    let mut v = json!(summary);
    v["already_closed"] = json!(!closed);
    Ok(axum::Json(v))
}
