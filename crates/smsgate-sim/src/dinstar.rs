//! A simulated Dinstar GSM gateway speaking the JSON HTTP API on a real
//! socket, for tests and for technicians without hardware.
//!
//! Faithful to `shared/reference/dinstar-api.md`: Digest (or Basic) auth with
//! an IP lock-out after repeated bad logins, HTTP 200 with the outcome in
//! `error_code`, 0-based ports, `"<NULL>"` in register pushes, results and
//! delivery reports that appear after delays, a POST with an empty body
//! makes it drop the connection, and the reason phrase `200 Data follows`.
//! Faults a slow or flaky box shows can be injected: a `send_sms` held
//! longer than the client waits while the gateway still acts on it at the
//! end of the hold (only then can it be asked about by user_id), and
//! requests to one endpoint (say `query_sms_result`) dropped, hung or
//! answered with garbage, a number of times or for a while.
//! Every request is recorded (monotonic and wall time, method, path, body,
//! ports, user ids, auth outcome) so tests can check pacing and ports.
//!
//! Customers' messages are injected on a port or on one of our numbers (the
//! port whose SIM has it, [`SimHandle::set_port_number`]), once
//! ([`SimHandle::inject_incoming_on`]) or on a schedule
//! ([`SimHandle::schedule_incoming`]), and go out both ways a box offers
//! them: pushed (with a push URL) and in `query_incoming_sms`. A long text
//! arrives as one row with the whole text. The gateway's JSON carries no
//! concatenation reference, part number or part count (reference §2.12,
//! §8 Q15), so rows per segment could not be joined by a receiver without
//! guessing (two customers writing at once would interleave); the boxes
//! observed hand over whole texts, and so does the simulator.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use smsgate_sim::dinstar::DinstarSim;
//! let sim = DinstarSim::builder().ports(4).credentials("admin", "admin").start().await?;
//! let base = sim.base_url(); // http://127.0.0.1:PORT
//! sim.set_port_sim(2, false);
//! sim.script_next_send(3, 550);
//! # Ok(()) }
//! ```

mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use smsgate_proto::dinstar::digest::{self, DigestCredentials};
use smsgate_proto::dinstar::wire;

use state::{Behaviour, Params, SimState};
pub use state::{SentSms, SimPort};

/// Which authentication the simulated gateway asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimAuth {
    /// Digest MD5 with qop=auth (what real boxes answer).
    #[default]
    Digest,
    /// Basic only.
    Basic,
    /// Either (challenges with both schemes).
    Any,
}

/// How an authenticated request fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// No credentials: answered 401 with a challenge.
    Challenged,
    /// Right credentials.
    Ok,
    /// Wrong user, password, or Digest response (a bad login).
    Bad,
    /// Right credentials on an expired nonce: answered 401 `stale=true`.
    Stale,
    /// The client's IP is locked out: answered 403.
    LockedOut,
    /// Not checked (the connection was dropped before).
    NotChecked,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Arrival order, from 0.
    pub seq: u64,
    /// Arrival, monotonic.
    pub at: Instant,
    /// Arrival, wall clock.
    pub wall: SystemTime,
    pub peer: IpAddr,
    pub method: String,
    pub path: String,
    /// Raw query string, as sent.
    pub query: Option<String>,
    /// Body length in bytes.
    pub body_len: usize,
    /// Parsed JSON body, if any.
    pub body: Option<Value>,
    /// Ports named by the request (`port` in the body or the query).
    pub ports: Vec<u8>,
    /// User ids named by the request (`param[].user_id` or `user_id`).
    pub user_ids: Vec<u64>,
    pub auth: AuthOutcome,
    /// HTTP status answered; `None` when the connection was dropped or hung.
    pub status: Option<u16>,
    /// `error_code` of the JSON reply.
    pub error_code: Option<u16>,
}

/// One push the simulator made (or tried).
#[derive(Debug, Clone)]
pub struct RecordedPush {
    pub at: Instant,
    pub body: Value,
    /// HTTP status of the receiver, or the error text.
    pub outcome: Result<u16, String>,
}

/// Authentication counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthCounts {
    /// 401 answers to requests without credentials.
    pub challenges: u64,
    /// Requests that carried credentials.
    pub attempts: u64,
    pub ok: u64,
    /// Bad logins (wrong user, password, Digest response or uri).
    pub bad: u64,
    /// Right credentials on a stale nonce.
    pub stale: u64,
    /// 403 answers to a locked-out IP.
    pub locked_refusals: u64,
}

/// A scripted HTTP-level misbehaviour for the next `/api/*` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpFault {
    /// Close the connection without answering.
    Drop,
    /// Never answer (the client's timeout fires).
    Hang,
    /// Answer HTTP 200 with a body that is not JSON.
    Garbage,
    /// Answer HTTP 500 with an HTML page.
    Http500,
    /// Act on the request (a `send_sms` is taken and sent), then answer 200
    /// with the first half of the JSON reply: the client cannot tell
    /// whether it was taken.
    TruncatedJson,
    /// Act on the request, then answer 200 with a reply that is not valid
    /// JSON (single quotes and a trailing comma, as a broken firmware
    /// would write it).
    MalformedJson,
}

impl HttpFault {
    /// Whether the gateway acts on the request before the fault: the
    /// faults that hide an answer, rather than refuse the request.
    pub fn after_acting(self) -> bool {
        matches!(self, Self::TruncatedJson | Self::MalformedJson)
    }
}

/// The reply as a fault after acting garbles it.
fn garbled_reply(fault: Option<HttpFault>, v: &Value) -> Option<Response<Body>> {
    let text = v.to_string();
    let body = match fault? {
        HttpFault::TruncatedJson => {
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }
        HttpFault::MalformedJson => format!("{},", text.replace('"', "'")),
        _ => return None,
    };
    let mut r = json_response(StatusCode::OK, &Value::Null);
    *r.body_mut() = Body::from(body);
    Some(r)
}

/// Where an injected customer's message arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// On this port (0-based).
    Port(u8),
    /// On the port whose SIM has this number (by digits).
    Number(String),
}

impl std::fmt::Display for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arrival::Port(p) => write!(f, "port {p}"),
            Arrival::Number(n) => write!(f, "number {n}"),
        }
    }
}

