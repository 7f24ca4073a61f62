//! The HTTP client of one Dinstar gateway.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url, header};
use serde_json::Value;

use super::tls::{self, TlsVerify};
use smsgate_proto::dinstar::digest::{self, Challenge};
use smsgate_proto::dinstar::wire::{
    self, DeliverStatus, DeliverStatusQuery, Encoding, Envelope, IncomingBatch, MAX_NUMBER_BYTES,
    MAX_PORT, MAX_QUERY_IDS, MAX_TEXT_CHARS, PortInfo, PortInfoType, SendAccepted, SmsResult,
    UssdPortStatus,
};

/// Largest reply body read from a gateway; more is an unreadable reply.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;
/// Longest USSD text the gateway takes, in bytes.
const MAX_USSD_BYTES: usize = 60;

/// How the client authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthScheme {
    /// HTTP Digest (what real gateways challenge with). The first request
    /// carries its real body without credentials; the challenge is then
    /// cached and every later request is authenticated up front.
    #[default]
    Digest,
    /// Preemptive HTTP Basic on every request (older firmware).
    Basic,
}

/// Settings of one gateway's client.
#[derive(Clone)]
pub struct DinstarClientConfig {
    /// The gateway's name in smsgate's config (logs and errors).
    pub name: String,
    /// `http://host[:port]` or `https://host[:port]`, no `/api` suffix.
    pub base_url: String,
    pub user: String,
    /// Never logged, never put in an error, hidden from `Debug`.
    pub password: String,
    pub auth: AuthScheme,
    /// Certificate check on `https://` URLs.
    pub tls: TlsVerify,
    /// TCP (and TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (send, wait, read the reply).
    pub request_timeout: Duration,
    /// How long an idle keep-alive connection is kept. Embedded web servers
    /// close idle connections early; reusing one they just closed breaks a
    /// POST in flight, so keep this short.
    pub pool_idle_timeout: Duration,
    /// First pause after the gateway refuses our credentials.
    pub auth_backoff_initial: Duration,
    /// The pause doubles after each refusal up to this.
    pub auth_backoff_max: Duration,
}

impl DinstarClientConfig {
    /// A config with the defaults: Digest, system TLS verification, 5 s
    /// connect, 20 s request, 2 s idle, backoff 1 min doubling to 30 min.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        DinstarClientConfig {
            name: name.into(),
            base_url: base_url.into(),
            user: user.into(),
            password: password.into(),
            auth: AuthScheme::Digest,
            tls: TlsVerify::System,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            pool_idle_timeout: Duration::from_secs(2),
            auth_backoff_initial: Duration::from_secs(60),
            auth_backoff_max: Duration::from_secs(30 * 60),
        }
    }
}

impl fmt::Debug for DinstarClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DinstarClientConfig")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("auth_backoff_initial", &self.auth_backoff_initial)
            .field("auth_backoff_max", &self.auth_backoff_max)
            .finish()
    }
}

/// What went wrong talking to the gateway. No variant ever holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DinstarError {
    /// Refused locally, nothing was sent.
    #[error("the text is {length} characters long (UCS-2 units); the gateway takes at most 670")]
    TextTooLong { length: usize },
    /// Refused locally, nothing was sent.
    #[error("invalid request, not sent: {0}")]
    InvalidRequest(String),
    /// `550`: no port can send (no SIM, not registered, powered off).
    #[error("the gateway has no usable port for this message (error 550)")]
    PortUnusable,
    /// `400`, `413`, `404`: sending the same request again will not help.
    #[error("the gateway refused the request (error {code}): {reason}")]
    Permanent { code: u16, reason: String },
    /// `500`, timeouts, broken connections, unreadable replies.
    /// `never_left` is true only when the connection was never made, so the
    /// gateway cannot have seen the request and resending is safe.
    /// `gateway_code` is set when the gateway answered with an error code.
    #[error("temporary failure: {reason}")]
    Temporary {
        reason: String,
        never_left: bool,
        gateway_code: Option<u16>,
    },
    /// HTTP 401/403 although we sent credentials (or the gateway forbids
    /// us). The client now backs off for `retry_in` before it tries again.
    #[error(
        "the gateway refused the credentials (HTTP {status}: {detail}); no new attempt for {} s",
        retry_in.as_secs()
    )]
    Auth {
        status: u16,
        detail: String,
        retry_in: Duration,
    },
    /// The client refuses to contact the gateway until the backoff ends.
    #[error(
        "not contacting the gateway for another {} s: {reason}",
        remaining.as_secs().max(1)
    )]
    BackingOff { remaining: Duration, reason: String },
    /// The client could not be built (bad URL, TLS setup).
    #[error("the gateway client could not be set up: {0}")]
    Setup(String),
}

