//! The local REST/JSON API. Every route is declared once in [`routes`],
//! with the role it needs and its body limit; the router and the test that
//! keeps the OpenAPI document true are both built from that one table.

mod agents;
mod campaigns;
mod consent;
mod dialers;
pub(crate) mod error;
mod events;
mod extract;
mod gateways;
mod inbound;
mod interactions;
mod messages;
pub mod openapi;
mod request_line;
mod staging;
mod system;
mod uploads;
mod webhooks;
mod whatsapp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::{ApiError, PROBLEM_JSON, Problem};
pub use extract::{ApiJson, ApiPath, ApiQuery};

use crate::config::Role;
use crate::engine::Engine;
use crate::metrics::RouteLabels;
use crate::runtime::Shared;

#[derive(Clone)]
pub struct AppState {
    pub shared: Shared,
    pub engine: Engine,
    uploads: staging::UploadSlots,
}

impl AppState {
    pub fn new(shared: Shared, engine: Engine) -> Self {
        let uploads = staging::UploadSlots::new(shared.config().api.max_uploads);
        Self {
            shared,
            engine,
            uploads,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token: health probes, metrics, the OpenAPI document.
    Public,
    /// A bearer token whose role grants this one ([`Role::grants`]).
    Role(Role),
    /// As `Role`, and an agent's token too: the handler then keeps it to
    /// that agent's own (its interactions, its state).
    AgentOr(Role),
    /// A gateway's push (Dinstar sends no credentials): the peer address
    /// must be in the `push_allow` list of the gateway named in the path.
    /// Loopback is not implicitly allowed, so a reverse proxy on the box
    /// cannot open the route to everyone; list 127.0.0.1 to allow it.
    GatewayPush,
}

/// How large a body a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// `[api] max_body_bytes`: JSON requests.
    Json,
    /// `[api] max_upload_bytes`: CSV uploads, streamed and not held in memory.
    Upload,
}

pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub body: BodyLimit,
    handler: MethodRouter<AppState>,
}

/// A route whose body is a streamed upload, bounded by max_upload_bytes.
fn upload(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec {
        body: BodyLimit::Upload,
        ..route(method, path, access, handler)
    }
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<AppState>,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        body: BodyLimit::Json,
        handler,
    }
}

