//! Routes for gateways: the receiver of what a gateway posts to us (a
//! Dinstar push). The transport of the gateway named in the path reads it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;

use super::{ApiError, ApiPath, AppState};
use crate::transport::{TransportError, WebhookRequest};

/// `POST /api/v1/gateways/{name}/push`: one push from a Dinstar gateway
/// (`{"sn": ..., "<event>": ...}`). The source address was checked by the
/// guard. The transport answers at once: it only updates its tables and
/// queues events for the engine.
pub async fn push(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::response::Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.shared.config().api.max_body_bytes as u64)
        } else {
            ApiError::bad_request("invalid_push", r.body_text())
        }
    })?;
    let request = WebhookRequest {
        method,
        uri,
        headers,
        body,
        peer: peer.map(|p| (p.0).0),
    };
    let reply = st
        .engine
        .gateway_webhook(&name, request)
        .await
        .map_err(|e| match e {
            TransportError::NotRunning(_) => ApiError::unavailable("not_ready", e.to_string()),
            TransportError::Busy(m) => ApiError::unavailable("busy", m).with_retry_after(5),
            TransportError::NotUnderstood(m) => ApiError::bad_request("invalid_push", m),
            TransportError::NotTaken(_) | TransportError::Setup { .. } => {
                ApiError::not_found(e.to_string())
            }
        })?;
    Ok(match reply.raw {
        Some((content_type, text)) => (
            reply.status,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            text,
        )
            .into_response(),
        None => (reply.status, Json(reply.body)).into_response(),
    })
}
