//! A Twilio-like Messages API (smsgate's `twilio` kind) on a local port:
//! create (form, basic auth checked, required fields validated), fetch, and
//! list with `To`, `From`, `DateSent>` filters and `next_page_uri` paging;
//! each created message goes queued → sent → delivered after configurable
//! delays, with status callbacks signed like Twilio's (X-Twilio-Signature,
//! HMAC-SHA1 of the callback URL and the sorted parameters with the auth
//! token) to its StatusCallback URL. WhatsApp (`whatsapp:` addresses):
//! free text to a customer who has not written in 24 hours is refused with
//! 63016; templates go by ContentSid.
//!
//! Control routes, under `/sim/` (never recorded):
//! - `GET /sim/requests`: every API request (method, path, query, form);
//! - `GET /sim/messages`: every message it holds;
//! - `POST /sim/incoming` `{"from": "+598...", "body": "hola", "whatsapp":
//!   false, "webhook": true}`: a customer's message to our number (`to`,
//!   default `--number`), listed and, with `--incoming-url`, posted there
//!   signed;
//! - `POST /sim/fault` `{"to": "+598...", "status": 400, "code": 21610,
//!   "message": "...", "retry_after": 2, "times": 1}` (by destination) or
//!   without `to` (the next `times` creates); `"hang_ms": 3000` instead of
//!   a code: the message is created, then the answer waits that long (a
//!   timeout after acceptance);
//! - `POST /sim/status` `{"sid": "SM...", "status": "sent"}`: a status
//!   callback sent now, whatever the message's state (out of order on
//!   demand);
//! - `POST /sim/out_of_order` `true`: from now on the final status is
//!   called back before "sent".

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use smsgate_proto::twilio as tw;
use tokio_util::sync::CancellationToken;

/// One API request as it arrived.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The basic-auth user (the account or API key SID).
    pub user: Option<String>,
    pub form: Vec<(String, String)>,
    /// When it arrived, for checks of the client's pauses (Retry-After).
    #[serde(skip)]
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A message the simulator holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimMessage {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub status: String,
    pub direction: String,
    pub created_ms: i64,
    pub sent_ms: Option<i64>,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    pub status_callback: Option<String>,
    pub content_sid: Option<String>,
    pub content_variables: Option<String>,
    pub messaging_service_sid: Option<String>,
}

/// An injected failure.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Only creates to this number (E.164, without prefix); none: the next
    /// creates, whoever they are to.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Create the message, then hold the answer this long.
    #[serde(default)]
    pub hang_ms: Option<u64>,
    /// How many times (default 1; by destination: every time when 0).
    #[serde(default)]
    pub times: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct TwilioSimConfig {
    pub listen: SocketAddr,
    pub account_sid: String,
    pub auth_token: String,
    /// An API key (SID, secret) also accepted for basic auth.
    pub api_key: Option<(String, String)>,
    /// Our number (E.164), the `To` of customers' messages.
    pub number: String,
    /// Where customers' messages are posted (smsgate's push route).
    pub incoming_url: Option<String>,
    pub sent_after: Duration,
    pub delivered_after: Duration,
    /// The final status: "delivered" (or "read", "undelivered", "failed").
    pub final_status: String,
}

impl Default for TwilioSimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "sim-auth-token".into(),
            api_key: None,
            number: "+15005550006".into(),
            incoming_url: None,
            sent_after: Duration::from_millis(50),
            delivered_after: Duration::from_millis(150),
            final_status: "delivered".into(),
        }
    }
}

struct Shared {
    cfg: TwilioSimConfig,
    messages: Mutex<Vec<SimMessage>>,
    index: Mutex<HashMap<String, usize>>,
    log: Mutex<Vec<Recorded>>,
    faults_by_to: Mutex<HashMap<String, (Fault, u32)>>,
    faults_next: Mutex<VecDeque<Fault>>,
    /// Customers' last WhatsApp message, unix ms.
    windows: Mutex<HashMap<String, i64>>,
    out_of_order: AtomicBool,
    next: AtomicU64,
    client: reqwest::Client,
    callbacks: Mutex<Vec<(String, u16)>>,
}

