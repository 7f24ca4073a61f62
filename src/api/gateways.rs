//! Routes for gateways: the Dinstar push receiver.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use super::{ApiError, ApiPath, AppState};
use crate::dialer::PushRefused;
use crate::transport::dinstar::parse_push;

/// `POST /api/v1/gateways/{name}/push`: one push from a Dinstar gateway
/// (`{"sn": ..., "<event>": ...}`). The source address was checked by the
/// guard. Answers at once; the transport only updates its tables and
/// queues events for the engine.
pub async fn push(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(st.shared.config().api.max_body_bytes as u64)
        } else {
            ApiError::bad_request("invalid_push", r.body_text())
        }
    })?;
    let events = parse_push(&body).map_err(|e| {
        tracing::warn!(gateway = %name, error = %e, "push not understood");
        ApiError::bad_request("invalid_push", e.to_string())
    })?;
    let n = st.engine.gateway_push(&name, events).map_err(|e| match e {
        PushRefused::NoGateway(_) => ApiError::unavailable("not_ready", e.to_string()),
        PushRefused::NotTaken(_) => ApiError::not_found(e.to_string()),
    })?;
    tracing::debug!(gateway = %name, events = n, "push taken");
    // What the gateway expects back is not documented (reference §8 Q14):
    // a 200 with the API's own envelope shape is the safe answer.
    Ok(Json(serde_json::json!({"error_code": 200, "events": n})))
}