/// Every route of the API. Keep docs in src/api/openapi.json in step: a
/// test compares the two.
pub fn routes() -> Vec<RouteSpec> {
    use Access::*;
    use axum::routing::{get, post};
    vec![
        route(Method::GET, "/healthz", Public, get(system::healthz)),
        route(Method::GET, "/readyz", Public, get(system::readyz)),
        route(Method::GET, "/metrics", Public, get(system::metrics)),
        route(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            get(system::openapi),
        ),
        route(
            Method::GET,
            "/api/v1/status",
            Role(crate::config::Role::Viewer),
            get(system::status),
        ),
        route(
            Method::POST,
            "/api/v1/config/reload",
            Role(crate::config::Role::Admin),
            post(system::reload),
        ),
        route(
            Method::GET,
            "/api/v1/channels",
            Role(crate::config::Role::Viewer),
            get(system::channels),
        ),
        route(
            Method::POST,
            "/api/v1/gateways/{name}/push",
            GatewayPush,
            post(gateways::push),
        ),
        // A provider's subscription check (Meta's hub.challenge).
        route(
            Method::GET,
            "/api/v1/gateways/{name}/push",
            GatewayPush,
            get(gateways::push),
        ),
        route(
            Method::POST,
            "/api/v1/messages",
            Role(crate::config::Role::Operator),
            post(messages::send),
        ),
        route(
            Method::GET,
            "/api/v1/messages",
            Role(crate::config::Role::Viewer),
            get(messages::list),
        ),
        route(
            Method::GET,
            "/api/v1/messages/{id}",
            Role(crate::config::Role::Viewer),
            get(messages::get),
        ),
        route(
            Method::GET,
            "/api/v1/inbound",
            Role(crate::config::Role::Viewer),
            get(inbound::list),
        ),
        route(
            Method::GET,
            "/api/v1/campaigns",
            Role(crate::config::Role::Viewer),
            get(campaigns::list),
        ),
        route(
            Method::GET,
            "/api/v1/campaigns/{name}",
            Role(crate::config::Role::Viewer),
            get(campaigns::get),
        ),
        route(
            Method::GET,
            "/api/v1/interactions",
            AgentOr(crate::config::Role::Viewer),
            get(interactions::list),
        ),
        route(
            Method::GET,
            "/api/v1/interactions/{id}",
            AgentOr(crate::config::Role::Viewer),
            get(interactions::get),
        ),
        route(
            Method::GET,
            "/api/v1/interactions/{id}/download",
            AgentOr(crate::config::Role::Viewer),
            get(interactions::download),
        ),
        route(
            Method::POST,
            "/api/v1/interactions/{id}/close",
            AgentOr(crate::config::Role::Operator),
            post(interactions::close),
        ),
        // The ACD (src/acd, docs/acd.md): replies, transfers, spying.
        route(
            Method::POST,
            "/api/v1/interactions/{id}/messages",
            AgentOr(crate::config::Role::Supervisor),
            post(interactions::reply),
        ),
        route(
            Method::POST,
            "/api/v1/interactions/{id}/transfer",
            AgentOr(crate::config::Role::Supervisor),
            post(interactions::transfer),
        ),
        route(
            Method::GET,
            "/api/v1/interactions/{id}/spy",
            Role(crate::config::Role::Supervisor),
            get(interactions::spy),
        ),
        route(
            Method::GET,
            "/api/v1/agents",
            Role(crate::config::Role::Viewer),
            get(agents::list),
        ),
        route(
            Method::GET,
            "/api/v1/agents/{id}",
            AgentOr(crate::config::Role::Viewer),
            get(agents::get),
        ),
        route(
            Method::PUT,
            "/api/v1/agents/{id}",
            Role(crate::config::Role::Supervisor),
            axum::routing::put(agents::put),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/login",
            AgentOr(crate::config::Role::Supervisor),
            post(agents::login),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/logout",
            AgentOr(crate::config::Role::Supervisor),
            post(agents::logout),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/break",
            AgentOr(crate::config::Role::Supervisor),
            post(agents::take_break),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/ready",
            AgentOr(crate::config::Role::Supervisor),
            post(agents::ready),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/pause",
            Role(crate::config::Role::Supervisor),
            post(agents::pause),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/resume",
            Role(crate::config::Role::Supervisor),
            post(agents::resume),
        ),
        route(
            Method::POST,
            "/api/v1/agents/{id}/chat",
            Role(crate::config::Role::Supervisor),
            post(agents::chat),
        ),
        route(
            Method::GET,
            "/api/v1/agents/{id}/interactions",
            AgentOr(crate::config::Role::Viewer),
            get(agents::inbox),
        ),
        route(
            Method::GET,
            "/api/v1/agents/{id}/events",
            AgentOr(crate::config::Role::Supervisor),
            get(agents::events),
        ),
        route(
            Method::GET,
            "/api/v1/members",
            Role(crate::config::Role::Viewer),
            get(agents::list_members),
        ),
        route(
            Method::POST,
            "/api/v1/members",
            Role(crate::config::Role::Supervisor),
            post(agents::add_members),
        ),
        route(
            Method::DELETE,
            "/api/v1/members",
            Role(crate::config::Role::Supervisor),
            axum::routing::delete(agents::remove_members),
        ),
        route(
            Method::GET,
            "/api/v1/campaigns/{name}/monitor",
            Role(crate::config::Role::Viewer),
            get(agents::monitor),
        ),
        route(
            Method::GET,
            "/api/v1/consent",
            Role(crate::config::Role::Viewer),
            get(consent::get),
        ),
        route(
            Method::POST,
            "/api/v1/consent",
            Role(crate::config::Role::Operator),
            post(consent::change),
        ),
        upload(
            Method::POST,
            "/api/v1/imports",
            Role(crate::config::Role::Operator),
            post(uploads::import_messages),
        ),
        upload(
            Method::POST,
            "/api/v1/dncr",
            Role(crate::config::Role::Operator),
            post(uploads::import_dncr),
        ),
        route(
            Method::GET,
            "/api/v1/dncr",
            Role(crate::config::Role::Viewer),
            get(uploads::list_dncr),
        ),
        route(
            Method::DELETE,
            "/api/v1/dncr/{phone}",
            Role(crate::config::Role::Operator),
            axum::routing::delete(uploads::delete_dncr),
        ),
        route(
            Method::GET,
            "/api/v1/dialers",
            Role(crate::config::Role::Viewer),
            get(dialers::list),
        ),
        route(
            Method::GET,
            "/api/v1/dialers/{name}",
            Role(crate::config::Role::Viewer),
            get(dialers::get),
        ),
        route(
            Method::POST,
            "/api/v1/dialers/{name}/stop",
            Role(crate::config::Role::Operator),
            post(dialers::stop),
        ),
        route(
            Method::POST,
            "/api/v1/dialers/{name}/start",
            Role(crate::config::Role::Operator),
            post(dialers::start),
        ),
        route(
            Method::DELETE,
            "/api/v1/dialers/{name}/pending",
            Role(crate::config::Role::Operator),
            axum::routing::delete(dialers::cancel_pending),
        ),
        // Events to the portal (src/notify): the stream and the webhooks.
        route(
            Method::GET,
            "/api/v1/events",
            Role(crate::config::Role::Viewer),
            get(events::stream),
        ),
        route(
            Method::GET,
            "/api/v1/webhooks",
            Role(crate::config::Role::Viewer),
            get(webhooks::list),
        ),
        route(
            Method::GET,
            "/api/v1/webhooks/{name}/dead-letters",
            Role(crate::config::Role::Viewer),
            get(webhooks::dead_letters),
        ),
        route(
            Method::POST,
            "/api/v1/webhooks/{name}/dead-letters/replay",
            Role(crate::config::Role::Operator),
            post(webhooks::replay_all),
        ),
        route(
            Method::POST,
            "/api/v1/webhooks/{name}/dead-letters/{id}/replay",
            Role(crate::config::Role::Operator),
            post(webhooks::replay),
        ),
        route(
            Method::GET,
            "/api/v1/whatsapp",
            Role(crate::config::Role::Viewer),
            get(whatsapp::get),
        ),
    ]
}