/// A running simulator; dropped, it stops.
pub struct TwilioSimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

pub async fn start(cfg: TwilioSimConfig) -> std::io::Result<TwilioSimHandle> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let tls = crate::tls::any_certificate_client().map_err(std::io::Error::other)?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let shared = Arc::new(Shared {
        cfg,
        messages: Mutex::new(Vec::new()),
        index: Mutex::new(HashMap::new()),
        log: Mutex::new(Vec::new()),
        faults_by_to: Mutex::new(HashMap::new()),
        faults_next: Mutex::new(VecDeque::new()),
        windows: Mutex::new(HashMap::new()),
        out_of_order: AtomicBool::new(false),
        next: AtomicU64::new(0),
        client,
        callbacks: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            axum::routing::post(create).get(list),
        )
        .route(
            "/2010-04-01/Accounts/{account}/Messages/{sid}",
            axum::routing::get(fetch),
        )
        .route("/sim/requests", axum::routing::get(requests))
        .route("/sim/messages", axum::routing::get(messages))
        .route("/sim/incoming", axum::routing::post(incoming))
        .route("/sim/fault", axum::routing::post(fault))
        .route("/sim/status", axum::routing::post(status_now))
        .route("/sim/out_of_order", axum::routing::post(out_of_order))
        .with_state(shared.clone());
    let stop = CancellationToken::new();
    let until = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await;
    });
    tracing::info!(%addr, "Twilio simulator listening");
    Ok(TwilioSimHandle { addr, shared, stop })
}

