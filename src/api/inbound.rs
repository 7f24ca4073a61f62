//! Received messages: `GET /api/v1/inbound`, every message a gateway
//! delivered, whether or not a campaign took it.

use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiQuery, AppState};
use crate::store::inbound::{self, InboundFilter};
use smsgate_proto::sms::phone;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundQuery {
    pub gateway: Option<String>,
    pub port: Option<u32>,
    /// The sender: a number in any written form, or an alphanumeric
    /// sender as the gateway wrote it.
    pub number: Option<String>,
    pub campaign: Option<String>,
    pub unrouted: Option<bool>,
    /// RFC 3339 (`2026-12-01T08:00:00-03:00`); from is inclusive, to is not.
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<super::extract::Limit>,
}

pub(super) fn instant(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(v) = v else {
        return Ok(None);
    };
    let t: jiff::Timestamp = v.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_query",
            format!(
                "{name} must be an RFC 3339 time with its offset, as in 2026-12-01T08:00:00-03:00"
            ),
        )
    })?;
    Ok(Some(t.as_millisecond()))
}

pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<InboundQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let from_ms = instant("from", q.from.as_deref())?;
    let to_ms = instant("to", q.to.as_deref())?;
    let before_id = super::extract::id_cursor(q.cursor.as_deref())?;
    let country = st.shared.config().daemon.default_country.clone();
    // A number is looked up by its E.164 form; what cannot be one (an
    // alphanumeric sender) by the sender as written.
    let (number, sender) = match q.number.filter(|n| !n.is_empty()) {
        None => (None, None),
        Some(n) => match phone::normalise(&n, &country) {
            Ok(e164) => (Some(e164.into_string()), None),
            Err(_) => (None, Some(n)),
        },
    };
    let filter = InboundFilter {
        gateway: q.gateway.filter(|g| !g.is_empty()),
        port: q.port,
        number,
        sender,
        campaign: q.campaign.filter(|c| !c.is_empty()),
        unrouted: q.unrouted,
        from_ms,
        to_ms,
        before_id,
        limit: super::extract::Limit::or_default(q.limit),
    };
    let (items, next) = st
        .shared
        .store
        .read(move |c| inbound::list(c, &filter))
        .await?;
    Ok(axum::Json(
        json!({"items": items, "next": next.map(|n| n.to_string())}),
    ))
}
