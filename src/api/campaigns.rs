//! Inbound campaigns (the seed's "Campañas"): their configuration as the
//! daemon runs it, and live counts.

use axum::extract::State;
use serde_json::json;

use super::{ApiError, ApiPath, AppState};
use crate::config::{CampaignConfig, Config};
use crate::store::{inbound, interactions};

fn describe(config: &Config, c: &CampaignConfig, received: i64, open: i64) -> serde_json::Value {
    let in_schedule = match c.schedule.as_deref() {
        None => true,
        Some(name) => config
            .schedules
            .get(name)
            .is_some_and(|s| s.is_open(jiff::Timestamp::now())),
    };
    let mut v = json!(c);
    v["in_schedule"] = json!(in_schedule);
    v["received"] = json!(received);
    v["open_interactions"] = json!(open);
    v
}

pub async fn list(State(st): State<AppState>) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let config = st.shared.config();
    let names: Vec<String> = config.campaigns.iter().map(|c| c.name.clone()).collect();
    let (counts, unrouted, open) = st
        .shared
        .store
        .read(move |c| {
            let (counts, unrouted) = inbound::received_counts(c, &names)?;
            let open = names
                .iter()
                .map(|n| interactions::open_count(c, n))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((counts, unrouted, open))
        })
        .await?;
    let items: Vec<serde_json::Value> = config
        .campaigns
        .iter()
        .zip(counts)
        .zip(open)
        .map(|((c, n), o)| describe(&config, c, n, o))
        .collect();
    Ok(axum::Json(
        json!({"items": items, "next": null, "unrouted": unrouted}),
    ))
}

pub async fn get(
    State(st): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let config = st.shared.config();
    let Some(c) = config.campaign(&name) else {
        return Err(ApiError::not_found(format!(
            "no campaign is named {name:?}"
        )));
    };
    let campaign = c.name.clone();
    let (counts, open) = st
        .shared
        .store
        .read(move |conn| {
            let (counts, _) = inbound::received_counts(conn, std::slice::from_ref(&campaign))?;
            Ok((counts, interactions::open_count(conn, &campaign)?))
        })
        .await?;
    Ok(axum::Json(describe(
        &config,
        c,
        counts.first().copied().unwrap_or(0),
        open,
    )))
}
