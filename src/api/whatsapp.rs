//! WhatsApp's sending rules as the portal sees them: each WhatsApp
//! gateway's messaging limit and, for one customer, whether their 24-hour
//! window is open (free text may go) or only a template can.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiQuery, AppState};
use smsgate_proto::sms::phone;
use smsgate_proto::whatsapp_rules::WindowState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhatsAppQuery {
    /// A customer's number in any written form.
    pub phone: Option<String>,
}

/// `GET /api/v1/whatsapp`
pub async fn get(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<WhatsAppQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let country = st.shared.config().daemon.default_country.clone();
    // As the other lookups by number (messages, inbound, interactions):
    // what cannot be read as a number is looked up as written, and no
    // gateway has a window for it.
    let number = q
        .phone
        .filter(|p| !p.is_empty())
        .map(|p| match phone::normalise(&p, &country) {
            Ok(e164) => e164.into_string(),
            Err(_) => p,
        });
    let gateways: Vec<serde_json::Value> = st
        .engine
        .whatsapp(number.as_deref())
        .into_iter()
        .map(|g| {
            let mut v = json!({
                "gateway": g.gateway,
                "running": g.running,
                "messaging_limit": g.limit_used.map(|(used, limit)| json!({"used": used, "limit": limit})),
            });
            if let Some(w) = &g.window {
                v["window"] = window_json(w);
            }
            v
        })
        .collect();
    Ok(axum::Json(json!({"phone": number, "gateways": gateways})))
}

/// A window as the API shows it, with RFC 3339 times.
pub fn window_json(w: &WindowState) -> serde_json::Value {
    let at = |ms: Option<i64>| {
        ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map(|t| t.to_string())
    };
    json!({
        "open": w.open,
        "last_inbound": at(w.last_inbound_ms),
        "closes_at": at(w.closes_at_ms),
    })
}
