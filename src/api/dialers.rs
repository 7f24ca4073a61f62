//! The dialer dashboard (the seed's "Monitoreo de Marcadores"): figures per
//! dialer, stop and start on demand, and cancelling what is not processed.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use serde_json::json;

use super::{ApiError, ApiPath, AppState};
use crate::config::{Config, DialerConfig};
use crate::store::spool::{self, State as MsgState};

#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub name: String,
    pub provider: String,
    pub schedule: Option<String>,
    /// "active" when enabled in the config and not stopped by an operator.
    pub status: &'static str,
    pub enabled: bool,
    pub stopped: bool,
    pub in_schedule: bool,
    /// Taken by the dialer: every state but NONE and TO_PROCESS.
    pub processed: i64,
    /// Waiting: NONE and TO_PROCESS.
    pub not_processed: i64,
    /// Numbers that cannot be phone numbers (INVALID).
    pub others: i64,
    /// On the DNCR list (BLOCKED).
    pub blocked: i64,
    pub sending: i64,
    pub sent: i64,
    pub delivered: i64,
    pub undelivered: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub unknown: i64,
    /// Messages sent in the last minute.
    pub rate_per_minute: u64,
    /// Messages the dialer holds in memory now (at most 50).
    pub in_memory: usize,
    pub dial: String,
    pub interval_ms: u64,
    pub dncr: bool,
    /// Built in: the replies the system sends on its own (out of hours,
    /// opt-out and opt-in confirmations), each on the channel the customer
    /// wrote to.
    system: bool,
}

async fn dashboard(
    st: &AppState,
    config: &Config,
    d: &DialerConfig,
) -> Result<Dashboard, ApiError> {
    let name = d.name.clone();
    let (counts, stopped) = st
        .shared
        .store
        .read(move |c| {
            Ok((
                spool::dialer_counts(c, &name)?,
                spool::dialer_stopped(c, &name)?,
            ))
        })
        .await?;
    let n = |s: MsgState| counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, v)| *v);
    let total: i64 = counts.iter().map(|(_, v)| v).sum();
    let not_processed = n(MsgState::None) + n(MsgState::ToProcess);
    let live = st.engine.dialer_live(&d.name);
    Ok(Dashboard {
        name: d.name.clone(),
        provider: d.provider.clone(),
        schedule: d.schedule.clone(),
        status: if d.enabled && !stopped {
            "active"
        } else {
            "inactive"
        },
        enabled: d.enabled,
        stopped,
        in_schedule: crate::dialer::in_schedule(config, d, jiff::Timestamp::now()),
        processed: total - not_processed,
        not_processed,
        others: n(MsgState::Invalid),
        blocked: n(MsgState::Blocked),
        sending: n(MsgState::Sending),
        sent: n(MsgState::Sent),
        delivered: n(MsgState::Delivered),
        undelivered: n(MsgState::Undelivered),
        failed: n(MsgState::Failed),
        cancelled: n(MsgState::Cancelled),
        unknown: n(MsgState::Unknown),
        rate_per_minute: live.rate_per_minute,
        in_memory: live.in_memory,
        dial: d.dial.clone(),
        interval_ms: d.interval.as_millis() as u64,
        dncr: d.dncr,
        system: d.system,
    })
}

fn find<'c>(config: &'c Config, name: &str) -> Result<&'c DialerConfig, ApiError> {
    config
        .dialer(name)
        .ok_or_else(|| ApiError::not_found(format!("no dialer is named {name:?}")))
}

pub async fn list(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = st.shared.config();
    let mut items = Vec::new();
    for d in &config.dialers {
        items.push(dashboard(&st, &config, d).await?);
    }
    Ok(Json(json!({"items": items, "next": null})))
}

pub async fn get(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Dashboard>, ApiError> {
    let config = st.shared.config();
    let d = find(&config, &name)?;
    Ok(Json(dashboard(&st, &config, d).await?))
}

async fn set_stopped(
    st: &AppState,
    name: String,
    stopped: bool,
) -> Result<Json<Dashboard>, ApiError> {
    find(&st.shared.config(), &name)?;
    st.engine.set_dialer_stopped(&name, stopped).await?;
    let config = st.shared.config();
    let d = find(&config, &name)?;
    Ok(Json(dashboard(st, &config, d).await?))
}

pub async fn stop(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Dashboard>, ApiError> {
    set_stopped(&st, name, true).await
}

pub async fn start(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Dashboard>, ApiError> {
    set_stopped(&st, name, false).await
}

pub async fn cancel_pending(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    find(&st.shared.config(), &name)?;
    let cancelled = st.engine.cancel_pending(&name).await?;
    Ok(Json(json!({"dialer": name, "cancelled": cancelled})))
}
