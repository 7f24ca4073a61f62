//! A WhatsApp Business Cloud API (Meta) on 127.0.0.1, for smsgate's kind
//! `whatsapp-cloud`: `POST /{version}/{phone_number_id}/messages` with a
//! Bearer token, text and template bodies checked (templates known by name
//! and language with their parameter count; unknown: 132001), the 24-hour
//! window enforced (free text to a customer who has not written in 24 h:
//! 131047), replies with wamids, and statuses sent back by webhook signed
//! with `X-Hub-Signature-256` like Meta's.
//!
//! Control routes, under `/sim/` (never recorded):
//! - `GET /sim/requests`: every request to the API (see
//!   [`crate::http_provider::Recorded`]);
//! - `POST /sim/incoming` `{"from": "59899000001", "text": "hola"}` (also
//!   `"id"`, `"type"` and a whole `"message"` object): a customer writes
//!   in; the signed webhook is posted and smsgate's answer returned;
//! - `POST /sim/statuses` `{"statuses": ["sent", "delivered", "read"],
//!   "delay_ms": 50, "fail_code": 131026, "to": "598..."}`: which statuses
//!   follow an accepted message, in that order (out of order and
//!   "delivered" skipped on demand; "failed" carries `fail_code`), for
//!   every recipient or one;
//! - `POST /sim/error` `{"code": 190, "http_status": 401, "times": 1,
//!   "to": "598...", "hang": false}`: the next `times` sends (or those to
//!   `to`) fail with Meta's error `code`; `hang` accepts the message (its
//!   statuses follow) and never answers;
//! - `POST /sim/handshake` `{"verify_token": "...", "challenge": "..."}`:
//!   Meta's verification GET against the webhook URL; smsgate's answer
//!   returned.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use smsgate_proto::whatsapp_cloud as wa;
use tokio_util::sync::CancellationToken;

pub use crate::http_provider::Recorded;

const WINDOW: Duration = Duration::from_secs(24 * 3600);

/// An error the next sends (or those to one customer) get.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    pub code: i64,
    /// Default: what Meta uses for the code (401 for 190, 429 for the rate
    /// limits, 400 otherwise).
    #[serde(default)]
    pub http_status: Option<u16>,
    /// How many sends; none: 1 (with `to`: every send to it).
    #[serde(default)]
    pub times: Option<u32>,
    /// Only sends to this customer (digits), as long as it is set.
    #[serde(default)]
    pub to: Option<String>,
    /// Take the message (its statuses follow) and never answer.
    #[serde(default)]
    pub hang: bool,
}

/// A message the simulated Meta took (answered with a wamid, or taken and
/// left unanswered by a `hang` injection): what reached the customer.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub wamid: String,
    /// The customer's digits.
    pub to: String,
    /// The request body as sent.
    pub body: Value,
}

/// The statuses that follow an accepted message.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPlan {
    pub statuses: Vec<String>,
    #[serde(default = "default_delay")]
    pub delay_ms: u64,
    #[serde(default = "default_fail")]
    pub fail_code: i64,
    /// Only for this customer (digits).
    #[serde(default)]
    pub to: Option<String>,
}

fn default_delay() -> u64 {
    50
}
fn default_fail() -> i64 {
    131026
}

impl Default for StatusPlan {
    fn default() -> Self {
        Self {
            statuses: vec!["sent".into(), "delivered".into(), "read".into()],
            delay_ms: default_delay(),
            fail_code: default_fail(),
            to: None,
        }
    }
}

struct Shared {
    version: String,
    phone_number_id: String,
    display_number: String,
    access_token: String,
    app_secret: String,
    webhook_url: Option<String>,
    /// (name, language) → body parameters.
    templates: HashMap<(String, String), usize>,
    windows: Mutex<HashMap<String, Instant>>,
    errors: Mutex<VecDeque<Injection>>,
    errors_to: Mutex<HashMap<String, Injection>>,
    plan: Mutex<StatusPlan>,
    plans_to: Mutex<HashMap<String, StatusPlan>>,
    log: Mutex<Vec<Recorded>>,
    accepted: Mutex<Vec<Accepted>>,
    next: Mutex<u64>,
    client: reqwest::Client,
}

pub struct WhatsAppCloudSim;

