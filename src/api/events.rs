//! `GET /api/v1/events`: the event log as Server-Sent Events (the stream
//! itself is `notify::EventStream`). The response starts at once and
//! stays open; the route's timeout covers only the start, and `[events]
//! max_streams` bounds how many connection slots streams hold.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use super::{ApiError, ApiQuery, AppState};
use crate::config::KindFilter;
use crate::notify::{NotifyError, StreamRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Start after this sequence number (`Last-Event-ID` wins when both).
    pub after: Option<super::extract::Seq>,
    /// Comma-separated kinds, `prefix.*` or `*`.
    pub kinds: Option<String>,
    pub campaign: Option<String>,
}

/// How long a client waits before it reconnects (the SSE `retry:` field).
const RETRY_MS: u32 = 2000;

pub async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .and_then(|v| v.parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_query",
                        "Last-Event-ID must be the id of an event this stream sent (a sequence number)",
                    )
                })?,
        ),
    };
    let kinds: Vec<&str> = q.kinds.as_deref().unwrap_or("").split(',').collect();
    let kinds = KindFilter::parse(&kinds)
        .map_err(|m| ApiError::bad_request("invalid_query", format!("kinds: {m}")))?;
    let req = StreamRequest {
        after: last_event_id.or(q.after.map(|a| a.0)),
        kinds,
        campaign: q.campaign.filter(|c| !c.is_empty()),
        ..Default::default()
    };
    sse(&st, req).await
}

/// An event stream as the response: `retry:` first, then its frames.
pub(super) async fn sse(st: &AppState, req: StreamRequest) -> Result<Response, ApiError> {
    let events = st.engine.notify().stream(req).await?;
    let first = futures_util::stream::once(async {
        Ok::<_, Infallible>(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
    });
    let frames = futures_util::stream::unfold(events, |mut s| async move {
        let frame = s.next().await?;
        Some((Ok::<_, Infallible>(Bytes::from(frame.to_sse())), s))
    });
    use futures_util::StreamExt;
    let mut resp = (StatusCode::OK, Body::from_stream(first.chain(frames))).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx and friends must pass each frame through as it comes.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::UnknownWebhook(_) | NotifyError::NoDeadLetter { .. } => {
                ApiError::not_found(e.to_string())
            }
            NotifyError::Receiver(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "receiver_failed",
                "The webhook receiver did not take the delivery",
                e.to_string(),
            ),
            NotifyError::TooManyStreams(_) => {
                ApiError::unavailable("too_many_streams", e.to_string()).with_retry_after(5)
            }
            NotifyError::Store(s) => s.into(),
        }
    }
}