impl std::str::FromStr for Arrival {
    type Err = InjectError;
    /// `3` is port 3; `+59829001000` (or any run of more than two digits)
    /// is a number.
    fn from_str(s: &str) -> Result<Self, InjectError> {
        let s = s.trim();
        if s.len() <= 2
            && let Ok(p) = s.parse::<u8>()
        {
            return Ok(Arrival::Port(p));
        }
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !digits.is_empty()
            && digits
                .chars()
                .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Ok(Arrival::Number(s.to_string()));
        }
        Err(InjectError::BadArrival(s.to_string()))
    }
}

/// Why a customer's message cannot be injected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("no port {port}: the gateway has ports 0 to {}", .ports - 1)]
    NoSuchPort { port: u8, ports: u8 },
    #[error(
        "no port's SIM has the number {0}; set one with POST /sim/port {{\"port\":0,\"number\":\"...\"}} or --sim-number PORT:NUMBER"
    )]
    UnknownNumber(String),
    #[error("{0:?} is neither a port (0 to 31) nor a phone number")]
    BadArrival(String),
    #[error("a schedule needs at least one sender and one text")]
    EmptySchedule,
    #[error("a schedule's interval must be more than 0 seconds")]
    BadInterval,
}

/// Customers writing in on a schedule: every `every`, the next sender
/// (cycled) writes the next text (cycled) on `on`, `count` times or until
/// the simulator stops.
#[derive(Debug, Clone)]
pub struct IncomingSchedule {
    pub on: Arrival,
    pub every: Duration,
    pub from: Vec<String>,
    pub texts: Vec<String>,
    /// How many messages in all; `None`: no end.
    pub count: Option<u64>,
}

/// A running schedule: how many it has injected, and a way to stop it.
#[derive(Debug, Clone)]
pub struct ScheduleHandle {
    injected: Arc<std::sync::atomic::AtomicU64>,
    stop: CancellationToken,
}

impl ScheduleHandle {
    /// Messages injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(std::sync::atomic::Ordering::Acquire)
    }
    /// Stops it (a message being injected still arrives).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Entry point: `DinstarSim::builder()`.
pub struct DinstarSim;

impl DinstarSim {
    pub fn builder() -> DinstarSimBuilder {
        DinstarSimBuilder::default()
    }
}

/// Settings of a simulated gateway.
#[derive(Debug, Clone)]
pub struct DinstarSimBuilder {
    listen: SocketAddr,
    ports: u8,
    user: String,
    password: String,
    auth: SimAuth,
    sn: String,
    latency: Duration,
    reply_delay: Duration,
    hold_sends: Option<(u64, Duration)>,
    fail_rate: f64,
    seed: u64,
    result_delay: Duration,
    deliver_delay: Option<Duration>,
    ussd_delay: Duration,
    lockout_after: u32,
    lockout_for: Option<Duration>,
    nonce_lifetime: Option<Duration>,
    push_url: Option<String>,
    push_user_id: bool,
    manual_typos: bool,
    control: bool,
    tls: Option<(Vec<u8>, Vec<u8>)>,
}

impl Default for DinstarSimBuilder {
    fn default() -> Self {
        DinstarSimBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ports: 8,
            user: "admin".into(),
            password: "admin".into(),
            auth: SimAuth::Digest,
            sn: "da00-0030-1901-2817".into(),
            latency: Duration::ZERO,
            reply_delay: Duration::ZERO,
            hold_sends: None,
            fail_rate: 0.0,
            seed: 0x5EED,
            result_delay: Duration::from_millis(50),
            deliver_delay: Some(Duration::from_millis(100)),
            ussd_delay: Duration::from_millis(50),
            lockout_after: 5,
            lockout_for: None,
            nonce_lifetime: None,
            push_url: None,
            push_user_id: false,
            manual_typos: false,
            control: true,
            tls: None,
        }
    }
}