impl WhatsAppCloudSim {
    pub fn builder() -> WhatsAppCloudSimBuilder {
        WhatsAppCloudSimBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            version: "v21.0".into(),
            phone_number_id: "106540352242922".into(),
            display_number: "15550001111".into(),
            access_token: "sim-access-token".into(),
            app_secret: "sim-app-secret".into(),
            webhook_url: None,
            templates: HashMap::from([(("hello_world".into(), "en_US".into()), 0)]),
            plan: StatusPlan::default(),
        }
    }
}

pub struct WhatsAppCloudSimBuilder {
    listen: SocketAddr,
    version: String,
    phone_number_id: String,
    display_number: String,
    access_token: String,
    app_secret: String,
    webhook_url: Option<String>,
    templates: HashMap<(String, String), usize>,
    plan: StatusPlan,
}

impl WhatsAppCloudSimBuilder {
    pub fn listen(mut self, a: SocketAddr) -> Self {
        self.listen = a;
        self
    }
    pub fn api_version(mut self, v: &str) -> Self {
        self.version = v.into();
        self
    }
    pub fn phone_number_id(mut self, v: &str) -> Self {
        self.phone_number_id = v.into();
        self
    }
    /// Our number as Meta shows it in `metadata.display_phone_number`.
    pub fn display_number(mut self, v: &str) -> Self {
        self.display_number = v.into();
        self
    }
    pub fn access_token(mut self, v: &str) -> Self {
        self.access_token = v.into();
        self
    }
    pub fn app_secret(mut self, v: &str) -> Self {
        self.app_secret = v.into();
        self
    }
    /// smsgate's push route of this gateway.
    pub fn webhook_url(mut self, v: Option<String>) -> Self {
        self.webhook_url = v;
        self
    }
    /// An approved template: name, language, body parameters.
    pub fn template(mut self, name: &str, language: &str, params: usize) -> Self {
        self.templates
            .insert((name.into(), language.into()), params);
        self
    }
    pub fn statuses(mut self, plan: StatusPlan) -> Self {
        self.plan = plan;
        self
    }

    pub async fn start(self) -> std::io::Result<WhatsAppCloudHandle> {
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let tls = crate::tls::any_certificate_client().map_err(std::io::Error::other)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            version: self.version,
            phone_number_id: self.phone_number_id,
            display_number: self.display_number,
            access_token: self.access_token,
            app_secret: self.app_secret,
            webhook_url: self.webhook_url,
            templates: self.templates,
            windows: Mutex::new(HashMap::new()),
            errors: Mutex::new(VecDeque::new()),
            errors_to: Mutex::new(HashMap::new()),
            plan: Mutex::new(self.plan),
            plans_to: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            accepted: Mutex::new(Vec::new()),
            next: Mutex::new(0),
            client,
        });
        let app = Router::new()
            .route("/sim/requests", axum::routing::get(requests))
            .route("/sim/incoming", axum::routing::post(incoming_route))
            .route("/sim/statuses", axum::routing::post(statuses_route))
            .route("/sim/error", axum::routing::post(error_route))
            .route("/sim/handshake", axum::routing::post(handshake_route))
            .route("/{version}/{phone}/messages", axum::routing::post(messages))
            .fallback(unknown)
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        tracing::info!(%addr, "WhatsApp Cloud API simulator listening");
        Ok(WhatsAppCloudHandle { addr, shared, stop })
    }
}

/// A running simulator; dropped, it stops.
pub struct WhatsAppCloudHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// How a webhook posted by [`WhatsAppCloudHandle::post_webhook`] is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing<'a> {
    /// With the app secret, as Meta does.
    Right,
    /// With another secret.
    With(&'a str),
    /// No X-Hub-Signature-256 at all.
    None,
}