impl DinstarError {
    /// Whether trying the same request later may work.
    pub fn is_temporary(&self) -> bool {
        matches!(
            self,
            DinstarError::Temporary { .. }
                | DinstarError::Auth { .. }
                | DinstarError::BackingOff { .. }
        )
    }

    /// Whether the gateway provably never received the request.
    pub fn never_left(&self) -> bool {
        match self {
            DinstarError::Temporary { never_left, .. } => *never_left,
            DinstarError::TextTooLong { .. }
            | DinstarError::InvalidRequest(_)
            | DinstarError::BackingOff { .. }
            | DinstarError::Setup(_) => true,
            // The gateway answered: it saw the request and did not queue it.
            DinstarError::PortUnusable
            | DinstarError::Permanent { .. }
            | DinstarError::Auth { .. } => false,
        }
    }
}

/// Why and until when the client refuses to contact its gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffState {
    pub until: Instant,
    pub remaining: Duration,
    /// How many auth refusals in a row.
    pub refusals: u32,
    pub reason: String,
}

#[derive(Debug)]
struct Backoff {
    until: Option<Instant>,
    next: Duration,
    refusals: u32,
    reason: String,
}

#[derive(Debug)]
struct DigestSession {
    challenge: Challenge,
    nc: u32,
}

struct Inner {
    name: String,
    base: String,
    user: String,
    password: String,
    auth: AuthScheme,
    backoff_initial: Duration,
    backoff_max: Duration,
    http: reqwest::Client,
    digest: Mutex<Option<DigestSession>>,
    backoff: Mutex<Backoff>,
    counter: AtomicU64,
    /// Whether the gateway has answered since the last refusal (our
    /// credentials are good, or it wants none).
    accepted: AtomicBool,
    /// Held by the one request in flight while `accepted` is false.
    auth_gate: tokio::sync::Mutex<()>,
}

/// The client of one gateway. Cheap to clone; clones share the cached
/// challenge and the backoff state.
#[derive(Clone)]
pub struct DinstarClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for DinstarClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DinstarClient")
            .field("name", &self.inner.name)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_port(port: u8) -> Result<(), DinstarError> {
    if port > MAX_PORT {
        return Err(DinstarError::InvalidRequest(format!(
            "port {port} does not exist (ports are 0 to {MAX_PORT})"
        )));
    }
    Ok(())
}