impl DinstarSimBuilder {
    /// Address to listen on (default 127.0.0.1:0, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Number of GSM ports, 1 to 32 (default 8).
    pub fn ports(mut self, n: u8) -> Self {
        self.ports = n.clamp(1, 32);
        self
    }
    /// The web user (default admin/admin).
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }
    pub fn auth(mut self, auth: SimAuth) -> Self {
        self.auth = auth;
        self
    }
    /// Serial number in every reply.
    pub fn sn(mut self, sn: &str) -> Self {
        self.sn = sn.into();
        self
    }
    /// Delay before every `/api/*` answer.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Delay after a request has been processed and before its answer is
    /// written: the gateway has acted but the client does not know yet (a
    /// crash in this window is what reconciliation is for).
    pub fn reply_delay(mut self, d: Duration) -> Self {
        self.reply_delay = d;
        self
    }
    /// Every `every`-th authenticated `send_sms` (the `every`-th, the
    /// 2×`every`-th, ...) is held for `hold` before the gateway acts on
    /// it: a box too busy to take a request at once. Until the hold ends
    /// the message is not in [`SimHandle::sends`] and not known by its
    /// user_id; then it is taken (and sent on) as usual and answered,
    /// whether or not the client still waits. `every` 0 holds none.
    pub fn hold_sends(mut self, every: u64, hold: Duration) -> Self {
        self.hold_sends = (every > 0).then_some((every, hold));
        self
    }
    /// Share of `send_sms` requests answered `error_code 500` (0.0-1.0).
    pub fn fail_rate(mut self, rate: f64) -> Self {
        self.fail_rate = rate.clamp(0.0, 1.0);
        self
    }
    /// Seed of the fail-rate dice.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Time from acceptance to `SENT_OK` (default 50 ms).
    pub fn result_delay(mut self, d: Duration) -> Self {
        self.result_delay = d;
        self
    }
    /// Time from `SENT_OK` to an automatic delivery report with status 0;
    /// `None`: reports come only from [`SimHandle::deliver`] (default 100 ms).
    pub fn deliver_delay(mut self, d: Option<Duration>) -> Self {
        self.deliver_delay = d;
        self
    }
    /// Time until a USSD reply is available.
    pub fn ussd_delay(mut self, d: Duration) -> Self {
        self.ussd_delay = d;
        self
    }
    /// Bad logins from one IP before it is locked out (default 5; 0 = never).
    pub fn lockout_after(mut self, n: u32) -> Self {
        self.lockout_after = n;
        self
    }
    /// How long a lock-out lasts (default: until [`SimHandle::clear_lockouts`]).
    pub fn lockout_for(mut self, d: Option<Duration>) -> Self {
        self.lockout_for = d;
        self
    }
    /// Nonces go stale after this long (default: only by [`SimHandle::expire_nonces`]).
    pub fn nonce_lifetime(mut self, d: Option<Duration>) -> Self {
        self.nonce_lifetime = d;
        self
    }
    /// Push events (sms, sms_result, sms_deliver_status, ussd, register) to this URL.
    pub fn push_url(mut self, url: Option<String>) -> Self {
        self.push_url = url;
        self
    }
    /// Put `user_id` in pushed `sms_result` items (the manual's example has none).
    pub fn push_user_id(mut self, yes: bool) -> Self {
        self.push_user_id = yes;
        self
    }
    /// Write pushed times and numbers with the manual's typos.
    pub fn manual_typos(mut self, yes: bool) -> Self {
        self.manual_typos = yes;
        self
    }
    /// Serve the `/sim/*` control endpoints (default on).
    pub fn control(mut self, yes: bool) -> Self {
        self.control = yes;
        self
    }

    /// Serve HTTPS with this certificate chain and private key (PEM), like
    /// a real box with its self-signed certificate.
    pub fn tls(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Self {
        self.tls = Some((cert_pem.to_vec(), key_pem.to_vec()));
        self
    }

    /// Binds the socket and starts serving.
    pub async fn start(self) -> std::io::Result<SimHandle> {
        let acceptor = match &self.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let mut st = SimState::new(
            self.ports,
            Behaviour {
                sn: self.sn.clone(),
                fail_rate: self.fail_rate,
                result_delay: self.result_delay,
                deliver_delay: self.deliver_delay,
                ussd_delay: self.ussd_delay,
                push_user_id: self.push_user_id,
                manual_typos: self.manual_typos,
            },
            self.seed,
        );
        st.push_enabled = self.push_url.is_some();
        let shared = Arc::new(Shared {
            cfg: self.clone(),
            state: Mutex::new(st),
            auth: Mutex::new(AuthState::default()),
            log: Mutex::new(Log::default()),
            push_wake: tokio::sync::Notify::new(),
            reply_delay: Mutex::new(self.reply_delay),
            tasks_stop: CancellationToken::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
        });
        let shutdown = shared.tasks_stop.clone();
        let tasks = shared.tasks.clone();
        tasks.spawn(accept_loop(
            listener,
            acceptor,
            shared.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(ticker(shared.clone(), shutdown.clone()));
        if let Some(url) = self.push_url.clone() {
            tasks.spawn(pusher(url, shared.clone(), shutdown.clone()));
        }
        tasks.close();
        tracing::info!(%addr, ports = self.ports, tls = self.tls.is_some(), "Dinstar simulator listening");
        Ok(SimHandle {
            https: self.tls.is_some(),
            addr,
            shared,
            shutdown,
            tasks,
        })
    }
}

#[derive(Debug, Default)]
struct AuthState {
    /// Active nonces and when they were issued.
    nonces: HashMap<String, Instant>,
    /// Nonces that went stale (right credentials get `stale=true`).
    expired: HashSet<String>,
    next: u64,
    bad_by_ip: HashMap<IpAddr, u32>,
    /// Locked IPs and until when (`None`: until cleared).
    locked: HashMap<IpAddr, Option<Instant>>,
    counts: AuthCounts,
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<RecordedRequest>,
    pushes: Vec<RecordedPush>,
    dropped: u64,
    faults: VecDeque<HttpFault>,
    /// Faults for one path: a count left, or until when.
    path_faults: HashMap<String, VecDeque<PathFault>>,
    /// Holds scripted for the next authenticated `send_sms` requests.
    holds: VecDeque<Duration>,
    /// Authenticated `send_sms` requests so far (for `hold_sends`).
    send_requests: u64,
    /// Held `send_sms` requests whose hold has not ended.
    holding: u64,
}

/// A fault scripted for the requests to one path.
#[derive(Debug, Clone, Copy)]
struct PathFault {
    fault: HttpFault,
    left: PathFaultSpan,
}

#[derive(Debug, Clone, Copy)]
enum PathFaultSpan {
    Count(u32),
    Until(Instant),
}

struct Shared {
    cfg: DinstarSimBuilder,
    state: Mutex<SimState>,
    auth: Mutex<AuthState>,
    log: Mutex<Log>,
    push_wake: tokio::sync::Notify,
    /// [`DinstarSimBuilder::reply_delay`], changeable while running.
    reply_delay: Mutex<Duration>,
    /// Cancelled at shutdown: held sends still waiting are never taken.
    tasks_stop: CancellationToken,
    /// The simulator's tasks, schedules of customers included.
    tasks: tokio_util::task::TaskTracker,
    /// The runtime it was started on: a schedule asked for from a plain
    /// thread (a blocking test) runs there.
    runtime: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running simulated gateway. Clones share it; it stops on
/// [`shutdown`](Self::shutdown) (or when the runtime ends).
#[derive(Clone)]
pub struct SimHandle {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://127.0.0.1:PORT` (`https://` when serving TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
    /// Number of GSM ports.
    pub fn port_count(&self) -> u8 {
        self.shared.cfg.ports
    }
    /// The gateway's serial number.
    pub fn sn(&self) -> String {
        self.shared.cfg.sn.clone()
    }
    /// Every request so far, in arrival order (control endpoints excluded).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).requests.clone()
    }
    /// Requests to one path (e.g. `/api/send_sms`).
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        lock(&self.shared.log)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
    /// Every SMS accepted, one per recipient, in order.
    pub fn sends(&self) -> Vec<SentSms> {
        lock(&self.shared.state)
            .out
            .iter()
            .map(|o| o.sent.clone())
            .collect()
    }
    /// How many SMS have been accepted (cheaper than `sends().len()`).
    pub fn sends_count(&self) -> usize {
        lock(&self.shared.state).out.len()
    }
    /// Every SMS accepted, in order, with its status on the simulated
    /// network now: `SENDING`, `SENT_OK`, `FAILED` (it never went on air,
    /// e.g. its SIM was pulled) or `DELIVERED`.
    pub fn sends_with_status(&self) -> Vec<(SentSms, &'static str)> {
        lock(&self.shared.state)
            .out
            .iter()
            .map(|o| (o.sent.clone(), o.status.wire()))
            .collect()
    }
    /// Pushes made so far.
    pub fn pushes(&self) -> Vec<RecordedPush> {
        lock(&self.shared.log).pushes.clone()
    }
    /// Connections dropped on purpose (empty-body POST, scripted drop).
    pub fn dropped_connections(&self) -> u64 {
        lock(&self.shared.log).dropped
    }
    /// Authentication counters.
    pub fn auth_counts(&self) -> AuthCounts {
        lock(&self.shared.auth).counts
    }
    /// Bad logins so far.
    pub fn bad_auth_count(&self) -> u64 {
        self.auth_counts().bad
    }
    /// Whether an IP is locked out now.
    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        let a = lock(&self.shared.auth);
        matches!(a.locked.get(&ip), Some(None))
            || matches!(a.locked.get(&ip), Some(Some(t)) if *t > Instant::now())
    }
    /// Lifts every lock-out and forgets bad-login counts.
    pub fn clear_lockouts(&self) {
        let mut a = lock(&self.shared.auth);
        a.locked.clear();
        a.bad_by_ip.clear();
    }
    /// Makes every nonce issued so far stale: the next request with one
    /// gets `401` with `stale=true` (if its credentials are right).
    pub fn expire_nonces(&self) {
        let mut a = lock(&self.shared.auth);
        let old: Vec<String> = a.nonces.drain().map(|(n, _)| n).collect();
        a.expired.extend(old);
    }
    /// Current state of a port.
    pub fn port(&self, port: u8) -> Option<SimPort> {
        lock(&self.shared.state).ports.get(port as usize).cloned()
    }
    /// Inserts or removes the SIM of a port (pushes a `register` event).
    pub fn set_port_sim(&self, port: u8, present: bool) {
        lock(&self.shared.state).set_port_sim(port, present);
        self.shared.push_wake.notify_one();
    }
    /// Sets a port's registration (`REGISTER_OK`, `UNREGISTER`, ...).
    pub fn set_port_reg(&self, port: u8, reg: &str) {
        if let Some(p) = lock(&self.shared.state).ports.get_mut(port as usize) {
            p.reg = reg.to_string();
        }
    }
    /// Sets a port's signal (0-31).
    pub fn set_port_signal(&self, port: u8, signal: u8) {
        if let Some(p) = lock(&self.shared.state).ports.get_mut(port as usize) {
            p.signal = signal.min(31);
        }
    }
    /// Sets a port's own number.
    pub fn set_port_number(&self, port: u8, number: &str) {
        if let Some(p) = lock(&self.shared.state).ports.get_mut(port as usize) {
            p.number = number.to_string();
        }
    }
    /// A customer's SMS arrives on `port`; returns its `incoming_sms_id`.
    pub fn inject_incoming(&self, port: u8, from: &str, text: &str) -> u64 {
        let id = lock(&self.shared.state).inject_incoming(port, from, text);
        self.shared.push_wake.notify_one();
        id
    }
    /// A customer's SMS arrives on a port or on one of our numbers; returns
    /// its `incoming_sms_id` and the port it arrived on.
    pub fn inject_incoming_on(
        &self,
        on: &Arrival,
        from: &str,
        text: &str,
    ) -> Result<(u64, u8), InjectError> {
        inject_on(&self.shared, on, from, text)
    }
    /// Customers writing in on a schedule (see [`IncomingSchedule`]); the
    /// first message comes after one interval. The arrival is checked now
    /// (an unknown number is refused) and again at each message: a number
    /// no SIM has any more skips that turn, said in the log.
    pub fn schedule_incoming(&self, s: IncomingSchedule) -> Result<ScheduleHandle, InjectError> {
        schedule(&self.shared, s)
    }
    /// The next `send_sms` whose first port is `port` answers `error_code`
    /// `code` (e.g. 550, 500, 400) and sends nothing. Calls queue up.
    pub fn script_next_send(&self, port: u8, code: u16) {
        lock(&self.shared.state)
            .script
            .entry(port)
            .or_default()
            .push_back(code);
    }
    /// The next `send_sms` (any port) answers `code`.
    pub fn script_next_send_any(&self, code: u16) {
        lock(&self.shared.state).script_any.push_back(code);
    }
    /// The next SMS accepted on `port` ends `FAILED` instead of `SENT_OK`.
    pub fn fail_next_on_network(&self, port: u8) {
        *lock(&self.shared.state)
            .fail_next_on_network
            .entry(port)
            .or_default() += 1;
    }
    /// The next `/api/*` request meets this HTTP-level fault.
    pub fn script_http_fault(&self, fault: HttpFault) {
        lock(&self.shared.log).faults.push_back(fault);
    }
    /// A delivery report with `status_code` for the SMS with `user_id`
    /// (0 = delivered). False if there is none.
    pub fn deliver(&self, user_id: u64, status_code: u8) -> bool {
        let ok = lock(&self.shared.state).deliver(user_id, status_code);
        self.shared.push_wake.notify_one();
        ok
    }
    /// The next `n` requests to `path` (e.g. `/api/query_sms_result`)
    /// meet `fault`, before authentication; other paths are untouched.
    pub fn fault_next_on(&self, path: &str, fault: HttpFault, n: u32) {
        if n > 0 {
            lock(&self.shared.log)
                .path_faults
                .entry(path.to_string())
                .or_default()
                .push_back(PathFault {
                    fault,
                    left: PathFaultSpan::Count(n),
                });
        }
    }
    /// Every request to `path` meets `fault` for the next `d`.
    pub fn fault_on_for(&self, path: &str, fault: HttpFault, d: Duration) {
        lock(&self.shared.log)
            .path_faults
            .entry(path.to_string())
            .or_default()
            .push_back(PathFault {
                fault,
                left: PathFaultSpan::Until(Instant::now() + d),
            });
    }
    /// The next authenticated `send_sms` is held for `hold` before the
    /// gateway acts on it (see [`DinstarSimBuilder::hold_sends`]). Calls
    /// queue up, one hold per request.
    pub fn hold_next_send(&self, hold: Duration) {
        lock(&self.shared.log).holds.push_back(hold);
    }
    /// Held `send_sms` requests the gateway has not acted on yet.
    pub fn sends_on_hold(&self) -> u64 {
        lock(&self.shared.log).holding
    }
    /// Changes the delay between processing a request and answering it.
    pub fn set_reply_delay(&self, d: Duration) {
        *lock(&self.shared.reply_delay) = d;
    }
    /// Asks the simulator to stop and waits for its tasks.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.wait().await;
    }
}

