//! Conversations (the seed's "Grabaciones"): `GET /api/v1/interactions`
//! searches them by start time, origin number, campaigns and agents;
//! `GET /api/v1/interactions/{id}` shows one with its messages;
//! `.../download` writes it out as text, JSON or spreadsheet-safe CSV;
//! `POST .../close` closes it. The ACD adds an agent's reply
//! (`POST .../messages`), a transfer and a supervisor's spy stream; an
//! agent's token reaches only the interactions its agent holds.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smsgate_proto::recording::{Line, Recording};
use smsgate_proto::sms::phone;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::config::{MIN_PRIORITY, REPLIES_DIALER, Role};
use crate::notify::StreamRequest;
use crate::store::acd;
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
    pub limit: Option<super::extract::Limit>,
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
    caller: Caller,
    ApiQuery(q): ApiQuery<InteractionsQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let from_ms = super::inbound::instant("from", q.from.as_deref())?;
    let to_ms = super::inbound::instant("to", q.to.as_deref())?;
    let before_id = super::extract::id_cursor(q.cursor.as_deref())?;
    let country = st.shared.config().daemon.default_country.clone();
    let origin = (
        q.origin.filter(|o| !o.is_empty()),
        q.customer.filter(|c| !c.is_empty()),
    );
    // Customers are kept in E.164; an alphanumeric sender as written.
    let key = |o: String| match phone::normalise(&o, &country) {
        Ok(e164) => e164.into_string(),
        Err(_) => o,
    };
    // origin and customer are one filter under two names; given both,
    // an interaction must match both, so two different customers match
    // nothing (a well-formed query is answered, never refused).
    let customer = match origin {
        (Some(a), Some(b)) => {
            let (a, b) = (key(a), key(b));
            if a != b {
                return Ok(axum::Json(json!({"items": [], "next": null})));
            }
            Some(a)
        }
        (a, b) => a.or(b).map(key),
    };
    let mut agents = list_of(q.agent);
    // An agent's token sees only its own interactions.
    if let Some(own) = caller.agent.as_ref().filter(|_| caller.role == Role::Agent) {
        if agents.iter().any(|a| a != own) {
            return Err(ApiError::forbidden(
                "an agent's token lists only its own interactions",
            ));
        }
        agents = vec![own.clone()];
    }
    let filter = InteractionFilter {
        from_ms,
        to_ms,
        customer,
        campaigns: list_of(q.campaign),
        agents,
        open: q.open,
        before_id,
        limit: super::extract::Limit::or_default(q.limit),
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

/// Refuses an agent's token an interaction another agent holds (or none
/// does): 403, before anything of it is shown or changed.
async fn own(st: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    if caller.role != Role::Agent {
        return Ok(());
    }
    let held = st.shared.store.read(move |c| acd::held(c, id)).await?;
    match held {
        None => Err(ApiError::not_found(format!("no interaction {id}"))),
        Some(h) if h.agent.is_some() && h.agent == caller.agent => Ok(()),
        Some(_) => Err(ApiError::forbidden(format!(
            "interaction {id} is not this agent's"
        ))),
    }
}

pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    own(&st, &caller, id).await?;
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
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
) -> Result<Response, ApiError> {
    own(&st, &caller, id).await?;
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
    own(&st, &caller, id).await?;
    let by = caller.label();
    let closed = st
        .shared
        .store
        .write(move |tx| {
            acd::released(tx, id)?;
            interactions::close(tx, id, &by)
        })
        .await?;
    // The agent that held it has room again.
    st.shared.acd.notify_one();
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// The agent that answers: the one the interaction is assigned to.
    pub agent: String,
    pub text: Option<String>,
    /// The campaign's canned response of this number, 1 the first.
    #[serde(default, deserialize_with = "super::extract::whole")]
    pub canned: Option<usize>,
}

