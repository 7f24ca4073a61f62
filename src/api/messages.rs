//! Messages: single sends (the seed's "Envío de mensaje único"), one
//! message, and lists.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState};
use crate::dialer::submit::Submission;
use crate::store::spool::{self, ListFilter, State as MsgState};
use smsgate_proto::sms::phone;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub dialer: String,
    pub to: String,
    /// Optional with a template: what the conversation shows.
    #[serde(default)]
    pub text: String,
    #[serde(default, deserialize_with = "super::extract::whole")]
    pub priority: Option<i64>,
    pub client_id: Option<String>,
    pub template: Option<TemplateRequest>,
    /// The template's variables, in order.
    pub variables: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// Twilio's ContentSid, or the Meta template's name.
    pub name: String,
    /// The Meta template's language code.
    pub language: Option<String>,
}

/// `POST /api/v1/messages`: the HTTP side of [`dialer::submit`]; the
/// rules are there.
pub async fn send(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<Response, ApiError> {
    let submitted = st
        .engine
        .submit(Submission {
            dialer: req.dialer,
            to: req.to,
            text: req.text,
            priority: req.priority,
            client_id: req.client_id,
            template: match (req.template, req.variables) {
                (Some(t), variables) => Some(smsgate_proto::whatsapp_rules::MessageTemplate {
                    name: t.name,
                    language: t.language,
                    variables: variables.unwrap_or_default(),
                }),
                (None, Some(_)) => {
                    return Err(ApiError::unprocessable(
                        "invalid_template",
                        "variables are given without a template; add \"template\": {\"name\": ...}",
                    ));
                }
                (None, None) => None,
            },
        })
        .await?;
    let mut body = json!(submitted.message);
    body["replayed"] = json!(submitted.replayed);
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

pub async fn get(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let found = st
        .shared
        .store
        .read(move |c| match spool::get(c, id)? {
            Some(m) => Ok(Some((m, spool::history(c, id)?))),
            None => Ok(None),
        })
        .await?;
    match found {
        Some((m, history)) => {
            let mut body = json!(m);
            body["history"] = json!(history);
            Ok(axum::Json(body))
        }
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
    pub limit: Option<super::extract::Limit>,
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
    let before_id = super::extract::id_cursor(q.cursor.as_deref())?;
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
        limit: super::extract::Limit::or_default(q.limit),
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