impl WhatsAppCloudHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request to the API so far (control routes excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Every message taken so far, in order (refused sends excluded): the
    /// simulator's own record of what went out.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared
            .accepted
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    pub fn inject(&self, e: Injection) {
        inject(&self.shared, e);
    }

    pub fn set_statuses(&self, plan: StatusPlan) {
        set_plan(&self.shared, plan);
    }

    /// The webhook body of a customer's text message (`id` its wamid).
    pub fn incoming_body(&self, from: &str, id: &str, text: &str) -> Vec<u8> {
        let msg = json!({"from": from, "id": id, "timestamp": unix_now().to_string(), "type": "text", "text": {"body": text}});
        notification(&self.shared, from, json!({"messages": [msg]}))
    }

    /// A customer writes in: the window opens and the signed webhook is
    /// posted; smsgate's status and body.
    pub async fn incoming(&self, from: &str, text: &str) -> Result<(u16, String), String> {
        let id = wamid(&self.shared, "IN");
        open_window(&self.shared, from);
        let body = self.incoming_body(from, &id, text);
        post_signed(&self.shared, body, Signing::Right).await
    }

    /// Posts `body` to the webhook URL, signed as `signing` says.
    pub async fn post_webhook(
        &self,
        body: Vec<u8>,
        signing: Signing<'_>,
    ) -> Result<(u16, String), String> {
        post_signed(&self.shared, body, signing).await
    }

    /// Meta's verification GET; smsgate's status and body.
    pub async fn handshake(
        &self,
        verify_token: &str,
        challenge: &str,
    ) -> Result<(u16, String), String> {
        handshake(&self.shared, verify_token, challenge).await
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for WhatsAppCloudHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn wamid(sh: &Shared, kind: &str) -> String {
    let n = sh
        .next
        .lock()
        .map(|mut n| {
            *n += 1;
            *n
        })
        .unwrap_or(0);
    format!("wamid.SIM{kind}{n:06}")
}

fn open_window(sh: &Shared, from: &str) {
    if let Ok(mut w) = sh.windows.lock() {
        w.insert(from.to_string(), Instant::now());
    }
}

fn inject(sh: &Shared, e: Injection) {
    match &e.to {
        Some(to) => {
            if let Ok(mut m) = sh.errors_to.lock() {
                m.insert(to.clone(), e);
            }
        }
        None => {
            if let Ok(mut q) = sh.errors.lock() {
                for _ in 0..e.times.unwrap_or(1) {
                    q.push_back(e.clone());
                }
            }
        }
    }
}

fn set_plan(sh: &Shared, plan: StatusPlan) {
    match &plan.to {
        Some(to) => {
            if let Ok(mut m) = sh.plans_to.lock() {
                m.insert(to.clone(), plan);
            }
        }
        None => {
            if let Ok(mut p) = sh.plan.lock() {
                *p = plan;
            }
        }
    }
}

/// `{"object": "whatsapp_business_account", ...}` around `value`'s
/// messages or statuses.
fn notification(sh: &Shared, contact: &str, value: Value) -> Vec<u8> {
    let mut v = json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": sh.display_number, "phone_number_id": sh.phone_number_id},
    });
    if value.get("messages").is_some() {
        v["contacts"] = json!([{"profile": {"name": "Simulated customer"}, "wa_id": contact}]);
    }
    if let (Some(o), Some(extra)) = (v.as_object_mut(), value.as_object()) {
        for (k, x) in extra {
            o.insert(k.clone(), x.clone());
        }
    }
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA_SIM", "changes": [{"value": v, "field": "messages"}]}],
    })
    .to_string()
    .into_bytes()
}