// ---------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Conn {
    peer: SocketAddr,
    drop: CancellationToken,
}

fn tls_acceptor(cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("certificate PEM: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| bad(format!("key PEM: {e}")))?;
    let cfg = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(e.to_string()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let router = router(shared.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = Conn {
            peer,
            drop: CancellationToken::new(),
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve_conn(stream, conn, router, shutdown).await,
                Some(a) => match a.accept(stream).await {
                    Ok(tls) => serve_conn(tls, conn, router, shutdown).await,
                    Err(e) => tracing::debug!(error = %e, "simulator TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_conn<S>(stream: S, conn: Conn, router: Router, shutdown: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let c2 = conn.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(c2.clone());
        let router = router.clone();
        async move {
            let req = req.map(Body::new);
            tower::ServiceExt::oneshot(router, req).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let serve = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        r = serve => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "simulator connection ended");
            }
        }
        _ = conn.drop.cancelled() => {
            tracing::debug!(peer = %conn.peer, "simulator dropped a connection");
        }
        _ = shutdown.cancelled() => {}
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut r = Router::new();
    if shared.cfg.control {
        r = r
            .route("/sim/incoming", post(ctl_incoming))
            .route("/sim/port", post(ctl_port))
            .route("/sim/script", post(ctl_script))
            .route("/sim/deliver", post(ctl_deliver))
            .route("/sim/unlock", post(ctl_unlock))
            .route("/sim/requests", get(ctl_requests))
            .route("/sim/sends", get(ctl_sends));
    }
    r.fallback(api).with_state(shared)
}

async fn ticker(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut iv = tokio::time::interval(Duration::from_millis(10));
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = iv.tick() => {}
        }
        let has_pushes = {
            let mut st = lock(&shared.state);
            st.tick(Instant::now());
            !st.pushes.is_empty()
        };
        if has_pushes {
            shared.push_wake.notify_one();
        }
    }
}

async fn pusher(url: String, shared: Arc<Shared>, shutdown: CancellationToken) {
    let client = crate::tls::any_certificate_client()
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())
        });
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "simulator cannot push");
            return;
        }
    };
    loop {
        let batch: Vec<Value> = std::mem::take(&mut lock(&shared.state).pushes);
        for body in batch {
            let outcome = client
                .post(&url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string());
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, url = %url, "simulator push failed");
            }
            lock(&shared.log).pushes.push(RecordedPush {
                at: Instant::now(),
                body,
                outcome,
            });
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = shared.push_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                if let (Some(h), Some(l)) = (h, l) {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::OK {
        // A real box's status line: "HTTP/1.1 200 Data follows".
        r.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Data follows"));
    }
    r
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

impl Shared {
    fn challenge(&self, stale: bool) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        if self.cfg.auth != SimAuth::Basic {
            let mut a = lock(&self.auth);
            a.next += 1;
            let nonce = digest::hex(&{
                let mut x = [0u8; 16];
                x[..8].copy_from_slice(&a.next.to_be_bytes());
                let t = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as u64;
                x[8..].copy_from_slice(&t.to_be_bytes());
                x
            });
            a.nonces.insert(nonce.clone(), Instant::now());
            let h = format!(
                "Digest realm=\"Web Server\", domain=\"\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=\"MD5\", stale=\"{}\"",
                if stale { "TRUE" } else { "FALSE" }
            );
            if let Ok(v) = HeaderValue::from_str(&h) {
                out.push(v);
            }
        }
        if self.cfg.auth != SimAuth::Digest {
            out.push(HeaderValue::from_static("Basic realm=\"Web Server\""));
        }
        out
    }

    /// Checks credentials; `Err` is the response to send.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        method: &str,
        target: &str,
        ip: IpAddr,
    ) -> (AuthOutcome, Option<Response<Body>>) {
        {
            let mut a = lock(&self.auth);
            let locked = match a.locked.get(&ip) {
                Some(None) => true,
                Some(Some(t)) => *t > Instant::now(),
                None => false,
            };
            if locked {
                a.counts.locked_refusals += 1;
                return (
                    AuthOutcome::LockedOut,
                    Some(text_response(
                        StatusCode::FORBIDDEN,
                        "forbid to try again, please contact the administrator",
                    )),
                );
            }
        }
        let unauthorized = |stale: bool| {
            let mut r = text_response(StatusCode::UNAUTHORIZED, "401 Unauthorized");
            for v in self.challenge(stale) {
                r.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
            r
        };
        let Some(h) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            lock(&self.auth).counts.challenges += 1;
            return (AuthOutcome::Challenged, Some(unauthorized(false)));
        };
        lock(&self.auth).counts.attempts += 1;
        let cfg = &self.cfg;
        let mut verdict = AuthOutcome::Bad;
        if cfg.auth != SimAuth::Basic
            && let Some(c) = DigestCredentials::parse(h)
        {
            let good = c.username == cfg.user
                && c.uri == target
                && c.realm == "Web Server"
                && c.verify(&cfg.password, method);
            if good {
                let a = lock(&self.auth);
                let fresh = a
                    .nonces
                    .get(&c.nonce)
                    .is_some_and(|t| cfg.nonce_lifetime.is_none_or(|life| t.elapsed() < life));
                verdict = if fresh {
                    AuthOutcome::Ok
                } else {
                    AuthOutcome::Stale
                };
            }
        } else if cfg.auth != SimAuth::Digest
            && let Some((u, p)) = digest::parse_basic(h)
            && u == cfg.user
            && p == cfg.password
        {
            verdict = AuthOutcome::Ok;
        }
        let mut a = lock(&self.auth);
        match verdict {
            AuthOutcome::Ok => {
                a.counts.ok += 1;
                a.bad_by_ip.remove(&ip);
                (AuthOutcome::Ok, None)
            }
            AuthOutcome::Stale => {
                a.counts.stale += 1;
                drop(a);
                (AuthOutcome::Stale, Some(unauthorized(true)))
            }
            _ => {
                a.counts.bad += 1;
                let n = a.bad_by_ip.entry(ip).or_default();
                *n += 1;
                let n = *n;
                if cfg.lockout_after > 0 && n >= cfg.lockout_after {
                    let until = cfg.lockout_for.map(|d| Instant::now() + d);
                    a.locked.insert(ip, until);
                    tracing::warn!(%ip, bad = n, "simulator locks out an IP after bad logins");
                }
                drop(a);
                (AuthOutcome::Bad, Some(unauthorized(false)))
            }
        }
    }

    fn record(&self, mut r: RecordedRequest) {
        let mut log = lock(&self.log);
        r.seq = log.requests.len() as u64;
        log.requests.push(r);
    }
}

