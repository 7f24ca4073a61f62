//! A configurable HTTP SMS provider (smsgate's `http` kind): it records
//! every request byte for byte (method, path and query as sent, headers,
//! raw body) and answers with a configured status and body, `{id}` in the
//! body becoming a fresh provider id (`sim-1`, `sim-2`, ...). Replies can be
//! queued one by one (a 401, a 429, a 503, a slow answer) before the
//! default one applies again.
//!
//! Control routes, under `/sim/` (never recorded):
//! - `GET /sim/requests`: the recorded requests as JSON (`body` as text,
//!   `body_hex` exact);
//! - `POST /sim/reply`: `{"status": 401, "body": "...", "content_type":
//!   "...", "delay_ms": 0, "times": 1}` queues a reply for the next
//!   `times` requests (none: it becomes the default);
//! - `POST /sim/callback`: the body is posted, with the request's
//!   Content-Type, to `--callback-url` (smsgate's push route): a delivery
//!   report or a customer's message, in whatever fields the provider uses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;

/// One request as it arrived.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The query exactly as sent (still percent-encoded), if any.
    pub query: Option<String>,
    /// Header names (lower case) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as text (lossy); `body_hex` is exact.
    pub body: String,
    pub body_hex: String,
    #[serde(skip)]
    pub body_bytes: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the provider answers.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default = "ok")]
    pub status: u16,
    /// `{id}` becomes the provider's id of the message.
    #[serde(default)]
    pub body: String,
    #[serde(default = "text_plain")]
    pub content_type: String,
    #[serde(default)]
    pub delay_ms: u64,
    /// For how many requests (queued); none: the default from now on.
    #[serde(default)]
    pub times: Option<u32>,
}

fn ok() -> u16 {
    200
}
fn text_plain() -> String {
    "text/plain".into()
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            content_type: if body.trim_start().starts_with('{') {
                "application/json".into()
            } else {
                text_plain()
            },
            delay_ms: 0,
            times: None,
        }
    }

    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay_ms = d.as_millis() as u64;
        self
    }
}

struct Shared {
    default: Mutex<Reply>,
    queued: Mutex<VecDeque<Reply>>,
    log: Mutex<Vec<Recorded>>,
    next_id: Mutex<u64>,
    callback_url: Option<String>,
    client: reqwest::Client,
}

/// Entry point: `HttpProviderSim::builder()`.
pub struct HttpProviderSim;

impl HttpProviderSim {
    pub fn builder() -> HttpProviderSimBuilder {
        HttpProviderSimBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            reply: Reply::new(200, "OK {id}"),
            callback_url: None,
        }
    }
}

pub struct HttpProviderSimBuilder {
    listen: SocketAddr,
    reply: Reply,
    callback_url: Option<String>,
}

impl HttpProviderSimBuilder {
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The default reply (`OK {id}`, 200, unless set).
    pub fn reply(mut self, r: Reply) -> Self {
        self.reply = r;
        self
    }

    /// Where `/sim/callback` posts (smsgate's push route of this provider).
    pub fn callback_url(mut self, url: Option<String>) -> Self {
        self.callback_url = url;
        self
    }

    pub async fn start(self) -> std::io::Result<HttpProviderHandle> {
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
            default: Mutex::new(self.reply),
            queued: Mutex::new(VecDeque::new()),
            log: Mutex::new(Vec::new()),
            next_id: Mutex::new(0),
            callback_url: self.callback_url,
            client,
        });
        let app = Router::new()
            .route("/sim/requests", axum::routing::get(requests))
            .route("/sim/reply", axum::routing::post(set_reply))
            .route("/sim/callback", axum::routing::post(callback))
            .fallback(provider)
            .with_state(shared.clone());
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        tracing::info!(%addr, "HTTP provider simulator listening");
        Ok(HttpProviderHandle { addr, shared, stop })
    }
}

/// A running simulator; dropped, it stops.
pub struct HttpProviderHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl HttpProviderHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request recorded so far (control routes excluded).
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Answers the next `times` requests with `r` (then the default).
    pub fn queue_reply(&self, r: Reply, times: u32) {
        if let Ok(mut q) = self.shared.queued.lock() {
            for _ in 0..times {
                q.push_back(r.clone());
            }
        }
    }

    pub fn set_reply(&self, r: Reply) {
        if let Ok(mut d) = self.shared.default.lock() {
            *d = r;
        }
    }

    /// Posts `body` to the callback URL as the provider would; the status
    /// and body smsgate answered.
    pub async fn callback(&self, content_type: &str, body: &[u8]) -> Result<(u16, String), String> {
        post_callback(&self.shared, content_type, body.to_vec()).await
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for HttpProviderHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn provider(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
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
        body: String::from_utf8_lossy(&body).into_owned(),
        body_hex: hex(&body),
        body_bytes: body.to_vec(),
    };
    if let Ok(mut l) = sh.log.lock() {
        l.push(rec);
    }
    let reply = sh
        .queued
        .lock()
        .ok()
        .and_then(|mut q| q.pop_front())
        .or_else(|| sh.default.lock().ok().map(|d| d.clone()))
        .unwrap_or_else(|| Reply::new(500, "simulator state lost"));
    if reply.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    let id = sh
        .next_id
        .lock()
        .map(|mut n| {
            *n += 1;
            *n
        })
        .unwrap_or(0);
    let body = reply.body.replace("{id}", &format!("sim-{id}"));
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body).into_response();
    if let Ok(v) = reply.content_type.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
    }
    resp
}

async fn requests(State(sh): State<Arc<Shared>>) -> Response {
    let l = sh.log.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(l).into_response()
}

async fn set_reply(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let r: Reply = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match r.times {
        Some(n) => {
            if let Ok(mut q) = sh.queued.lock() {
                for _ in 0..n {
                    q.push_back(r.clone());
                }
            }
        }
        None => {
            if let Ok(mut d) = sh.default.lock() {
                *d = r;
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn callback(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded")
        .to_string();
    match post_callback(&sh, &ct, body.to_vec()).await {
        Ok((status, text)) => {
            axum::Json(serde_json::json!({"status": status, "body": text})).into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("{e}\n")).into_response(),
    }
}

async fn post_callback(
    sh: &Shared,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let url = sh
        .callback_url
        .as_ref()
        .ok_or("no callback URL (start with --callback-url)")?;
    let resp = sh
        .client
        .post(url)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot post the callback: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}