/// The router, with authentication, limits and metrics on every route.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for spec in routes() {
        let access = spec.access;
        let body = spec.body;
        let handler = spec.handler.route_layer(middleware::from_fn_with_state(
            state.clone(),
            move |st: State<AppState>, req: Request, next: Next| guard(st, access, body, req, next),
        ));
        router = router.route(spec.path, handler);
    }
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        // Limits are enforced per route by `guard`, which knows the route.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(request_line::limit_target))
        .with_state(state)
}

async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}; see /api/v1/openapi.json", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!(
            "{method} is not allowed on {}; see /api/v1/openapi.json",
            uri.path()
        ),
    )
}

/// Authentication, role check, body limit, timeout and metrics for one
/// route.
async fn guard(
    State(st): State<AppState>,
    access: Access,
    body: BodyLimit,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let config = st.shared.config();
    let response = match check(&config, access, body, &req) {
        Ok((limit, caller)) => {
            let mut req = req;
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            // Bodies without a length (chunked) are cut at the limit while read.
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            let req = req.map(|b| Body::new(http_body_util::Limited::new(b, limit)));
            let timeout = config.api.request_timeout;
            if body == BodyLimit::Upload {
                // Uploads may legitimately take long; their handler bounds
                // the size instead.
                next.run(req).await
            } else if !matches!(req.method(), &Method::GET | &Method::HEAD) {
                // A write is never abandoned: a job still queued at the
                // deadline is not run (503, nothing stored), one that
                // started is waited for, so the answer is always true.
                let deadline = std::time::Instant::now() + timeout;
                crate::store::with_write_deadline(deadline, next.run(req)).await
            } else {
                match tokio::time::timeout(timeout, next.run(req)).await {
                    Ok(r) => r,
                    Err(_) => ApiError::unavailable(
                        "timeout",
                        format!(
                            "the request took longer than {} s and was abandoned",
                            timeout.as_secs()
                        ),
                    )
                    .into_response(),
                }
            }
        }
        Err(e) => {
            drain(req).await;
            e.into_response()
        }
    };
    st.shared
        .metrics
        .api_requests
        .get_or_create(&RouteLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Reads and drops a refused request's body, so that a client still
/// writing it gets to read our answer instead of a connection reset. Only
/// up to a cap, and briefly: a huge upload is simply cut off.
async fn drain(req: Request) {
    use http_body_util::BodyExt;
    const CAP: usize = 1024 * 1024;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > CAP) {
        return;
    }
    let body = http_body_util::Limited::new(req.into_body(), CAP);
    let _ = tokio::time::timeout(Duration::from_secs(2), body.collect()).await;
}

/// Token, role and declared size; the body limit to apply when they pass.
/// Who called a route with a token: its name (never its secret) and role.
/// Handlers that record who did something (closing an interaction, a
/// consent change) take it from the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// The agent an agent's token is.
    pub agent: Option<String>,
}

