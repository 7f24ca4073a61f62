//! Webhooks: where each stands (`GET /api/v1/webhooks`), its dead letters
//! and their replay. Secrets are never shown.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiPath, ApiQuery, AppState};

pub async fn list(State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let items = st.engine.notify().webhooks().await?;
    Ok(axum::Json(json!({ "items": items })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    /// Only those not replayed yet.
    pub open: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<super::extract::Limit>,
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
}

fn dead_json(d: &crate::store::outbox::DeadLetter) -> serde_json::Value {
    json!({
        "id": d.id,
        "webhook": d.webhook,
        "seq": d.seq,
        "kind": d.kind,
        "delivery": format!("{}:{}", d.webhook, d.seq),
        "body": d.body,
        "attempts": d.attempts,
        "first_failed_at": rfc3339(Some(d.first_at)),
        "dead_at": rfc3339(Some(d.dead_at)),
        "last_error": d.last_error,
        "replayed_at": rfc3339(d.replayed_at),
    })
}

pub async fn dead_letters(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeadQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let before_id = super::extract::id_cursor(q.cursor.as_deref())?;
    let (items, next) = st
        .engine
        .notify()
        .dead_letters(
            &name,
            q.open.unwrap_or(false),
            before_id,
            super::extract::Limit::or_default(q.limit),
        )
        .await?;
    let items: Vec<_> = items.iter().map(dead_json).collect();
    Ok(axum::Json(
        json!({"items": items, "next": next.map(|n| n.to_string())}),
    ))
}

pub async fn replay(
    State(st): State<AppState>,
    ApiPath((name, id)): ApiPath<(String, i64)>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let d = st.engine.notify().replay(&name, id).await?;
    Ok(axum::Json(dead_json(&d)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayAllQuery {
    /// At most this many (default 100, at most 10000).
    pub limit: Option<super::extract::Limit<10000>>,
}

pub async fn replay_all(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReplayAllQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (replayed, stopped) = st
        .engine
        .notify()
        .replay_all(&name, super::extract::Limit::or_default(q.limit))
        .await?;
    Ok(axum::Json(json!({
        "replayed": replayed,
        "stopped_at": stopped.map(|(id, error)| json!({"id": id, "error": error})),
    })))
}
