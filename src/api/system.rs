//! Health, readiness, metrics, the OpenAPI document, status and reload.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, AppState};
use crate::config::ConfigError;
use crate::metrics::LoopLabel;
use crate::store::spool;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(st): State<AppState>) -> Response {
    let store = &st.shared.store;
    let store_ok = store.is_open()
        && store
            .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .is_ok();
    // Reading is not enough: a full disk leaves reads working. While
    // writes fail, each probe tries one small write, so readiness comes
    // back by itself once they work again; not within a few seconds of a
    // failed write, though, since a small write may fit where others
    // do not.
    let writes_ok =
        !store.failed_recently() && (!store.writes_failing() || store.probe_write().await.is_ok());
    let stopping = st.shared.shutdown.is_cancelled();
    if store_ok && writes_ok && !stopping {
        Json(json!({"ready": true, "store": "open", "config": "loaded"})).into_response()
    } else {
        let why = if stopping {
            "smsgate is stopping"
        } else if !store_ok {
            "the store cannot be read"
        } else {
            "the store cannot write (is the disk holding the state directory full?); see the journal"
        };
        ApiError::unavailable("not_ready", why).into_response()
    }
}

/// OpenMetrics when the scraper asks for it, the classic text format
/// otherwise (promtool, curl).
pub async fn metrics(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    for (task, age) in st.shared.heartbeats.all() {
        st.shared
            .metrics
            .loop_age
            .get_or_create(&LoopLabel { task })
            .set(age.as_secs_f64());
    }
    // Current queue sizes come from the store; a failed read leaves the
    // last values rather than failing the scrape.
    let config = st.shared.config();
    let names: Vec<String> = config.dialers.iter().map(|d| d.name.clone()).collect();
    if let Ok(all) = st
        .shared
        .store
        .read(move |c| {
            names
                .into_iter()
                .map(|n| spool::dialer_counts(c, &n).map(|counts| (n, counts)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
    {
        for (dialer, counts) in all {
            for s in spool::State::ALL {
                let n = counts.iter().find(|(k, _)| *k == s).map_or(0, |(_, v)| *v);
                st.shared
                    .metrics
                    .dialer_state_messages
                    .get_or_create(&crate::metrics::DialerStateLabels {
                        dialer: dialer.clone(),
                        state: s.label(),
                    })
                    .set(n);
            }
        }
    }
    for ch in st.engine.channels() {
        st.shared
            .metrics
            .channel_healthy
            .get_or_create(&crate::metrics::ChannelLabel {
                channel: ch.id.clone(),
            })
            .set(i64::from(ch.usable));
    }
    for (gateway, used, limit) in st.engine.messaging_limits() {
        let label = crate::metrics::GatewayLabel { gateway };
        let m = &st.shared.metrics;
        m.whatsapp_limit_used.get_or_create(&label).set(used as i64);
        if let Some(l) = limit {
            m.whatsapp_limit.get_or_create(&label).set(i64::from(l));
        }
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (
            st.shared.metrics.encode_openmetrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            st.shared.metrics.encode_prometheus(),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub async fn openapi() -> Response {
    let mut resp = super::openapi::DOCUMENT.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub async fn status(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = st.shared.config();
    let counts = st.shared.store.read(spool::count_by_state).await?;
    let messages: serde_json::Map<String, serde_json::Value> = counts
        .into_iter()
        .map(|(s, n)| (s.name().to_string(), json!(n)))
        .collect();
    let channels = st.engine.channels();
    let usable = channels.iter().filter(|c| c.usable).count();
    let loops: Vec<serde_json::Value> = st
        .shared
        .heartbeats
        .all()
        .into_iter()
        .map(|(name, age)| json!({"task": name, "last_turn_ms_ago": age.as_millis() as u64}))
        .collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": st.shared.started.elapsed().as_secs(),
        "config_path": config.path.display().to_string(),
        "state_dir": config.daemon.state_dir.display().to_string(),
        "listen": config.api.listen.to_string(),
        "status_line": st.engine.status_line().await,
        "gateways": config.gateways.iter().map(|g| json!({
            "name": g.name, "kind": g.kind.as_str(), "enabled": g.enabled, "ports": g.ports,
        })).collect::<Vec<_>>(),
        "dialers": config.dialers.iter().map(|d| json!({
            "name": d.name, "provider": d.provider, "enabled": d.enabled,
        })).collect::<Vec<_>>(),
        "channels": {"total": channels.len(), "usable": usable},
        "messages": messages,
        "loops": loops,
    })))
}

pub async fn reload(State(st): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match st.shared.reload().await {
        Ok(outcome) => Ok(Json(json!(outcome))),
        Err(ConfigError::Invalid(d)) => {
            let errors: Vec<serde_json::Value> = d
                .problems
                .iter()
                .map(|p| json!({"line": p.line, "column": p.column, "message": p.message}))
                .collect();
            Err(ApiError::unprocessable(
                "config_invalid",
                format!(
                    "{} is not valid; the running config stays",
                    d.path.display()
                ),
            )
            .with_errors(json!(errors)))
        }
        Err(e @ ConfigError::Read { .. }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "config_unreadable",
            "Request refused",
            format!("{e}; the running config stays"),
        )),
    }
}

pub async fn channels(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({"items": st.engine.channels(), "next": null}))
}