impl Caller {
    /// As the records say who acted: `api:<token name>`.
    pub fn label(&self) -> String {
        format!("api:{}", self.name)
    }

    /// Refuses an agent's token acting on another agent's things (403);
    /// every other role that reached the handler may.
    pub fn may_act_as(&self, agent: &str) -> Result<(), ApiError> {
        match (&self.agent, self.role) {
            (Some(own), Role::Agent) if own == agent => Ok(()),
            (_, Role::Agent) => Err(ApiError::forbidden(format!(
                "an agent's token acts only for its own agent, not {agent:?}"
            ))),
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the route has no caller; it must need a token"))
    }
}

fn check(
    config: &crate::config::Config,
    access: Access,
    body: BodyLimit,
    req: &Request,
) -> Result<(u64, Option<Caller>), ApiError> {
    if access == Access::GatewayPush {
        check_push_source(config, req)?;
    }
    let mut caller = None;
    if let Access::Role(need) | Access::AgentOr(need) = access {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // RFC 9110 §11.1: the scheme is case-insensitive.
            .and_then(|v| {
                let (scheme, token) = v.trim_start().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::unauthorized(
                "send a token in the header Authorization: Bearer <token> (tokens are configured in [[api.tokens]])",
            ));
        };
        let Some(token) = config.token_for(presented) else {
            return Err(ApiError::unauthorized(
                "the bearer token is not one of the configured tokens",
            ));
        };
        let role = token.role;
        caller = Some(Caller {
            name: token.name.clone(),
            role,
            agent: token.agent.clone(),
        });
        let agent_route = matches!(access, Access::AgentOr(_)) && role == Role::Agent;
        if !role.grants(need) && !agent_route {
            return Err(ApiError::forbidden(format!(
                "this route needs the {} role; the token has the {} role",
                need.as_str(),
                role.as_str()
            )));
        }
    }
    let limit = match body {
        BodyLimit::Json => config.api.max_body_bytes as u64,
        BodyLimit::Upload => config.api.max_upload_bytes,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    Ok((limit, caller))
}

/// The gateway named by `/api/v1/gateways/{name}/...`, percent-decoded.
fn gateway_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/gateways/")?;
    let raw = rest.split('/').next()?;
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A push is taken only from an address in the gateway's `push_allow`.
fn check_push_source(config: &crate::config::Config, req: &Request) -> Result<(), ApiError> {
    let name = gateway_in_path(req.uri().path()).unwrap_or_default();
    let allow = match config.gateway(&name).map(|g| g.settings.push_source()) {
        Some(crate::config::PushSource::Allow(allow)) => allow,
        // The transport checks the request's signature.
        Some(crate::config::PushSource::Signed) => return Ok(()),
        Some(crate::config::PushSource::None) => {
            return Err(ApiError::not_found(format!(
                "gateway {name:?} is of a kind that takes no pushes"
            )));
        }
        None => {
            return Err(ApiError::not_found(format!(
                "no gateway {name:?} in the config"
            )));
        }
    };
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    match peer {
        Some(ip) if allow.contains(ip) => Ok(()),
        Some(ip) => {
            tracing::warn!(gateway = %name, peer = %ip, "push refused: address not in push_allow");
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "push_not_allowed",
                "Push source not allowed",
                format!(
                    "pushes for gateway {name:?} are taken only from the addresses in its push_allow; {ip} is not one of them"
                ),
            ))
        }
        None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "push_not_allowed",
            "Push source not allowed",
            "the peer address of this connection is unknown",
        )),
    }
}

/// The API's listening socket, bound before READY=1 is sent.
pub struct Server {
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: AppState,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source} (is another smsgate or service using that port?)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot load the API's TLS certificate or key: {0}")]
    Tls(String),
}

