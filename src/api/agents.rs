//! The ACD as the portal drives it (the seed's "Miembros", "Agente",
//! "Monitoreo de Campañas", "Acciones con agentes"): agents and their
//! state, members, an agent's inbox and stream, a campaign's monitor.
//! An agent's token reaches only its own agent; what a supervisor does
//! to an agent is kept with who did it.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller};
use crate::config::valid_agent_id;
use crate::notify::StreamRequest;
use crate::store::acd::{self as db, Change};

/// The longest agent name, break name or chat text, in characters.
const MAX_NAME: usize = 100;
const MAX_CHAT: usize = 2000;

fn check_id(id: &str) -> Result<(), ApiError> {
    if valid_agent_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_path",
            format!("an agent id is 1 to 64 letters, digits, '.', '_', '-' or '@'; found {id:?}"),
        ))
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<String, ApiError> {
    let t = v.trim();
    if t.is_empty() || t.chars().count() > max || t.chars().any(char::is_control) && field != "text"
    {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("{field} must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(t.to_string())
}

/// Midnight UTC today: the "completed" count of an agent outside any
/// campaign (the monitor counts from the campaign's own midnight).
fn today_utc() -> i64 {
    let now = crate::now_ms();
    now - now.rem_euclid(86_400_000)
}

async fn view(st: &AppState, id: String) -> Result<serde_json::Value, ApiError> {
    let since = today_utc();
    let (agent, campaigns, (active, completed), actions) = st
        .shared
        .store
        .read(move |c| {
            let a = db::agent(c, &id)?;
            Ok((
                a,
                db::campaigns_of(c, &id)?,
                db::agent_counts(c, &id, since)?,
                db::actions(c, &id, 50)?,
            ))
        })
        .await?;
    let Some(agent) = agent else {
        return Err(ApiError::not_found("no such agent"));
    };
    let total: i64 = active.iter().map(|(_, n)| n).sum();
    let mut v = json!(agent);
    v["since_s"] = json!((crate::now_ms() - agent.since).max(0) / 1000);
    v["campaigns"] = json!(campaigns);
    v["active"] = json!(total);
    v["active_by_campaign"] = active
        .into_iter()
        .map(|(c, n)| (c, json!(n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    v["completed_today"] = json!(completed);
    v["actions"] = json!(actions);
    Ok(v)
}

pub async fn list(State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let agents = st.shared.store.read(db::agents).await?;
    Ok(axum::Json(json!({"items": agents, "next": null})))
}

pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    caller.may_act_as(&id)?;
    Ok(axum::Json(view(&st, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutAgent {
    pub name: String,
    /// Active interactions over every campaign at most (none: no cap).
    #[serde(default, deserialize_with = "super::extract::whole")]
    pub max_interactions: Option<u32>,
}

pub async fn put(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PutAgent>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    check_id(&id)?;
    let name = text("name", &body.name, MAX_NAME)?;
    if body.max_interactions == Some(0) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "max_interactions must be 1 or more (leave it out for no cap)",
        ));
    }
    let who = caller.label();
    let (i, max) = (id.clone(), body.max_interactions);
    let (_, created) = st
        .shared
        .store
        .write(move |tx| db::put_agent(tx, &i, &name, max, &who))
        .await?;
    // A raised cap may make room.
    st.shared.acd.notify_one();
    let status = if created {
        axum::http::StatusCode::CREATED
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, axum::Json(view(&st, id).await?)).into_response())
}

async fn change(
    st: &AppState,
    caller: &Caller,
    id: String,
    c: Change,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    caller.may_act_as(&id)?;
    let who = caller.label();
    let (i, what) = (id.clone(), c.clone());
    let (agent, requeued) = st
        .shared
        .store
        .write(move |tx| db::change(tx, &i, &what, &who))
        .await?;
    tracing::info!(agent = %agent.id, action = c.as_str(), state = %agent.state, paused = agent.paused, requeued = requeued.len(), by = %caller.label(), "agent changed");
    st.shared.acd.notify_one();
    let mut v = view(st, id).await?;
    v["requeued"] = json!(requeued);
    Ok(axum::Json(v))
}

pub async fn login(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    change(&st, &caller, id, Change::Login).await
}

pub async fn logout(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    change(&st, &caller, id, Change::Logout).await
}

pub async fn ready(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    change(&st, &caller, id, Change::Ready).await
}

pub async fn pause(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    change(&st, &caller, id, Change::Pause).await
}

pub async fn resume(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    change(&st, &caller, id, Change::Resume).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Break {
    pub name: String,
}

pub async fn take_break(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Break>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let name = text("name", &body.name, MAX_NAME)?;
    change(&st, &caller, id, Change::Break(name)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chat {
    pub text: String,
}

pub async fn chat(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Chat>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    let t = text("text", &body.text, MAX_CHAT)?;
    let who = caller.label();
    let i = id.clone();
    let seq = st
        .shared
        .store
        .write(move |tx| db::chat(tx, &i, &t, &who))
        .await?;
    Ok(axum::Json(
        json!({"agent": id, "event": seq, "from": caller.label()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    /// A campaign name or customer number, or part of one.
    pub q: Option<String>,
    pub limit: Option<super::extract::Limit>,
}

pub async fn inbox(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<InboxQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    check_id(&id)?;
    caller.may_act_as(&id)?;
    let search = q.q.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let limit = super::extract::Limit::or_default(q.limit);
    let items = st
        .shared
        .store
        .read(move |c| db::inbox(c, &id, search.as_deref(), limit))
        .await?;
    Ok(axum::Json(json!({"items": items, "next": null})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEventsQuery {
    pub after: Option<super::extract::Seq>,
}

/// The agent's own stream: its state, what it is given, what its
/// supervisor writes to it.
pub async fn events(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AgentEventsQuery>,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    caller.may_act_as(&id)?;
    super::events::sse(
        &st,
        StreamRequest {
            after: q.after.map(|a| a.0),
            agent: Some(id),
            ..Default::default()
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    pub campaigns: Vec<String>,
    pub agents: Vec<String>,
}

fn members_body(st: &AppState, m: &Members) -> Result<(), ApiError> {
    if m.campaigns.is_empty() || m.agents.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "campaigns and agents must each name at least one",
        ));
    }
    let config = st.shared.config();
    if let Some(c) = m.campaigns.iter().find(|c| config.campaign(c).is_none()) {
        return Err(ApiError::not_found(format!("no campaign is named {c:?}")));
    }
    if let Some(a) = m.agents.iter().find(|a| !valid_agent_id(a)) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("{a:?} is not an agent id"),
        ));
    }
    Ok(())
}

pub async fn add_members(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Members>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    members_body(&st, &body)?;
    let who = caller.label();
    let added = st
        .shared
        .store
        .write(move |tx| db::add_members(tx, &body.campaigns, &body.agents, &who))
        .await?;
    st.shared.acd.notify_one();
    Ok(axum::Json(json!({"added": added})))
}

pub async fn remove_members(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Members>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    members_body(&st, &body)?;
    let who = caller.label();
    let removed = st
        .shared
        .store
        .write(move |tx| db::remove_members(tx, &body.campaigns, &body.agents, &who))
        .await?;
    Ok(axum::Json(json!({"removed": removed})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    pub campaign: Option<String>,
}

pub async fn list_members(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<MembersQuery>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let pairs = st
        .shared
        .store
        .read(move |c| db::members(c, q.campaign.as_deref()))
        .await?;
    let items: Vec<_> = pairs
        .into_iter()
        .map(|(campaign, agent)| json!({"campaign": campaign, "agent": agent}))
        .collect();
    Ok(axum::Json(json!({"items": items, "next": null})))
}

/// The monitor's name for an agent's state.
fn monitor_state(state: &str, active: i64) -> &'static str {
    match (state, active > 0) {
        ("logged_out", _) => "disconnected",
        ("break", false) => "free_on_break",
        ("break", true) => "busy_on_break",
        (_, true) => "busy",
        (_, false) => "free",
    }
}

pub async fn monitor(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let config = st.shared.config();
    if config.campaign(&name).is_none() {
        return Err(ApiError::not_found(format!(
            "no campaign is named {name:?}"
        )));
    }
    let now = jiff::Timestamp::now();
    let since = crate::acd::midnight(&config, &name, now);
    let (loads, waiting, figures) = st
        .shared
        .store
        .read(move |c| {
            Ok((
                db::member_loads(c, &name, since)?,
                db::waiting_customers(c, &name)?,
                crate::acd::campaign_figures(c, &config, &name, now)?,
            ))
        })
        .await?;
    let now_ms = now.as_millisecond();
    let agents: Vec<_> = loads
        .into_iter()
        .map(|l| {
            json!({
                "id": l.agent.id,
                "name": l.agent.name,
                "state": monitor_state(&l.agent.state, l.active),
                "break": l.agent.break_name,
                "paused": l.agent.paused,
                "channels": l.channels,
                "active": l.active,
                "completed": l.completed,
                "since": (now_ms - l.agent.since).max(0) / 1000,
            })
        })
        .collect();
    let waiting: Vec<_> = waiting
        .into_iter()
        .map(|(id, customer, started)| {
            json!({"interaction": id, "customer": customer,
                   "waiting_s": (now_ms - started).max(0) / 1000})
        })
        .collect();
    let mut v = figures;
    v["agents"] = json!(agents);
    v["waiting"] = json!(waiting);
    Ok(axum::Json(v))
}