/// What one HTTP exchange gave: the status and the body.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl DinstarClient {
    /// Builds the client; no request is made.
    pub fn new(cfg: DinstarClientConfig) -> Result<DinstarClient, DinstarError> {
        let base = cfg.base_url.trim().trim_end_matches('/').to_string();
        let url = Url::parse(&base)
            .map_err(|e| DinstarError::Setup(format!("base URL {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DinstarError::Setup(format!(
                "base URL {base:?} must be http://host[:port] or https://host[:port]"
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(DinstarError::Setup(
                "put the credentials in user/password, not in the base URL".into(),
            ));
        }
        let tls_cfg =
            tls::client_config(&cfg.tls).map_err(|e| DinstarError::Setup(format!("TLS: {e}")))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_cfg)
            .no_proxy()
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.request_timeout)
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(2)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("smsgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DinstarError::Setup(format!("HTTP client: {e}")))?;
        Ok(DinstarClient {
            inner: Arc::new(Inner {
                name: cfg.name,
                base,
                user: cfg.user,
                password: cfg.password,
                auth: cfg.auth,
                backoff_initial: cfg.auth_backoff_initial,
                backoff_max: cfg.auth_backoff_max.max(cfg.auth_backoff_initial),
                http,
                digest: Mutex::new(None),
                backoff: Mutex::new(Backoff {
                    until: None,
                    next: cfg.auth_backoff_initial,
                    refusals: 0,
                    reason: String::new(),
                }),
                counter: AtomicU64::new(0),
                accepted: AtomicBool::new(false),
                auth_gate: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The gateway's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The auth backoff in force, if any.
    pub fn backoff(&self) -> Option<BackoffState> {
        let b = lock(&self.inner.backoff);
        let until = b.until?;
        let now = Instant::now();
        (until > now).then(|| BackoffState {
            until,
            remaining: until - now,
            refusals: b.refusals,
            reason: b.reason.clone(),
        })
    }

    /// Ends the backoff now (an operator fixed the password, say).
    pub fn clear_backoff(&self) {
        let mut b = lock(&self.inner.backoff);
        b.until = None;
        b.refusals = 0;
        b.next = self.inner.backoff_initial;
    }

    // -----------------------------------------------------------------------
    // Endpoints
    // -----------------------------------------------------------------------

    /// Queues one SMS to `to` on `port` with our `user_id`, asking for a
    /// delivery report. `Ok` means the gateway accepted it (error_code 202,
    /// whatever the HTTP status); the network result comes later through
    /// [`query_sms_result`](Self::query_sms_result) or a push.
    pub async fn send_sms(
        &self,
        port: u8,
        user_id: u32,
        to: &str,
        text: &str,
        encoding: Encoding,
    ) -> Result<SendAccepted, DinstarError> {
        let length = wire::text_length(text);
        if length > MAX_TEXT_CHARS {
            return Err(DinstarError::TextTooLong { length });
        }
        if text.is_empty() {
            return Err(DinstarError::InvalidRequest("the text is empty".into()));
        }
        check_port(port)?;
        if user_id > i32::MAX as u32 {
            return Err(DinstarError::InvalidRequest(format!(
                "user_id {user_id} is above 2147483647"
            )));
        }
        let digits = to.strip_prefix('+').unwrap_or(to);
        if digits.is_empty()
            || to.len() > MAX_NUMBER_BYTES
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(DinstarError::InvalidRequest(format!(
                "destination {to:?} is not a number of at most {MAX_NUMBER_BYTES} digits"
            )));
        }
        let body = wire::send_sms_body(port, user_id, to, text, encoding);
        let reply = self
            .call(
                Method::POST,
                "/api/send_sms".into(),
                Some(&body),
                Some(port),
            )
            .await?;
        let env = classify(&reply)?;
        match env.error_code {
            200 | 202 => {
                let acc = wire::send_accepted(&env);
                tracing::debug!(
                    gateway = %self.inner.name, port, user_id,
                    task_id = acc.task_id, "gateway accepted the SMS"
                );
                Ok(acc)
            }
            code => Err(code_error(&env, code)),
        }
    }

    /// Send results for our user ids (any number; asked 32 at a time).
    pub async fn query_sms_result(&self, user_ids: &[u32]) -> Result<Vec<SmsResult>, DinstarError> {
        let mut out = Vec::new();
        for chunk in user_ids.chunks(MAX_QUERY_IDS) {
            let body = wire::query_sms_result_body(chunk);
            let env = self
                .query_post("/api/query_sms_result", &body, None)
                .await?;
            out.extend(wire::sms_results(&env));
        }
        Ok(out)
    }

    /// Delivery reports (numbers asked 32 at a time; no numbers = all).
    pub async fn query_sms_deliver_status(
        &self,
        q: &DeliverStatusQuery,
    ) -> Result<Vec<DeliverStatus>, DinstarError> {
        for p in &q.ports {
            check_port(*p)?;
        }
        let chunks: Vec<Vec<String>> = if q.numbers.is_empty() {
            vec![Vec::new()]
        } else {
            q.numbers
                .chunks(MAX_QUERY_IDS)
                .map(<[String]>::to_vec)
                .collect()
        };
        let mut out = Vec::new();
        for numbers in chunks {
            let part = DeliverStatusQuery {
                numbers,
                ..q.clone()
            };
            let body = wire::deliver_status_body(&part);
            let env = self
                .query_post("/api/query_sms_deliver_status", &body, None)
                .await?;
            out.extend(wire::deliver_statuses(&env));
        }
        Ok(out)
    }

    /// Port / SIM state. `ports` empty = every port; `info` empty = the
    /// health set ([`PortInfoType::HEALTH`]).
    pub async fn get_port_info(
        &self,
        ports: &[u8],
        info: &[PortInfoType],
    ) -> Result<Vec<PortInfo>, DinstarError> {
        for p in ports {
            check_port(*p)?;
        }
        let info = if info.is_empty() {
            PortInfoType::HEALTH
        } else {
            info
        };
        let mut target = format!(
            "/api/get_port_info?info_type={}",
            wire::query_list(info.iter().map(|i| i.as_wire()))
        );
        if !ports.is_empty() {
            target.push_str(&format!("&port={}", wire::query_list(ports)));
        }
        let env = self.query_get(target, ports.first().copied()).await?;
        Ok(wire::port_infos(&env))
    }

    /// Received SMS with an id above `after_id` (`flag=all`, so nothing is
    /// marked read and a crash loses nothing). `ports` empty = all ports.
    /// Messages at or below `after_id` are dropped even if the gateway
    /// sends them.
    pub async fn query_incoming_sms(
        &self,
        after_id: u64,
        ports: &[u8],
    ) -> Result<IncomingBatch, DinstarError> {
        for p in ports {
            check_port(*p)?;
        }
        let mut target = format!("/api/query_incoming_sms?flag=all&incoming_sms_id={after_id}");
        if !ports.is_empty() {
            target.push_str(&format!("&port={}", wire::query_list(ports)));
        }
        let env = self.query_get(target, None).await?;
        let mut batch = wire::incoming_batch(&env);
        batch
            .sms
            .retain(|m| m.incoming_sms_id.is_some_and(|id| id > after_id));
        Ok(batch)
    }

    /// Sends a USSD string (e.g. `*100#`) on a port; the per-port status is
    /// 200 sent, 486 busy, 503 not registered.
    pub async fn send_ussd(
        &self,
        port: u8,
        text: &str,
    ) -> Result<Vec<UssdPortStatus>, DinstarError> {
        check_port(port)?;
        if text.is_empty() || text.len() > MAX_USSD_BYTES {
            return Err(DinstarError::InvalidRequest(format!(
                "a USSD string is 1 to {MAX_USSD_BYTES} bytes"
            )));
        }
        let body = wire::send_ussd_body(port, text);
        let reply = self
            .call(
                Method::POST,
                "/api/send_ussd".into(),
                Some(&body),
                Some(port),
            )
            .await?;
        let env = classify(&reply)?;
        match env.error_code {
            200 | 202 => Ok(wire::ussd_statuses(&env)),
            code => Err(code_error(&env, code)),
        }
    }

    /// The USSD reply on a port; `None` while none has arrived.
    pub async fn query_ussd_reply(&self, port: u8) -> Result<Option<String>, DinstarError> {
        check_port(port)?;
        let env = self
            .query_get(format!("/api/query_ussd_reply?port={port}"), Some(port))
            .await?;
        Ok(wire::ussd_replies(&env)
            .into_iter()
            .find(|r| r.port.is_none_or(|p| p == port))
            .and_then(|r| r.text))
    }

    /// Stops a send task; `Ok(false)` when the gateway does not know it.
    pub async fn stop_sms(&self, task_id: u64) -> Result<bool, DinstarError> {
        let reply = self
            .call(
                Method::GET,
                format!("/api/stop_sms?task_id={task_id}"),
                None,
                None,
            )
            .await?;
        let env = classify(&reply)?;
        match env.error_code {
            200 => Ok(true),
            404 => Ok(false),
            code => Err(code_error(&env, code)),
        }
    }

    /// SMS waiting in the gateway's queue.
    pub async fn query_sms_in_queue(&self) -> Result<u64, DinstarError> {
        let env = self
            .query_get("/api/query_sms_in_queue".into(), None)
            .await?;
        Ok(wire::field_u64(&env.body, "in_queue").unwrap_or(0))
    }

    async fn query_post(
        &self,
        path: &str,
        body: &Value,
        port: Option<u8>,
    ) -> Result<Envelope, DinstarError> {
        let reply = self
            .call(Method::POST, path.to_string(), Some(body), port)
            .await?;
        let env = classify(&reply)?;
        match env.error_code {
            200 => Ok(env),
            code => Err(code_error(&env, code)),
        }
    }

    async fn query_get(&self, target: String, port: Option<u8>) -> Result<Envelope, DinstarError> {
        let reply = self.call(Method::GET, target, None, port).await?;
        let env = classify(&reply)?;
        match env.error_code {
            200 => Ok(env),
            code => Err(code_error(&env, code)),
        }
    }

    // -----------------------------------------------------------------------
    // HTTP and authentication
    // -----------------------------------------------------------------------

    fn check_backoff(&self) -> Result<(), DinstarError> {
        if let Some(b) = self.backoff() {
            return Err(DinstarError::BackingOff {
                remaining: b.remaining,
                reason: b.reason,
            });
        }
        Ok(())
    }

    fn cnonce(&self) -> String {
        let mut buf = [0u8; 12];
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf).is_err() {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            buf[..8].copy_from_slice(&t.to_le_bytes());
            buf[8..].copy_from_slice(&(n as u32).to_le_bytes());
        }
        digest::hex(&buf)
    }

    /// The `Authorization` value for the next request, and whether it came
    /// from a challenge cached before this call.
    fn authorization(&self, method: &Method, uri: &str) -> Option<String> {
        match self.inner.auth {
            AuthScheme::Basic => Some(digest::basic_authorization(
                &self.inner.user,
                &self.inner.password,
            )),
            AuthScheme::Digest => {
                let cnonce = self.cnonce();
                let mut g = lock(&self.inner.digest);
                let s = g.as_mut()?;
                s.nc = s.nc.wrapping_add(1).max(1);
                Some(digest::authorization(
                    &s.challenge,
                    &self.inner.user,
                    &self.inner.password,
                    method.as_str(),
                    uri,
                    s.nc,
                    &cnonce,
                ))
            }
        }
    }

    /// Records an auth refusal, starts or extends the backoff, and returns
    /// the error for the caller.
    fn refuse(&self, status: StatusCode, detail: String) -> DinstarError {
        let mut b = lock(&self.inner.backoff);
        let pause = b.next;
        b.until = Some(Instant::now() + pause);
        b.refusals = b.refusals.saturating_add(1);
        b.next = (pause * 2).min(self.inner.backoff_max);
        b.reason = format!(
            "the gateway refused the credentials of user {:?} (HTTP {}: {detail}), refusal {} in a row",
            self.inner.user,
            status.as_u16(),
            b.refusals
        );
        tracing::warn!(
            gateway = %self.inner.name,
            status = status.as_u16(),
            refusals = b.refusals,
            backoff_s = pause.as_secs(),
            "gateway refused our credentials; backing off"
        );
        drop(b);
        self.inner.accepted.store(false, Ordering::Release);
        // A refused challenge is useless; start over next time.
        *lock(&self.inner.digest) = None;
        DinstarError::Auth {
            status: status.as_u16(),
            detail,
            retry_in: pause,
        }
    }

    fn auth_ok(&self) {
        let mut b = lock(&self.inner.backoff);
        if b.refusals > 0 || b.until.is_some() {
            b.refusals = 0;
            b.until = None;
            b.next = self.inner.backoff_initial;
        }
    }

    /// One logical call: at most two HTTP requests (the second only after a
    /// Digest challenge), always with the real body.
    async fn call(
        &self,
        method: Method,
        target: String,
        body: Option<&Value>,
        port: Option<u8>,
    ) -> Result<Reply, DinstarError> {
        self.check_backoff()?;
        // Until the gateway has accepted our credentials, one request at a
        // time carries them: a wrong password then costs one refusal, not
        // one per poller in flight, and never reaches the gateway's
        // lock-out (a few failures lock our address out). The requests
        // that waited meet the backoff the refusal started.
        let _gate = if self.inner.accepted.load(Ordering::Acquire) {
            None
        } else {
            let gate = self.inner.auth_gate.lock().await;
            self.check_backoff()?;
            // The request before us may have been answered meanwhile: then
            // no need to hold the others back.
            (!self.inner.accepted.load(Ordering::Acquire)).then_some(gate)
        };
        let url = Url::parse(&format!("{}{}", self.inner.base, target))
            .map_err(|e| DinstarError::InvalidRequest(format!("URL for {target}: {e}")))?;
        // The Digest uri must be byte-identical to the request target.
        let uri = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let body_bytes = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| {
                DinstarError::InvalidRequest(format!("cannot encode the body: {e}"))
            })?),
            None => None,
        };
        // Never send a POST with an empty body: real gateways drop it.
        if method == Method::POST && body_bytes.as_ref().is_none_or(|b| b.is_empty()) {
            return Err(DinstarError::InvalidRequest(
                "a POST to the gateway needs a body".into(),
            ));
        }
        let path = url.path().to_string();
        for attempt in 0..2 {
            let had_cache = lock(&self.inner.digest).is_some();
            let auth = self.authorization(&method, &uri);
            let sent_credentials = auth.is_some();
            let mut req = self.inner.http.request(method.clone(), url.clone());
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a);
            }
            if let Some(b) = &body_bytes {
                req = req
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            let started = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Err(self.transport_error(&path, port, &e)),
            };
            let status = resp.status();
            let challenge = Challenge::from_headers(
                resp.headers()
                    .get_all(header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            );
            let body = read_body(resp)
                .await
                .map_err(|e| self.transport_error(&path, port, &e))?;
            tracing::debug!(
                gateway = %self.inner.name,
                port,
                path = %path,
                status = status.as_u16(),
                attempt,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "gateway replied"
            );
            if status == StatusCode::UNAUTHORIZED {
                if self.inner.auth == AuthScheme::Basic {
                    return Err(self.refuse(status, "Basic credentials refused".into()));
                }
                let ch = match challenge {
                    Ok(ch) => ch,
                    Err(e) => {
                        return Err(self.refuse(status, format!("no usable challenge: {e}")));
                    }
                };
                // Retry once: after a first unauthenticated request, or when
                // the cached nonce went stale or was replaced.
                let retry = attempt == 0 && (!sent_credentials || ch.stale || had_cache);
                if retry {
                    tracing::debug!(
                        gateway = %self.inner.name,
                        stale = ch.stale,
                        "Digest challenge received; retrying with credentials"
                    );
                    *lock(&self.inner.digest) = Some(DigestSession {
                        challenge: ch,
                        nc: 0,
                    });
                    continue;
                }
                return Err(self.refuse(status, "Digest credentials refused".into()));
            }
            if status == StatusCode::FORBIDDEN {
                let detail = String::from_utf8_lossy(&body[..body.len().min(100)])
                    .trim()
                    .to_string();
                let detail = if detail.is_empty() {
                    "forbidden".to_string()
                } else {
                    format!("forbidden: {detail}")
                };
                return Err(self.refuse(status, detail));
            }
            if sent_credentials {
                self.auth_ok();
            }
            self.inner.accepted.store(true, Ordering::Release);
            return Ok(Reply { status, body });
        }
        // Both attempts asked for a challenge; unreachable in practice.
        Err(self.refuse(
            StatusCode::UNAUTHORIZED,
            "Digest credentials refused".into(),
        ))
    }

    fn transport_error(&self, path: &str, port: Option<u8>, e: &reqwest::Error) -> DinstarError {
        let never_left = e.is_connect();
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the reply broke off"
        } else {
            "the connection failed"
        };
        // reqwest errors carry the URL, never credentials (we put none in it).
        let mut detail = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            src = s.source();
        }
        tracing::warn!(gateway = %self.inner.name, port, path, never_left, error = %detail, "gateway request failed");
        DinstarError::Temporary {
            reason: format!("{path}: {what} ({detail})"),
            never_left,
            gateway_code: None,
        }
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() + chunk.len() > MAX_REPLY_BYTES {
            out.extend_from_slice(&chunk[..MAX_REPLY_BYTES - out.len()]);
            break;
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads the envelope of a reply; an unreadable body is a temporary error.
fn classify(reply: &Reply) -> Result<Envelope, DinstarError> {
    wire::parse_envelope(&reply.body).map_err(|e| {
        let hint = if reply.status == StatusCode::NOT_FOUND {
            " (is the gateway's new-version API switched on?)"
        } else {
            ""
        };
        DinstarError::Temporary {
            reason: format!("HTTP {}, {e}{hint}", reply.status.as_u16()),
            never_left: false,
            gateway_code: None,
        }
    })
}

/// Turns a non-success `error_code` into an error.
fn code_error(env: &Envelope, code: u16) -> DinstarError {
    let reason = env
        .reason
        .clone()
        .unwrap_or_else(|| wire::error_code_words(code).to_string());
    match code {
        550 => DinstarError::PortUnusable,
        400 | 404 | 413 => DinstarError::Permanent { code, reason },
        _ => DinstarError::Temporary {
            reason: format!("the gateway answered error {code}: {reason}"),
            never_left: false,
            gateway_code: Some(code),
        },
    }
}

#[cfg(test)]
mod tests;