fn request_ports_and_ids(params: &Params) -> (Vec<u8>, Vec<u64>) {
    let mut ports: Vec<u8> = params
        .json
        .get("port")
        .map(|v| wire::int_list(Some(v)))
        .or_else(|| params.query.get("port").map(|s| wire::parse_int_list(s)))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| u8::try_from(p).ok())
        .collect();
    ports.dedup();
    let mut ids = wire::int_list(params.json.get("user_id"));
    if let Some(Value::Array(a)) = params.json.get("param") {
        ids.extend(
            a.iter()
                .filter_map(Value::as_object)
                .filter_map(|o| wire::field_u64(o, "user_id")),
        );
    }
    (ports, ids)
}

/// Every `/api/*` request (and anything else not under `/sim/`).
async fn api(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response<Body> {
    let at = Instant::now();
    let wall = SystemTime::now();
    let conn = req.extensions().get::<Conn>().cloned();
    let peer = conn
        .as_ref()
        .map(|c| c.peer.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let bytes = match axum::body::to_bytes(body, 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => return text_response(StatusCode::PAYLOAD_TOO_LARGE, "too large"),
    };
    let json_body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mut params = Params {
        json: match &json_body {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        },
        query: parse_query(query.as_deref()),
    };
    if let Some(Value::Array(a)) = &json_body {
        // get_status takes a bare array; keep it reachable.
        params.json.insert("_array".into(), Value::Array(a.clone()));
    }
    let (ports, user_ids) = request_ports_and_ids(&params);
    let mut rec = RecordedRequest {
        seq: 0,
        at,
        wall,
        peer,
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body_len: bytes.len(),
        body: json_body.clone(),
        ports,
        user_ids,
        auth: AuthOutcome::NotChecked,
        status: None,
        error_code: None,
    };

    // A real gateway drops a POST with an empty body without answering.
    let fault = if method == Method::POST && bytes.is_empty() {
        Some(HttpFault::Drop)
    } else {
        lock(&shared.log).next_fault(path.trim_end_matches('/'))
    };
    match fault {
        Some(HttpFault::Drop) => {
            tracing::debug!(%path, "simulator drops the connection");
            shared.record(rec);
            lock(&shared.log).dropped += 1;
            if let Some(c) = conn {
                c.drop.cancel();
            }
            std::future::pending::<()>().await;
            unreachable!("pending never completes");
        }
        Some(HttpFault::Hang) => {
            shared.record(rec);
            std::future::pending::<()>().await;
            unreachable!("pending never completes");
        }
        _ => {}
    }

    if !shared.cfg.latency.is_zero() {
        tokio::time::sleep(shared.cfg.latency).await;
    }

    let (outcome, refusal) = shared.authenticate(&parts.headers, method.as_str(), &target, peer);
    rec.auth = outcome;
    if let Some(resp) = refusal {
        rec.status = Some(resp.status().as_u16());
        shared.record(rec);
        return resp;
    }

    match fault {
        Some(HttpFault::Garbage) => {
            rec.status = Some(200);
            shared.record(rec);
            return text_response(StatusCode::OK, "<html><body>Data follows</body></html>");
        }
        Some(HttpFault::Http500) => {
            rec.status = Some(500);
            shared.record(rec);
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<html>500 Internal Server Error</html>",
            );
        }
        _ => {}
    }

    let sn = shared.cfg.sn.clone();
    let route = path.trim_end_matches('/').to_string();
    if route == "/api/send_sms" && json_body.is_some() {
        let hold = lock(&shared.log).next_hold(shared.cfg.hold_sends);
        if let Some(hold) = hold {
            // Recorded now: the client may be gone when the hold ends.
            shared.record(rec);
            let reply = held_send(shared.clone(), params, hold).await;
            let reply_delay = *lock(&shared.reply_delay);
            if !reply_delay.is_zero() {
                tokio::time::sleep(reply_delay).await;
            }
            if let Some(r) = garbled_reply(fault, &reply) {
                return r;
            }
            return json_response(StatusCode::OK, &reply);
        }
    }
    let reply: Option<Value> = if !bytes.is_empty() && json_body.is_none() {
        Some(json!({"error_code": 400, "sn": sn}))
    } else {
        let now = Instant::now();
        let mut st = lock(&shared.state);
        st.tick(now);
        match route.as_str() {
            "/api/send_sms" => Some(st.send_sms(&params, now)),
            "/api/query_sms_result" => Some(st.query_sms_result(&params)),
            "/api/query_sms_deliver_status" => Some(st.query_deliver_status(&params)),
            "/api/query_incoming_sms" => Some(st.query_incoming(&params)),
            "/api/get_port_info" => Some(st.get_port_info(&params)),
            "/api/send_ussd" => Some(st.send_ussd(&params, now)),
            "/api/query_ussd_reply" => Some(st.query_ussd_reply(&params)),
            "/api/stop_sms" => Some(st.stop_sms(&params)),
            "/api/query_sms_in_queue" | "/api/query_sms_queue" => Some(st.in_queue()),
            "/api/get_status" => Some(json!({
                "performance": {"cpu_used": "12", "memory_free": "51200", "flash_free": "1024"}
            })),
            _ => None,
        }
    };
    shared.push_wake.notify_one();
    let reply_delay = *lock(&shared.reply_delay);
    if !reply_delay.is_zero() {
        tokio::time::sleep(reply_delay).await;
    }
    match reply {
        Some(v) => {
            rec.status = Some(200);
            rec.error_code = v
                .get("error_code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok());
            shared.record(rec);
            garbled_reply(fault, &v).unwrap_or_else(|| json_response(StatusCode::OK, &v))
        }
        None => {
            rec.status = Some(404);
            shared.record(rec);
            text_response(StatusCode::NOT_FOUND, "<html>404 Not Found</html>")
        }
    }
}

impl Log {
    /// The fault the next request to `path` meets: one scripted for the
    /// path first, then one for any request.
    fn next_fault(&mut self, path: &str) -> Option<HttpFault> {
        if let Some(q) = self.path_faults.get_mut(path) {
            let now = Instant::now();
            while let Some(f) = q.front_mut() {
                match &mut f.left {
                    PathFaultSpan::Count(n) if *n > 0 => {
                        *n -= 1;
                        return Some(f.fault);
                    }
                    PathFaultSpan::Until(t) if *t > now => return Some(f.fault),
                    _ => {
                        q.pop_front();
                    }
                }
            }
        }
        self.faults.pop_front()
    }

    /// Whether this authenticated `send_sms` is held, and for how long:
    /// a scripted hold first, then every `every`-th request.
    fn next_hold(&mut self, every: Option<(u64, Duration)>) -> Option<Duration> {
        self.send_requests += 1;
        let hold = self.holds.pop_front().or_else(|| {
            every
                .filter(|(n, _)| self.send_requests % n == 0)
                .map(|(_, d)| d)
        })?;
        self.holding += 1;
        Some(hold)
    }
}

/// A `send_sms` the gateway acts on only after `hold`: on a task of its
/// own, so it happens even when the client gave up and closed the
/// connection (which drops the request's handler).
async fn held_send(shared: Arc<Shared>, params: Params, hold: Duration) -> Value {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let s = shared.clone();
    let shutdown = shared.tasks_stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(hold) => {}
            _ = shutdown.cancelled() => return,
        }
        let reply = {
            let now = Instant::now();
            let mut st = lock(&s.state);
            st.tick(now);
            st.send_sms(&params, now)
        };
        {
            let mut log = lock(&s.log);
            log.holding = log.holding.saturating_sub(1);
        }
        tracing::debug!(
            hold_ms = hold.as_millis() as u64,
            "simulator acted on a held send_sms"
        );
        s.push_wake.notify_one();
        let _ = tx.send(reply);
    });
    rx.await
        .unwrap_or_else(|_| json!({"error_code": 500, "sn": shared.cfg.sn}))
}