impl TwilioSimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// The creates received (POSTs to Messages.json).
    pub fn creates(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    pub fn messages(&self) -> Vec<SimMessage> {
        self.shared
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Every status callback and webhook posted: URL and smsgate's answer.
    pub fn callbacks(&self) -> Vec<(String, u16)> {
        self.shared
            .callbacks
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn fault(&self, f: Fault) {
        add_fault(&self.shared, f);
    }

    pub fn set_out_of_order(&self, on: bool) {
        self.shared.out_of_order.store(on, Ordering::Relaxed);
    }

    /// A customer's message; with `webhook` posted to the incoming URL.
    /// The message's sid and smsgate's answer to the webhook.
    pub async fn incoming(
        &self,
        from: &str,
        body: &str,
        whatsapp: bool,
        webhook: bool,
    ) -> (String, Option<u16>) {
        inject_incoming(&self.shared, from, None, body, whatsapp, webhook).await
    }

    /// Posts a status callback for `sid` now, whatever its state.
    pub async fn callback_status(&self, sid: &str, status: &str) -> Option<u16> {
        let m = find(&self.shared, sid)?;
        post_status(&self.shared, &m, status).await
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for TwilioSimHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn add_fault(sh: &Shared, mut f: Fault) {
    match f.to.take() {
        Some(to) => {
            let times = f.times.unwrap_or(0);
            if let Ok(mut m) = sh.faults_by_to.lock() {
                m.insert(to, (f, times));
            }
        }
        None => {
            if let Ok(mut q) = sh.faults_next.lock() {
                for _ in 0..f.times.unwrap_or(1).max(1) {
                    q.push_back(f.clone());
                }
            }
        }
    }
}

fn take_fault(sh: &Shared, to: &str) -> Option<Fault> {
    if let Ok(mut m) = sh.faults_by_to.lock() {
        if let Some((f, left)) = m.get_mut(to) {
            let f = f.clone();
            if *left > 0 {
                *left -= 1;
                if *left == 0 {
                    m.remove(to);
                }
            }
            return Some(f);
        }
    }
    sh.faults_next.lock().ok().and_then(|mut q| q.pop_front())
}

fn error(status: u16, code: i64, message: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        axum::Json(body),
    )
        .into_response();
    if let Some(s) = retry_after {
        if let Ok(v) = s.to_string().parse() {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The basic-auth user when the credentials are the account's or the API
/// key's; None otherwise.
fn authorised(sh: &Shared, headers: &HeaderMap) -> Result<String, Option<String>> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or(None)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| None)?;
    let text = String::from_utf8(decoded).map_err(|_| None)?;
    let (user, pass) = text.split_once(':').ok_or(None)?;
    let ok = (user == sh.cfg.account_sid && pass == sh.cfg.auth_token)
        || sh
            .cfg
            .api_key
            .as_ref()
            .is_some_and(|(k, s)| user == k && pass == s);
    if ok {
        Ok(user.to_string())
    } else {
        Err(Some(user.to_string()))
    }
}

fn record(
    sh: &Shared,
    method: &str,
    path: &str,
    query: Option<String>,
    user: Option<String>,
    form: Vec<(String, String)>,
) {
    if let Ok(mut l) = sh.log.lock() {
        l.push(Recorded {
            method: method.into(),
            path: path.into(),
            query,
            user,
            form,
            at: std::time::Instant::now(),
        });
    }
}

fn resource(sh: &Shared, m: &SimMessage) -> serde_json::Value {
    let acc = &sh.cfg.account_sid;
    serde_json::json!({
        "account_sid": acc,
        "api_version": "2010-04-01",
        "body": m.body,
        "date_created": tw::format_date(m.created_ms),
        "date_sent": m.sent_ms.map(tw::format_date),
        "date_updated": tw::format_date(m.sent_ms.unwrap_or(m.created_ms)),
        "direction": m.direction,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "from": m.from,
        "messaging_service_sid": m.messaging_service_sid,
        "num_media": "0",
        "num_segments": "1",
        "price": null,
        "price_unit": "USD",
        "sid": m.sid,
        "status": m.status,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{acc}/Messages/{}/Media.json", m.sid)},
        "to": m.to,
        "uri": format!("/2010-04-01/Accounts/{acc}/Messages/{}.json", m.sid),
    })
}

fn find(sh: &Shared, sid: &str) -> Option<SimMessage> {
    let i = *sh.index.lock().ok()?.get(sid)?;
    sh.messages.lock().ok()?.get(i).cloned()
}

fn update(sh: &Shared, sid: &str, f: impl FnOnce(&mut SimMessage)) -> Option<SimMessage> {
    let i = *sh.index.lock().ok()?.get(sid)?;
    let mut ms = sh.messages.lock().ok()?;
    let m = ms.get_mut(i)?;
    f(m);
    Some(m.clone())
}

fn insert(sh: &Shared, m: SimMessage) {
    if let (Ok(mut ms), Ok(mut ix)) = (sh.messages.lock(), sh.index.lock()) {
        ix.insert(m.sid.clone(), ms.len());
        ms.push(m);
    }
}

fn new_sid(sh: &Shared, prefix: &str) -> String {
    let n = sh.next.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}{n:032x}")
}

async fn create(
    State(sh): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = tw::parse_form(&body);
    let path = tw::messages_path(&account);
    let user = authorised(&sh, &headers);
    record(
        &sh,
        "POST",
        &path,
        None,
        user.clone().ok().or_else(|| user.clone().err().flatten()),
        form.clone(),
    );
    if user.is_err() || account != sh.cfg.account_sid {
        return error(401, 20003, "Authenticate", None);
    }
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(to) = get("To").filter(|t| !t.is_empty()) else {
        return error(400, 21604, "A 'To' phone number is required.", None);
    };
    let from = get("From");
    let service = get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return error(400, 21603, "A 'From' phone number is required.", None);
    }
    let text = get("Body");
    let content_sid = get("ContentSid");
    if text.as_deref().is_none_or(str::is_empty)
        && content_sid.is_none()
        && get("MediaUrl").is_none()
    {
        return error(400, 21602, "Message body is required.", None);
    }
    let (plain_to, wa) = tw::strip_address(&to);
    let plain_to = plain_to.to_string();
    if !plain_to.starts_with('+')
        || plain_to.len() < 8
        || !plain_to[1..].chars().all(|c| c.is_ascii_digit())
    {
        return error(
            400,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
            None,
        );
    }
    if let Some(f) = &from {
        if tw::strip_address(f).1 != wa {
            return error(
                400,
                63007,
                "Twilio could not find a Channel with the specified From address",
                None,
            );
        }
    }
    let fault = take_fault(&sh, &plain_to);
    let mut hang = None;
    if let Some(f) = &fault {
        match f.hang_ms {
            Some(ms) => hang = Some(Duration::from_millis(ms)),
            None => {
                let status = f.status.unwrap_or(400);
                let code = f.code.unwrap_or(21211);
                let msg = f
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("simulated error {code}"));
                return error(status, code, &msg, f.retry_after);
            }
        }
    }
    if wa && content_sid.is_none() {
        let last = sh
            .windows
            .lock()
            .ok()
            .and_then(|w| w.get(&plain_to).copied());
        let open = last.is_some_and(|at| now_ms() - at < 24 * 3600 * 1000);
        if !open {
            return error(
                400,
                63016,
                "Failed to send freeform message because you are outside the allowed window. If you are using WhatsApp, please use a Message Template.",
                None,
            );
        }
    }
    let sid = new_sid(&sh, "SM");
    let m = SimMessage {
        sid: sid.clone(),
        to: to.clone(),
        from: from.clone().unwrap_or_else(|| {
            tw::address(
                if wa {
                    tw::Channel::WhatsApp
                } else {
                    tw::Channel::Sms
                },
                &sh.cfg.number,
            )
        }),
        body: text
            .unwrap_or_else(|| format!("[content {}]", content_sid.clone().unwrap_or_default())),
        status: if service.is_some() {
            "accepted".into()
        } else {
            "queued".into()
        },
        direction: "outbound-api".into(),
        created_ms: now_ms(),
        sent_ms: None,
        error_code: None,
        error_message: None,
        status_callback: get("StatusCallback"),
        content_sid,
        content_variables: get("ContentVariables"),
        messaging_service_sid: service,
    };
    let json = resource(&sh, &m);
    insert(&sh, m);
    tokio::spawn(progress(sh.clone(), sid));
    if let Some(d) = hang {
        tokio::time::sleep(d).await;
    }
    (StatusCode::CREATED, axum::Json(json)).into_response()
}

/// queued → sent → final, with a callback at each step (final first when
/// out of order).
async fn progress(sh: Arc<Shared>, sid: String) {
    tokio::time::sleep(sh.cfg.sent_after).await;
    let Some(sent) = update(&sh, &sid, |m| {
        m.status = "sent".into();
        m.sent_ms = Some(now_ms());
    }) else {
        return;
    };
    let ooo = sh.out_of_order.load(Ordering::Relaxed);
    if !ooo {
        post_status(&sh, &sent, "sent").await;
    }
    tokio::time::sleep(sh.cfg.delivered_after.saturating_sub(sh.cfg.sent_after)).await;
    let fin = sh.cfg.final_status.clone();
    let Some(done) = update(&sh, &sid, |m| {
        m.status = fin.clone();
        if fin == "undelivered" || fin == "failed" {
            m.error_code = Some(30003);
            m.error_message = Some("Unreachable destination handset".into());
        }
    }) else {
        return;
    };
    post_status(&sh, &done, &fin).await;
    if ooo {
        post_status(&sh, &sent, "sent").await;
    }
}

async fn post_status(sh: &Shared, m: &SimMessage, status: &str) -> Option<u16> {
    let url = m.status_callback.clone()?;
    let mut params = vec![
        ("AccountSid".to_string(), sh.cfg.account_sid.clone()),
        ("ApiVersion".to_string(), "2010-04-01".to_string()),
        ("From".to_string(), m.from.clone()),
        ("MessageSid".to_string(), m.sid.clone()),
        ("MessageStatus".to_string(), status.to_string()),
        ("SmsSid".to_string(), m.sid.clone()),
        ("SmsStatus".to_string(), status.to_string()),
        ("To".to_string(), m.to.clone()),
    ];
    if let (Some(c), "undelivered" | "failed") = (m.error_code, status) {
        params.push(("ErrorCode".into(), c.to_string()));
        if let Some(t) = &m.error_message {
            params.push(("ErrorMessage".into(), t.clone()));
        }
    }
    post_signed(sh, &url, &params).await
}

async fn post_signed(sh: &Shared, url: &str, params: &[(String, String)]) -> Option<u16> {
    let sig = tw::signature(&sh.cfg.auth_token, url, params);
    let body = form_body(params);
    let r = sh
        .client
        .post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(tw::SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .await;
    let status = match r {
        Ok(r) => r.status().as_u16(),
        Err(e) => {
            tracing::warn!(error = %e, "status callback failed");
            0
        }
    };
    if let Ok(mut c) = sh.callbacks.lock() {
        c.push((url.to_string(), status));
    }
    Some(status)
}

fn form_body(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let k: String = form_urlencoded_encode(k);
            let v: String = form_urlencoded_encode(v);
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn form_urlencoded_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn fetch(
    State(sh): State<Arc<Shared>>,
    Path((account, sid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let user = authorised(&sh, &headers);
    record(
        &sh,
        "GET",
        &format!("/2010-04-01/Accounts/{account}/Messages/{sid}"),
        None,
        user.clone().ok(),
        Vec::new(),
    );
    if user.is_err() || account != sh.cfg.account_sid {
        return error(401, 20003, "Authenticate", None);
    }
    let Some(sid) = sid.strip_suffix(".json") else {
        return error(404, 20404, "The requested resource was not found", None);
    };
    match find(&sh, sid) {
        Some(m) => axum::Json(resource(&sh, &m)).into_response(),
        None => error(404, 20404, "The requested resource was not found", None),
    }
}

async fn list(
    State(sh): State<Arc<Shared>>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let user = authorised(&sh, &headers);
    let path = tw::messages_path(&account);
    record(
        &sh,
        "GET",
        &path,
        query.clone(),
        user.clone().ok(),
        Vec::new(),
    );
    if user.is_err() || account != sh.cfg.account_sid {
        return error(401, 20003, "Authenticate", None);
    }
    let q = tw::parse_form(query.as_deref().unwrap_or("").as_bytes());
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let to = get("To");
    let from = get("From");
    let since_day = get("DateSent>");
    let page_size = get("PageSize")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page = get("Page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0);
    let all = sh.messages.lock().map(|m| m.clone()).unwrap_or_default();
    let mut matched: Vec<&SimMessage> = all
        .iter()
        .filter(|m| to.as_ref().is_none_or(|t| &m.to == t))
        .filter(|m| from.as_ref().is_none_or(|f| &m.from == f))
        .filter(|m| {
            since_day
                .as_ref()
                .is_none_or(|d| tw::day(m.sent_ms.unwrap_or(m.created_ms)) >= *d)
        })
        .collect();
    // Newest first, as Twilio lists.
    matched.sort_by_key(|m| std::cmp::Reverse((m.created_ms, m.sid.clone())));
    let start = page * page_size;
    let items: Vec<serde_json::Value> = matched
        .iter()
        .skip(start)
        .take(page_size)
        .map(|m| resource(&sh, m))
        .collect();
    let mut base = form_urlencoded_pairs(&q, &["Page", "PageToken"]);
    if !base.is_empty() {
        base.push('&');
    }
    let next = (start + page_size < matched.len())
        .then(|| format!("{path}?{base}Page={}&PageToken=PA{}", page + 1, page + 1));
    axum::Json(serde_json::json!({
        "messages": items,
        "end": start + items.len().saturating_sub(1),
        "first_page_uri": format!("{path}?{base}Page=0"),
        "next_page_uri": next,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": (page > 0).then(|| format!("{path}?{base}Page={}", page - 1)),
        "start": start,
        "uri": format!("{path}?{}", query.unwrap_or_default()),
    }))
    .into_response()
}

fn form_urlencoded_pairs(q: &[(String, String)], skip: &[&str]) -> String {
    q.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| {
            format!(
                "{}={}",
                form_urlencoded_encode(k),
                form_urlencoded_encode(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

async fn requests(State(sh): State<Arc<Shared>>) -> Response {
    let l = sh.log.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(l).into_response()
}

async fn messages(State(sh): State<Arc<Shared>>) -> Response {
    let l = sh.messages.lock().map(|l| l.clone()).unwrap_or_default();
    axum::Json(l).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingReq {
    from: String,
    #[serde(default)]
    to: Option<String>,
    body: String,
    #[serde(default)]
    whatsapp: bool,
    #[serde(default = "yes")]
    webhook: bool,
}

fn yes() -> bool {
    true
}

async fn inject_incoming(
    sh: &Arc<Shared>,
    from: &str,
    to: Option<&str>,
    body: &str,
    whatsapp: bool,
    webhook: bool,
) -> (String, Option<u16>) {
    let ch = if whatsapp {
        tw::Channel::WhatsApp
    } else {
        tw::Channel::Sms
    };
    let sid = new_sid(sh, "SM");
    let now = now_ms();
    let m = SimMessage {
        sid: sid.clone(),
        to: tw::address(ch, to.unwrap_or(&sh.cfg.number)),
        from: tw::address(ch, from),
        body: body.to_string(),
        status: "received".into(),
        direction: "inbound".into(),
        created_ms: now,
        sent_ms: Some(now),
        error_code: None,
        error_message: None,
        status_callback: None,
        content_sid: None,
        content_variables: None,
        messaging_service_sid: None,
    };
    if whatsapp {
        if let Ok(mut w) = sh.windows.lock() {
            w.insert(from.to_string(), now);
        }
    }
    insert(sh, m.clone());
    let mut answer = None;
    if let (true, Some(url)) = (webhook, sh.cfg.incoming_url.clone()) {
        let params = vec![
            ("AccountSid".to_string(), sh.cfg.account_sid.clone()),
            ("ApiVersion".to_string(), "2010-04-01".to_string()),
            ("Body".to_string(), m.body.clone()),
            ("From".to_string(), m.from.clone()),
            ("MessageSid".to_string(), sid.clone()),
            ("NumMedia".to_string(), "0".to_string()),
            ("NumSegments".to_string(), "1".to_string()),
            ("SmsMessageSid".to_string(), sid.clone()),
            ("SmsSid".to_string(), sid.clone()),
            ("SmsStatus".to_string(), "received".to_string()),
            ("To".to_string(), m.to.clone()),
        ];
        answer = post_signed(sh, &url, &params).await;
    }
    (sid, answer)
}

async fn incoming(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let r: IncomingReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let (sid, answer) = inject_incoming(
        &sh,
        &r.from,
        r.to.as_deref(),
        &r.body,
        r.whatsapp,
        r.webhook,
    )
    .await;
    axum::Json(serde_json::json!({"sid": sid, "webhook_status": answer})).into_response()
}

async fn fault(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(f) => {
            add_fault(&sh, f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusReq {
    sid: String,
    status: String,
}

async fn status_now(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let r: StatusReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let Some(m) = find(&sh, &r.sid) else {
        return (StatusCode::NOT_FOUND, "no such message\n").into_response();
    };
    let answer = post_status(&sh, &m, &r.status).await;
    axum::Json(serde_json::json!({"callback_status": answer})).into_response()
}

async fn out_of_order(State(sh): State<Arc<Shared>>, body: Bytes) -> Response {
    let on = serde_json::from_slice::<bool>(&body).unwrap_or(true);
    sh.out_of_order.store(on, Ordering::Relaxed);
    StatusCode::NO_CONTENT.into_response()
}