/// An agent's reply, queued on the built-in replies dialer pinned to the
/// channel the customer wrote to: the normal send path (DNCR, pacing,
/// crash safety, delivery states in the conversation).
pub async fn reply(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Reply>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    caller.may_act_as(&body.agent)?;
    let held = st
        .shared
        .store
        .read(move |c| acd::held(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no interaction {id}")))?;
    let config = st.shared.config();
    let text = match (body.text, body.canned) {
        (Some(t), None) => t,
        (None, Some(n)) => {
            let canned = config
                .campaign(&held.campaign)
                .map(|c| c.canned_responses.as_slice())
                .unwrap_or_default();
            n.checked_sub(1)
                .and_then(|i| canned.get(i))
                .cloned()
                .ok_or_else(|| {
                    ApiError::unprocessable(
                        "invalid_body",
                        format!(
                            "campaign {:?} has {} canned responses; canned is 1 to {}",
                            held.campaign,
                            canned.len(),
                            canned.len()
                        ),
                    )
                })?
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give text or canned, one of the two",
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable("empty_text", "the text is empty"));
    }
    if smsgate_proto::sms::plan(&text).segments > 10 {
        return Err(ApiError::unprocessable(
            "text_too_long",
            "the text needs more than 10 SMS parts",
        ));
    }
    // On WhatsApp the customer's window decides: the provider would
    // refuse free text after it closed.
    if let Some(w) = st.engine.window(&held.gateway, &held.customer) {
        if !w.open {
            return Err(ApiError::unprocessable(
                "outside_window",
                format!(
                    "{} has not written to gateway {:?} in the last 24 hours: WhatsApp refuses free text outside the customer-service window; send a template through POST /api/v1/messages",
                    held.customer, held.gateway
                ),
            ));
        }
    }
    let agent = body.agent.clone();
    let t = text.clone();
    let (message, channel) = st
        .shared
        .store
        .write(move |tx| acd::reply(tx, id, &agent, (REPLIES_DIALER, MIN_PRIORITY), &t))
        .await?;
    st.engine.wake(REPLIES_DIALER);
    tracing::info!(interaction = id, agent = %body.agent, message, channel = %channel, chars = text.chars().count(), "agent replied; queued on the customer's channel");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(
            json!({"interaction": id, "message": message, "channel": channel,
                           "agent": body.agent, "text": text, "state": "TO_PROCESS"}),
        ),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The agent that takes it over; none: back to the queue.
    pub agent: Option<String>,
    /// true: back to its campaign's queue (where it keeps its place).
    #[serde(default)]
    pub queue: bool,
}

pub async fn transfer(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Transfer>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    own(&st, &caller, id).await?;
    let to = match (body.agent, body.queue) {
        (Some(a), false) => Some(a),
        (None, true) => None,
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give agent (another agent takes it) or queue: true (back to the queue), one of the two",
            ));
        }
    };
    let cap = {
        let config = st.shared.config();
        let campaign = st
            .shared
            .store
            .read(move |c| acd::held(c, id))
            .await?
            .map(|h| h.campaign);
        campaign
            .and_then(|c| config.campaign(&c).map(|c| c.max_interactions_per_agent))
            .unwrap_or(u32::MAX)
    };
    let who = caller.label();
    let t = to.clone();
    let before = st
        .shared
        .store
        .write(move |tx| acd::transfer(tx, id, t.as_deref(), &who, cap))
        .await?;
    st.shared.acd.notify_one();
    tracing::info!(interaction = id, from = ?before.agent, to = to.as_deref().unwrap_or("queue"), by = %caller.label(), "interaction transferred");
    let (summary, _) = read(&st, id).await?;
    let mut v = json!(summary);
    v["from_agent"] = json!(before.agent);
    Ok(axum::Json(v))
}

/// A supervisor's live view of one interaction: its messages both ways
/// (and their delivery states, its assignment and closing) as they are
/// committed.
pub async fn spy(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    read(&st, id).await?;
    super::events::sse(
        &st,
        StreamRequest {
            interaction: Some(id),
            ..Default::default()
        },
    )
    .await
}