impl Server {
    pub async fn bind(state: AppState) -> Result<Self, ServeError> {
        let config = state.shared.config();
        let addr = config.api.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let tls = match &config.api.tls {
            Some(files) => Some(load_tls(&files.cert, &files.key)?),
            None => None,
        };
        Ok(Self {
            listener,
            tls,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `stop`, then lets open requests finish.
    ///
    /// A connection holds one of `max_connections` slots only once its
    /// first request has arrived whole. Before that it is a newcomer:
    /// newcomers have [`NEWCOMER_TIMEOUT`] to finish their TLS handshake
    /// and send their headers, and at most `max_connections` of them wait
    /// at once; beyond, the oldest is dropped. A real client sends its
    /// request within milliseconds of connecting, so only idle and
    /// trickling sockets are ever the oldest: they cannot starve the
    /// clients that speak, and `/healthz` answers at once.
    pub async fn serve(self, stop: CancellationToken) {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let app = router(self.state.clone());
        let max = self.state.shared.config().api.max_connections;
        let slots = Arc::new(tokio::sync::Semaphore::new(max));
        let newcomers = Arc::new(Newcomers::new(max));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                a = self.listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: wait rather than spin or die.
                        tracing::warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let (id, evicted) = newcomers.admit();
            // Set once the first request has arrived: from then on the
            // connection holds a slot and is no newcomer.
            let slot: Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>> =
                Arc::default();
            let app = app.clone();
            let (service_slot, service_slots, service_newcomers) =
                (slot.clone(), slots.clone(), newcomers.clone());
            let timeout = self.state.shared.config().api.request_timeout;
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    let app = app.clone();
                    let (slot, slots, newcomers) = (
                        service_slot.clone(),
                        service_slots.clone(),
                        service_newcomers.clone(),
                    );
                    async move {
                        use tower::ServiceExt;
                        let first = slot.lock().map(|s| s.is_none()).unwrap_or(false);
                        if first {
                            newcomers.arrived(id);
                            match tokio::time::timeout(timeout, slots.acquire_owned()).await {
                                Ok(Ok(p)) => {
                                    if let Ok(mut s) = slot.lock() {
                                        *s = Some(p);
                                    }
                                }
                                _ => {
                                    return Ok::<_, std::convert::Infallible>(
                                        ApiError::unavailable(
                                            "busy",
                                            "every connection slot ([api] max_connections) is taken; try again shortly",
                                        )
                                        .into_response(),
                                    );
                                }
                            }
                        }
                        app.oneshot(req.map(Body::new)).await
                    }
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(NEWCOMER_TIMEOUT)
                .keep_alive(true);
            let tls = self.tls.clone();
            let watcher = graceful.watcher();
            let newcomers = newcomers.clone();
            tokio::spawn(async move {
                let served = async {
                    match tls {
                        None => {
                            let Some(stream) = request_line::screen(stream, NEWCOMER_TIMEOUT).await
                            else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            let _ = watcher.watch(conn).await;
                        }
                        Some(acceptor) => {
                            let Ok(Ok(tls)) =
                                tokio::time::timeout(NEWCOMER_TIMEOUT, acceptor.accept(stream))
                                    .await
                            else {
                                return;
                            };
                            let Some(tls) = request_line::screen(tls, NEWCOMER_TIMEOUT).await
                            else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(tls), service);
                            let _ = watcher.watch(conn).await;
                        }
                    }
                };
                tokio::select! {
                    _ = served => {}
                    // Dropped as the oldest newcomer: only while it has not
                    // sent a whole request (after that it is never evicted).
                    _ = evicted.cancelled() => {}
                }
                newcomers.arrived(id);
                drop(slot);
            });
        }
        drop(self.listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    }
}

/// How long a new connection may take to finish its TLS handshake and send
/// its request headers (and how long a kept-alive one may sit between
/// requests): long enough for any real client on a LAN, short enough that
/// silent sockets go quickly.
const NEWCOMER_TIMEOUT: Duration = Duration::from_secs(3);

/// Connections that have not sent a whole request yet, oldest first. When
/// more than `max` wait, the oldest is dropped.
struct Newcomers {
    max: usize,
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::VecDeque<(u64, CancellationToken)>>,
}

impl Newcomers {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next: std::sync::atomic::AtomicU64::new(0),
            waiting: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// A new connection: its id and the token that drops it if it gets
    /// old waiting.
    fn admit(&self) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        if let Ok(mut w) = self.waiting.lock() {
            while w.len() >= self.max {
                if let Some((_, oldest)) = w.pop_front() {
                    oldest.cancel();
                }
            }
            w.push_back((id, token.clone()));
        }
        (id, token)
    }

    /// The connection sent its first request (or ended): no longer waiting.
    fn arrived(&self, id: u64) {
        if let Ok(mut w) = self.waiting.lock() {
            if let Some(i) = w.iter().position(|(n, _)| *n == id) {
                w.remove(i);
            }
        }
    }
}

fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServeError::Tls(format!("{}: {e}", key.display())))?;
    let provider = crate::tls::provider();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