async fn post_signed(
    sh: &Shared,
    body: Vec<u8>,
    signing: Signing<'_>,
) -> Result<(u16, String), String> {
    let url = sh
        .webhook_url
        .as_ref()
        .ok_or("no webhook URL (start with --webhook-url)")?;
    let mut rb = sh
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json");
    match signing {
        Signing::Right => {
            rb = rb.header(
                wa::SIGNATURE_HEADER,
                wa::sign(sh.app_secret.as_bytes(), &body),
            )
        }
        Signing::With(s) => rb = rb.header(wa::SIGNATURE_HEADER, wa::sign(s.as_bytes(), &body)),
        Signing::None => {}
    }
    let resp = rb
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot post the webhook: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// Posts a signed webhook as Meta does: again, with backoff, while it is
/// not answered 200 (Meta keeps trying for days; here for about a minute).
async fn deliver(sh: Arc<Shared>, body: Vec<u8>) {
    let mut wait = Duration::from_millis(200);
    for _ in 0..8 {
        match post_signed(&sh, body.clone(), Signing::Right).await {
            Ok((200, _)) => return,
            Ok((status, text)) => {
                tracing::debug!(status, %text, "webhook not taken; sent again later")
            }
            Err(e) => tracing::debug!(error = %e, "webhook not delivered; sent again later"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
    tracing::warn!("webhook given up after 8 attempts");
}

async fn handshake(sh: &Shared, token: &str, challenge: &str) -> Result<(u16, String), String> {
    let url = sh
        .webhook_url
        .as_ref()
        .ok_or("no webhook URL (start with --webhook-url)")?;
    let resp = sh
        .client
        .get(format!(
            "{url}{}hub.mode=subscribe&hub.verify_token={}&hub.challenge={}",
            if url.contains('?') { '&' } else { '?' },
            encode(token),
            encode(challenge)
        ))
        .send()
        .await
        .map_err(|e| format!("cannot call the webhook URL: {e}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// Percent-encodes a query value (every byte but unreserved ones).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn error_reply(http_status: u16, code: i64, message: &str, details: &str) -> Response {
    let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({"error": {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
        "fbtrace_id": "SIMtrace",
    }});
    (status, axum::Json(body)).into_response()
}

fn injected_reply(e: &Injection) -> Response {
    let default_status = match e.code {
        190 => 401,
        10 | 200 => 403,
        130429 | 131056 | 131048 | 80007 => 429,
        c if (1..=2).contains(&c) => 500,
        _ => 400,
    };
    let message = match e.code {
        190 => "Error validating access token: Session has expired",
        131047 => "Re-engagement message",
        130429 => "Rate limit hit",
        131056 => "(Business Account, Consumer Account) pair rate limit hit",
        131026 => "Message undeliverable",
        _ => "Simulated error",
    };
    error_reply(
        e.http_status.unwrap_or(default_status),
        e.code,
        message,
        "injected by smsgate-sim",
    )
}

async fn messages(
    State(sh): State<Arc<Shared>>,
    Path((version, phone)): Path<(String, String)>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    record(&sh, &parts, &body);
    if version != sh.version || phone != sh.phone_number_id {
        return error_reply(
            400,
            100,
            &format!("Unsupported post request. Object with ID '{phone}' does not exist"),
            "unknown version or phone_number_id",
        );
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(sh.access_token.as_str()) {
        return error_reply(401, 190, "Invalid OAuth access token", "");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error_reply(400, 100, "Invalid parameter", "the body is not JSON");
    };
    let to = v
        .get("to")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if v.get("messaging_product").and_then(Value::as_str) != Some("whatsapp")
        || to.is_empty()
        || !to.bytes().all(|b| b.is_ascii_digit())
    {
        return error_reply(
            400,
            100,
            "Invalid parameter",
            "messaging_product must be whatsapp and to the customer's digits",
        );
    }
    let injected = sh
        .errors_to
        .lock()
        .ok()
        .and_then(|mut m| {
            let e = m.get_mut(&to)?;
            let out = e.clone();
            if let Some(n) = e.times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&to);
                }
            }
            Some(out)
        })
        .or_else(|| sh.errors.lock().ok().and_then(|mut q| q.pop_front()));
    if let Some(e) = injected.as_ref().filter(|e| !e.hang) {
        return injected_reply(e);
    }
    match v.get("type").and_then(Value::as_str) {
        Some("text") => {
            let text = v
                .get("text")
                .and_then(|t| t.get("body"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if text.is_empty() {
                return error_reply(400, 100, "Invalid parameter", "text.body is required");
            }
            let open = sh
                .windows
                .lock()
                .ok()
                .and_then(|w| w.get(&to).copied())
                .is_some_and(|at| at.elapsed() < WINDOW);
            if !open {
                return error_reply(
                    400,
                    131047,
                    "Re-engagement message",
                    "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
                );
            }
        }
        Some("template") => {
            let t = v.get("template").cloned().unwrap_or_default();
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            let lang = t
                .get("language")
                .and_then(|l| l.get("code"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let Some(&want) = sh.templates.get(&(name.to_string(), lang.to_string())) else {
                return error_reply(
                    404,
                    132001,
                    "Template name does not exist in the translation",
                    &format!("template name ({name}) does not exist in {lang}"),
                );
            };
            let got = t
                .get("components")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|x| x.get("type").and_then(Value::as_str) == Some("body"))
                })
                .and_then(|b| b.get("parameters"))
                .and_then(Value::as_array)
                .map_or(0, |p| p.len());
            if got != want {
                return error_reply(
                    400,
                    132000,
                    "Number of parameters does not match the expected number of params",
                    &format!(
                        "body: number of localizable_params ({got}) does not match the expected number of params ({want})"
                    ),
                );
            }
        }
        other => {
            return error_reply(
                400,
                131051,
                "Message type unknown",
                &format!("unsupported type {other:?}"),
            );
        }
    }
    let id = wamid(&sh, "OUT");
    if let Ok(mut a) = sh.accepted.lock() {
        a.push(Accepted {
            wamid: id.clone(),
            to: to.clone(),
            body: v.clone(),
        });
    }
    let plan = sh
        .plans_to
        .lock()
        .ok()
        .and_then(|m| m.get(&to).cloned())
        .or_else(|| sh.plan.lock().ok().map(|p| p.clone()))
        .unwrap_or_default();
    if sh.webhook_url.is_some() && !plan.statuses.is_empty() {
        let (sh2, id2, to2) = (sh.clone(), id.clone(), to.clone());
        tokio::spawn(async move {
            for status in &plan.statuses {
                tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
                let mut s = json!({"id": id2, "status": status, "timestamp": unix_now().to_string(), "recipient_id": to2});
                if status == "failed" {
                    s["errors"] = json!([{"code": plan.fail_code, "title": "Message undeliverable", "message": "Message undeliverable", "error_data": {"details": "simulated"}}]);
                }
                let body = notification(&sh2, &to2, json!({"statuses": [s]}));
                deliver(sh2.clone(), body).await;
            }
        });
    }
    if injected.is_some_and(|e| e.hang) {
        // Taken, and the answer never comes: the client times out.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": id}],
    }))
    .into_response()
}

fn record(sh: &Shared, parts: &axum::http::request::Parts, body: &[u8]) {
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
        body_hex: body.iter().map(|x| format!("{x:02x}")).collect(),
        body_bytes: body.to_vec(),
    };
    if let Ok(mut l) = sh.log.lock() {
        l.push(rec);
    }
}

async fn unknown(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    record(&sh, &parts, &body);
    error_reply(400, 100, "Unknown path components", parts.uri.path())
}

async fn requests(State(sh): State<Arc<Shared>>) -> Response {
    let l = sh.log.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(l).into_response()
}

fn bad(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
}

fn answer(r: Result<(u16, String), String>) -> Response {
    match r {
        Ok((status, body)) => axum::Json(json!({"status": status, "body": body})).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingReq {
    from: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    id: Option<String>,
    /// A whole message object (image, location, ...), sent as is with
    /// `from`, `id` and `timestamp` filled in when missing.
    #[serde(default)]
    message: Option<Value>,
}

async fn incoming_route(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let r: IncomingReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let id = r.id.unwrap_or_else(|| wamid(&sh, "IN"));
    let mut msg = r.message.unwrap_or_else(
        || json!({"type": "text", "text": {"body": r.text.clone().unwrap_or_default()}}),
    );
    if let Some(o) = msg.as_object_mut() {
        o.entry("from").or_insert(json!(r.from));
        o.entry("id").or_insert(json!(id));
        o.entry("timestamp")
            .or_insert(json!(unix_now().to_string()));
    }
    open_window(&sh, &r.from);
    let body = notification(&sh, &r.from, json!({"messages": [msg]}));
    let mut out = post_signed(&sh, body, Signing::Right).await;
    if let Ok((_, text)) = &mut out {
        text.push_str(&format!("\n(id {id})"));
    }
    answer(out)
}

async fn statuses_route(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<StatusPlan>(&body) {
        Ok(p) => {
            set_plan(&sh, p);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

async fn error_route(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Injection>(&body) {
        Ok(e) => {
            inject(&sh, e);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HandshakeReq {
    verify_token: String,
    #[serde(default)]
    challenge: Option<String>,
}

async fn handshake_route(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let r: HandshakeReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e),
    };
    let challenge = r.challenge.unwrap_or_else(|| unix_now().to_string());
    answer(handshake(&sh, &r.verify_token, &challenge).await)
}