// ---------------------------------------------------------------------------
// Control surface (/sim/*), no auth, for technicians and scripts
// ---------------------------------------------------------------------------

/// The port an arrival names, checked against the gateway.
fn resolve(st: &SimState, on: &Arrival) -> Result<u8, InjectError> {
    let ports = u8::try_from(st.ports.len()).unwrap_or(u8::MAX);
    match on {
        Arrival::Port(p) if *p < ports => Ok(*p),
        Arrival::Port(p) => Err(InjectError::NoSuchPort { port: *p, ports }),
        Arrival::Number(n) => st
            .port_for_number(n)
            .ok_or_else(|| InjectError::UnknownNumber(n.clone())),
    }
}

fn inject_on(
    shared: &Shared,
    on: &Arrival,
    from: &str,
    text: &str,
) -> Result<(u64, u8), InjectError> {
    let injected = {
        let mut st = lock(&shared.state);
        let port = resolve(&st, on)?;
        (st.inject_incoming(port, from, text), port)
    };
    shared.push_wake.notify_one();
    Ok(injected)
}

fn schedule(shared: &Arc<Shared>, s: IncomingSchedule) -> Result<ScheduleHandle, InjectError> {
    if s.from.is_empty() || s.texts.is_empty() {
        return Err(InjectError::EmptySchedule);
    }
    if s.every.is_zero() {
        return Err(InjectError::BadInterval);
    }
    resolve(&lock(&shared.state), &s.on)?;
    let handle = ScheduleHandle {
        injected: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        stop: shared.tasks_stop.child_token(),
    };
    let (shared2, h) = (shared.clone(), handle.clone());
    shared.tasks.spawn_on(
        async move {
            let start = tokio::time::Instant::now() + s.every;
            let mut tick = tokio::time::interval_at(start, s.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: usize = 0;
            while s.count.is_none_or(|c| (n as u64) < c) {
                tokio::select! {
                    _ = h.stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let from = &s.from[n % s.from.len()];
                let text = &s.texts[n % s.texts.len()];
                n += 1;
                match inject_on(&shared2, &s.on, from, text) {
                    Ok((id, port)) => {
                        h.injected.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        tracing::info!(id, port, from = %from, "simulated customer wrote in");
                    }
                    Err(e) => tracing::warn!(error = %e, "scheduled message not injected"),
                }
            }
        },
        &shared.runtime,
    );
    Ok(handle)
}

/// `POST /sim/incoming`: `{"port": 0, "from": "...", "text": "..."}` as
/// before, or `number` instead of `port`; with `every_s`, a schedule
/// (`senders` and `texts` cycled, defaulting to `from` and `text`;
/// `count` messages, or no end).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CtlIncoming {
    port: Option<u8>,
    number: Option<String>,
    from: Option<String>,
    text: Option<String>,
    every_s: Option<f64>,
    #[serde(default)]
    senders: Vec<String>,
    #[serde(default)]
    texts: Vec<String>,
    count: Option<u64>,
}

async fn ctl_incoming(
    State(shared): State<Arc<Shared>>,
    Json(b): Json<CtlIncoming>,
) -> (StatusCode, Json<Value>) {
    let bad = |e: String| (StatusCode::BAD_REQUEST, Json(json!({"error": e})));
    let on = match (b.port, b.number) {
        (Some(p), None) => Arrival::Port(p),
        (None, Some(n)) => Arrival::Number(n),
        (Some(_), Some(_)) => return bad("give port or number, not both".into()),
        (None, None) => return bad("give the port (0-based) or our number it arrives on".into()),
    };
    let Some(every_s) = b.every_s else {
        let (Some(from), Some(text)) = (b.from, b.text) else {
            return bad("a message needs from and text".into());
        };
        return match inject_on(&shared, &on, &from, &text) {
            Ok((id, port)) => (
                StatusCode::OK,
                Json(json!({"incoming_sms_id": id, "port": port})),
            ),
            Err(e) => bad(e.to_string()),
        };
    };
    let every = match Duration::try_from_secs_f64(every_s) {
        Ok(d) => d,
        Err(_) => {
            return bad(format!(
                "every_s must be a number of seconds, not {every_s}"
            ));
        }
    };
    let mut from = b.senders;
    from.extend(b.from);
    let mut texts = b.texts;
    texts.extend(b.text);
    match schedule(
        &shared,
        IncomingSchedule {
            on: on.clone(),
            every,
            from,
            texts,
            count: b.count,
        },
    ) {
        Ok(_) => (
            StatusCode::OK,
            Json(
                json!({"scheduled": true, "on": on.to_string(), "every_s": every_s, "count": b.count}),
            ),
        ),
        Err(e) => bad(e.to_string()),
    }
}

#[derive(Deserialize)]
struct CtlPort {
    port: u8,
    sim: Option<bool>,
    reg: Option<String>,
    signal: Option<u8>,
    number: Option<String>,
}

async fn ctl_port(State(shared): State<Arc<Shared>>, Json(b): Json<CtlPort>) -> Json<Value> {
    let mut st = lock(&shared.state);
    if let Some(s) = b.sim {
        st.set_port_sim(b.port, s);
    }
    let port = st.ports.get_mut(b.port as usize).map(|p| {
        if let Some(r) = b.reg {
            p.reg = r;
        }
        if let Some(s) = b.signal {
            p.signal = s.min(31);
        }
        if let Some(n) = b.number {
            p.number = n;
        }
        json!({"port": b.port, "sim": p.sim_present, "reg": p.reg, "signal": p.signal,
               "imsi": p.imsi, "number": p.number})
    });
    drop(st);
    shared.push_wake.notify_one();
    Json(port.unwrap_or_else(|| json!({"error": "no such port"})))
}

#[derive(Deserialize)]
struct CtlScript {
    port: Option<u8>,
    code: u16,
}

async fn ctl_script(State(shared): State<Arc<Shared>>, Json(b): Json<CtlScript>) -> Json<Value> {
    let mut st = lock(&shared.state);
    match b.port {
        Some(p) => st.script.entry(p).or_default().push_back(b.code),
        None => st.script_any.push_back(b.code),
    }
    Json(json!({"ok": true}))
}

#[derive(Deserialize)]
struct CtlDeliver {
    user_id: u64,
    #[serde(default)]
    status_code: u8,
}

async fn ctl_deliver(State(shared): State<Arc<Shared>>, Json(b): Json<CtlDeliver>) -> Json<Value> {
    let ok = lock(&shared.state).deliver(b.user_id, b.status_code);
    shared.push_wake.notify_one();
    Json(json!({"ok": ok}))
}

async fn ctl_unlock(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mut a = lock(&shared.auth);
    a.locked.clear();
    a.bad_by_ip.clear();
    Json(json!({"ok": true}))
}

async fn ctl_requests(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let log = lock(&shared.log);
    let v: Vec<Value> = log
        .requests
        .iter()
        .map(|r| {
            json!({
                "seq": r.seq,
                "wall_ms": r.wall.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
                "method": r.method, "path": r.path, "query": r.query, "body": r.body,
                "ports": r.ports, "user_ids": r.user_ids, "auth": format!("{:?}", r.auth),
                "status": r.status, "error_code": r.error_code,
            })
        })
        .collect();
    Json(Value::Array(v))
}

async fn ctl_sends(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let st = lock(&shared.state);
    let v: Vec<Value> = st
        .out
        .iter()
        .map(|o| {
            json!({
                "task_id": o.sent.task_id, "user_id": o.sent.user_id, "port": o.sent.port,
                "number": o.sent.number, "text": o.sent.text, "encoding": o.sent.encoding.as_wire(),
                "handset_text": o.sent.handset_text, "count": o.sent.count,
            })
        })
        .collect();
    Json(Value::Array(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_ports_or_numbers() {
        assert_eq!("3".parse(), Ok(Arrival::Port(3)));
        assert_eq!("31".parse(), Ok(Arrival::Port(31)));
        assert_eq!(
            "+598 2900 1000".parse(),
            Ok(Arrival::Number("+598 2900 1000".into()))
        );
        assert_eq!("099123".parse(), Ok(Arrival::Number("099123".into())));
        assert!(matches!(
            "ventas".parse::<Arrival>(),
            Err(InjectError::BadArrival(_))
        ));
        let mut st = SimState::new(
            4,
            Behaviour {
                sn: "x".into(),
                fail_rate: 0.0,
                result_delay: Duration::ZERO,
                deliver_delay: None,
                ussd_delay: Duration::ZERO,
                push_user_id: false,
                manual_typos: false,
            },
            1,
        );
        st.ports[2].number = "+59829001000".into();
        let on = |s: &str| resolve(&st, &s.parse().unwrap());
        assert_eq!(on("598-2900-1000"), Ok(2));
        assert_eq!(on("2"), Ok(2));
        assert_eq!(
            on("+59829001001"),
            Err(InjectError::UnknownNumber("+59829001001".into()))
        );
        assert_eq!(on("9"), Err(InjectError::NoSuchPort { port: 9, ports: 4 }));
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("port=0%2C1&info_type=type%2Cimsi&x=a+b&bad=%zz&t=%4"));
        assert_eq!(q["port"], "0,1");
        assert_eq!(q["info_type"], "type,imsi");
        assert_eq!(q["x"], "a b");
        assert_eq!(q["bad"], "%zz");
        assert_eq!(q["t"], "%4");
    }
}
