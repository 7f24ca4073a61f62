//! The `dinstar` transport: one [`DinstarClient`] per gateway, one message
//! per `send_sms` pinned to the channel's port, and three background loops:
//!
//! - results and delivery reports: `query_sms_result` by user_id (32 a
//!   call) until final, then `query_sms_deliver_status` matched on port,
//!   number, ref_id and time (reference §2.9);
//! - port health: `get_port_info` on a timer (and at once after a push or a
//!   550 hints that something changed);
//! - inbound: `query_incoming_sms?flag=all` above a persisted high-water
//!   mark, so nothing is lost when a push fails (reference §2.12).
//!
//! The table of messages awaiting their final word lives in memory; when
//! the transport starts it is rebuilt from what the engine read from the
//! store (messages this gateway left SENT within the last three days), so a
//! restart loses no result or delivery report the gateway still has.
//!
//! Pushes (`sms`, `sms_result`, `sms_deliver_status`, `register`, `device`,
//! `exception_info`) arrive through [`Transport::accept_webhook`] and feed the
//! same tables. The loops end when the gateway's stop token is cancelled or
//! the transport is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{AuthScheme, DinstarClient, DinstarClientConfig, DinstarError};
use super::tls::{TlsVerify, parse_fingerprint};
use crate::config::DinstarSettings;
use crate::transport::{
    Accepted, Awaiting, BoxFuture, BuildContext, Capabilities, Event, Events, Outbound, PortHealth,
    Received, Reconciled, SendError, StoredAck, Transport, TransportError, WebhookReply,
    WebhookRequest,
};
use smsgate_proto::dinstar::wire::{
    self, DeliverStatus, DeliverStatusQuery, DeliveryOutcome, Encoding, IncomingSms, PortInfo,
    PushEvent, PushEventKind, RegStatus, RegisterState, SmsResult, SmsStatus,
};
use smsgate_proto::sms::gsm7::is_gsm7;

/// How long a message accepted by the gateway is asked about before we give
/// up on its send result (it stays SENT).
const RESULT_PATIENCE: Duration = Duration::from_secs(24 * 3600);
/// How long a sent message waits for its delivery report (SMSC validity
/// periods are commonly up to three days).
const REPORT_PATIENCE: Duration = Duration::from_secs(72 * 3600);
/// Messages found SENT in the store when the transport starts are awaited
/// again if they were sent within this long: the same patience a running
/// transport gives a report, and about as long as a gateway can be
/// expected to remember a result (its memory is finite; older ones it
/// has most likely forgotten, and they stay SENT).
const RESUME_WINDOW: Duration = REPORT_PATIENCE;
/// How long the incoming poller waits for the engine to say a fetched
/// message is on disk before it fetches it again next time.
const STORE_WAIT: Duration = Duration::from_secs(8);

/// A Dinstar gateway caps a text at 670 characters whatever the encoding,
/// receives, and can be asked by user_id about a message a crash left in
/// SENDING.
pub fn capabilities(ports: u32) -> Capabilities {
    Capabilities {
        ports: ports.min(u32::from(wire::MAX_PORT) + 1),
        text_limit: Some(wire::MAX_TEXT_CHARS),
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconciles: true,
        receives: true,
        resume_window: Some(RESUME_WINDOW),
    }
}
/// Pushed delivery reports that match nothing yet (their send result has
/// not arrived) are kept this long and at most this many.
const UNMATCHED_KEEP: Duration = Duration::from_secs(3600);
const UNMATCHED_MAX: usize = 512;
/// While the gateway is unreachable, ports are polled at least this often
/// so channels come back soon after it does.
const DOWN_REPOLL: Duration = Duration::from_secs(5);

/// The client settings of a `dinstar` gateway from its config (shared with
/// `smsgate probe` and `smsgate ussd`).
pub fn client_config(name: &str, s: &DinstarSettings) -> Result<DinstarClientConfig, DinstarError> {
    let mut c = DinstarClientConfig::new(name, &s.url, &s.user, s.password.expose());
    c.auth = if s.digest {
        AuthScheme::Digest
    } else {
        AuthScheme::Basic
    };
    c.tls = match (&s.tls_fingerprint, s.tls_accept_invalid) {
        (Some(fp), _) => TlsVerify::Pinned(
            parse_fingerprint(fp)
                .map_err(|e| DinstarError::Setup(format!("tls_fingerprint: {e}")))?,
        ),
        (None, true) => TlsVerify::AcceptInvalid,
        (None, false) => TlsVerify::System,
    };
    c.request_timeout = s.timeout;
    c.connect_timeout = s.timeout.min(Duration::from_secs(5));
    Ok(c)
}

/// Sends a USSD code on a port and waits up to `wait` for the reply.
pub async fn run_ussd(
    client: &DinstarClient,
    port: u8,
    code: &str,
    wait: Duration,
) -> Result<String, DinstarError> {
    let statuses = client.send_ussd(port, code).await?;
    if let Some(s) = statuses.iter().find(|s| s.port == port) {
        match s.status {
            200 => {}
            486 => {
                return Err(DinstarError::Temporary {
                    reason: format!("port {port} is busy (sending SMS or another USSD); try again"),
                    never_left: false,
                    gateway_code: Some(486),
                });
            }
            503 => {
                return Err(DinstarError::Permanent {
                    code: 503,
                    reason: format!("port {port} is not registered on the network"),
                });
            }
            other => {
                return Err(DinstarError::Permanent {
                    code: other,
                    reason: format!("the gateway answered status {other} for port {port}"),
                });
            }
        }
    }
    let deadline = Instant::now() + wait;
    loop {
        if let Some(text) = client.query_ussd_reply(port).await? {
            return Ok(text);
        }
        if Instant::now() >= deadline {
            return Err(DinstarError::Temporary {
                reason: format!(
                    "no USSD reply on port {port} within {} s",
                    wait.as_secs().max(1)
                ),
                never_left: false,
                gateway_code: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// "4 min", "35 s": how long, for a person.
fn human(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s >= 120 {
        format!("{} min", s.div_ceil(60))
    } else {
        format!("{s} s")
    }
}

/// Numbers as the gateway echoes them may have lost or gained a `+` or
/// spaces (reference §3, §8 Q18): compare digits only.
fn same_number(a: &str, b: &str) -> bool {
    let d = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (d(a), d(b));
    !a.is_empty() && a == b
}

#[derive(Debug, Clone)]
enum Stage {
    /// Accepted (202); waiting for SENT_OK / FAILED.
    AwaitResult,
    /// Left on the air; waiting for the delivery report of its first segment.
    AwaitReport {
        ref_id: Option<u8>,
        /// Send time in the gateway's clock, "YYYY-MM-DD HH:MM:SS".
        time: Option<String>,
        since: Instant,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    port: u8,
    number: String,
    accepted: Instant,
    /// Rebuilt from the store when the transport started (sent by an
    /// earlier run): how long before the start it was sent.
    resumed: Option<Duration>,
    stage: Stage,
}

#[derive(Default)]
struct State {
    /// Our user_ids the gateway accepted, until their final word.
    pending: HashMap<u32, Pending>,
    /// Last known health of each port, from polls and pushes.
    ports: HashMap<u32, PortHealth>,
    /// Why the whole gateway cannot be used now (unreachable), if so.
    down: Option<String>,
    /// The gateway refused our credentials and no request has succeeded
    /// since: keep channels out even after the client's backoff ends, until
    /// the port poller has proved the password works.
    auth_failed: bool,
    /// The gateway's serial number, once a reply has told it.
    sn: Option<String>,
    unmatched_reports: Vec<(Instant, DeliverStatus)>,
}

struct Inner {
    name: String,
    ports: u32,
    client: DinstarClient,
    events: Events,
    /// What an earlier run left awaiting results and reports, taken once by
    /// the result loop when it starts.
    awaiting: Mutex<Vec<Awaiting>>,
    /// Where the incoming poller starts: the mark the engine kept.
    inbound_mark: Option<i64>,
    /// For reading senders of received messages as E.164.
    default_country: String,
    result_poll: Duration,
    port_poll: Duration,
    incoming_poll: Duration,
    state: Mutex<State>,
    wake_results: Notify,
    wake_ports: Notify,
    /// True once the first port poll has ended. The other loops wait for
    /// it so that a wrong password costs one refused login, not one per
    /// loop racing at start (the gateway locks out an IP after a few).
    first_poll: tokio::sync::watch::Sender<bool>,
}

/// The `dinstar` transport of one gateway.
pub struct DinstarTransport {
    inner: Arc<Inner>,
    /// Cancelled on drop, so the loops end even if the engine forgets to.
    stop: CancellationToken,
}

impl Drop for DinstarTransport {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl DinstarTransport {
    /// Builds the client and spawns the background loops (needs a Tokio
    /// runtime).
    pub fn start(
        name: &str,
        ports: u32,
        settings: &DinstarSettings,
        ctx: BuildContext,
    ) -> Result<DinstarTransport, DinstarError> {
        let client = DinstarClient::new(client_config(name, settings)?)?;
        let inner = Arc::new(Inner {
            name: name.to_string(),
            ports: ports.min(u32::from(wire::MAX_PORT) + 1),
            client,
            events: ctx.events,
            awaiting: Mutex::new(ctx.awaiting),
            inbound_mark: ctx.inbound_mark,
            default_country: ctx.default_country,
            result_poll: settings.result_poll.max(Duration::from_millis(100)),
            port_poll: settings.port_poll.max(Duration::from_secs(1)),
            incoming_poll: settings.incoming_poll.max(Duration::from_secs(1)),
            state: Mutex::new(State::default()),
            wake_results: Notify::new(),
            wake_ports: Notify::new(),
            first_poll: tokio::sync::watch::Sender::new(false),
        });
        let stop = ctx.stop.child_token();
        // The result loop first takes up what an earlier run left waiting
        // (see `Inner::resume`).
        tokio::spawn(inner.clone().result_loop(stop.clone()));
        tokio::spawn(inner.clone().port_loop(stop.clone()));
        tokio::spawn(inner.clone().incoming_loop(stop.clone()));
        Ok(DinstarTransport { inner, stop })
    }

    /// The client (for tools and tests).
    pub fn client(&self) -> &DinstarClient {
        &self.inner.client
    }

    /// How many accepted messages still wait for a final word.
    pub fn pending(&self) -> usize {
        lock(&self.inner.state).pending.len()
    }
}

impl Inner {
    fn emit(&self, ev: Event) {
        // The engine has gone when this fails: nothing left to tell.
        let _ = self.events.send(ev);
    }

    fn auth_reason(&self) -> String {
        match self.client.backoff() {
            Some(b) => format!(
                "gateway refused our password; retrying in {}",
                human(b.remaining)
            ),
            None => "gateway refused our password; checking it again".to_string(),
        }
    }

    fn health(&self, port: u32) -> PortHealth {
        if port >= self.ports {
            return PortHealth {
                usable: false,
                reason: format!("port {port} does not exist on gateway {}", self.name),
                ..Default::default()
            };
        }
        let st = lock(&self.state);
        let mut h = st.ports.get(&port).cloned().unwrap_or_else(|| PortHealth {
            usable: false,
            reason: format!("port {port}: state not read from the gateway yet"),
            ..Default::default()
        });
        let in_backoff = self.client.backoff().is_some();
        if in_backoff || st.auth_failed {
            h.usable = false;
            drop(st);
            h.reason = self.auth_reason();
        } else if let Some(why) = &st.down {
            h.usable = false;
            h.reason = why.clone();
        }
        h
    }

    /// Records a port's new health; tells the engine when usability or the
    /// reason changed.
    fn set_port(&self, port: u32, h: PortHealth) {
        let changed = {
            let mut st = lock(&self.state);
            let old = st.ports.insert(port, h.clone());
            old.is_none_or(|o| o.usable != h.usable || o.reason != h.reason)
        };
        if changed {
            if h.usable {
                tracing::info!(gateway = %self.name, port, signal = ?h.signal, "port usable");
            } else {
                tracing::warn!(gateway = %self.name, port, reason = %h.reason, "port not usable");
            }
            self.emit(Event::PortHealth {
                gateway: self.name.clone(),
                port,
                health: h,
            });
        }
    }

    /// Every port's health after a gateway-wide change (down, auth).
    fn announce_all(&self) {
        for port in 0..self.ports {
            self.emit(Event::PortHealth {
                gateway: self.name.clone(),
                port,
                health: self.health(port),
            });
        }
    }

    fn set_down(&self, why: Option<String>) {
        let changed = {
            let mut st = lock(&self.state);
            let changed = st.down != why;
            st.down = why.clone();
            changed
        };
        if changed {
            match &why {
                Some(w) => tracing::warn!(gateway = %self.name, reason = %w, "gateway not usable"),
                None => tracing::info!(gateway = %self.name, "gateway reachable again"),
            }
            self.announce_all();
        }
    }

    fn set_auth_failed(&self, failed: bool) {
        let changed = {
            let mut st = lock(&self.state);
            let changed = st.auth_failed != failed;
            st.auth_failed = failed;
            changed
        };
        if changed {
            if failed {
                tracing::warn!(gateway = %self.name, reason = %self.auth_reason(), "gateway refused our credentials; its channels are out of use");
            } else {
                tracing::info!(gateway = %self.name, "gateway accepts our credentials again");
            }
            self.announce_all();
        }
    }

    fn learn_sn(&self, sn: Option<&str>) {
        if let Some(sn) = sn.filter(|s| !s.is_empty()) {
            let mut st = lock(&self.state);
            if st.sn.as_deref() != Some(sn) {
                tracing::info!(gateway = %self.name, sn, "gateway serial number");
                st.sn = Some(sn.to_string());
            }
        }
    }

    fn port_health_from(info: &PortInfo) -> PortHealth {
        let port = info.port;
        let registered = info.reg.as_ref().map(|r| *r == RegStatus::RegisterOk);
        let sim = info.reg.as_ref().map(|r| !matches!(r, RegStatus::NoSim));
        let reason = match &info.reg {
            Some(RegStatus::RegisterOk) | None => String::new(),
            Some(RegStatus::NoSim) => format!("no SIM in port {port}"),
            Some(RegStatus::PowerOff) => format!("port {port} is powered off"),
            Some(RegStatus::PinRequired) => format!("the SIM in port {port} asks for its PIN"),
            Some(RegStatus::PukRequired) => format!("the SIM in port {port} asks for its PUK"),
            Some(RegStatus::Searching) => {
                format!("port {port} not registered (searching for a network)")
            }
            Some(other) => format!("port {port} not registered ({})", other.as_wire()),
        };
        PortHealth {
            usable: info.looks_usable(),
            reason,
            sim,
            imsi: info.imsi.clone(),
            number: info.number.clone(),
            registered,
            signal: info.signal.map(i32::from),
            operator: None,
        }
    }

    async fn poll_ports(&self) {
        let ports: Vec<u8> = (0..self.ports)
            .filter_map(|p| u8::try_from(p).ok())
            .collect();
        match self.client.get_port_info(&ports, &[]).await {
            Ok(infos) => {
                self.set_auth_failed(false);
                self.set_down(None);
                for port in 0..self.ports {
                    let h = match infos.iter().find(|i| u32::from(i.port) == port) {
                        Some(info) => Self::port_health_from(info),
                        None => PortHealth {
                            usable: false,
                            reason: format!("port {port} is not reported by the gateway"),
                            ..Default::default()
                        },
                    };
                    self.set_port(port, h);
                }
            }
            Err(DinstarError::Auth { .. } | DinstarError::BackingOff { .. }) => {
                self.set_auth_failed(true);
            }
            Err(e) => self.set_down(Some(format!("gateway unreachable: {e}"))),
        }
    }

    /// Waits for the first port poll; false when stopping.
    async fn after_first_poll(&self, stop: &CancellationToken) -> bool {
        let mut rx = self.first_poll.subscribe();
        tokio::select! {
            _ = stop.cancelled() => false,
            r = rx.wait_for(|done| *done) => r.is_ok(),
        }
    }

    /// Whether the other loops should leave the gateway alone: while our
    /// credentials are refused only the port poller tries them again.
    fn auth_blocked(&self) -> bool {
        lock(&self.state).auth_failed || self.client.backoff().is_some()
    }

    async fn port_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.poll_ports().await;
            self.first_poll.send_replace(true);
            let wait = if lock(&self.state).down.is_some() {
                self.port_poll.min(DOWN_REPOLL)
            } else {
                self.port_poll
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake_ports.notified() => {}
            }
        }
    }

    // -----------------------------------------------------------------------
    // Results and delivery reports
    // -----------------------------------------------------------------------

    fn track(&self, user_id: u32, port: u8, number: &str) {
        lock(&self.state).pending.insert(
            user_id,
            Pending {
                port,
                number: number.to_string(),
                accepted: Instant::now(),
                resumed: None,
                stage: Stage::AwaitResult,
            },
        );
    }

    /// Rebuilds the table of messages awaiting their final word from what
    /// an earlier run (crashed or stopped) left SENT on this gateway within
    /// [`RESUME_WINDOW`]. They are asked for by user_id again (their ref_id
    /// and send time come with the result, so pushed and polled delivery
    /// reports match them as usual). Entries this run has already made are
    /// kept as they are.
    async fn resume(&self) {
        let rows = std::mem::take(&mut *lock(&self.awaiting));
        if rows.is_empty() {
            return;
        }
        let now = crate::now_ms();
        let (mut resumed, mut skipped) = (0usize, 0usize);
        {
            let mut st = lock(&self.state);
            for row in rows {
                let user_id = row
                    .reference
                    .and_then(|r| u32::try_from(r).ok())
                    .filter(|u| (1..=i32::MAX as u32).contains(u))
                    .filter(|u| row.gateway_ref == u.to_string());
                let port = row
                    .port
                    .filter(|p| *p < self.ports)
                    .and_then(|p| u8::try_from(p).ok());
                let (Some(user_id), Some(port)) = (user_id, port) else {
                    skipped += 1;
                    continue;
                };
                let age = Duration::from_millis(u64::try_from(now - row.sent_at).unwrap_or(0));
                st.pending.entry(user_id).or_insert_with(|| {
                    resumed += 1;
                    Pending {
                        port,
                        number: row.number.clone().unwrap_or_default(),
                        accepted: Instant::now(),
                        resumed: Some(age),
                        stage: Stage::AwaitResult,
                    }
                });
            }
        }
        if resumed > 0 {
            tracing::info!(gateway = %self.name, count = resumed, "waiting again for the results and delivery reports of messages sent before the restart");
            self.wake_results.notify_one();
        }
        if skipped > 0 {
            tracing::warn!(gateway = %self.name, count = skipped, "SENT messages without a usable user_id or port; they stay SENT");
        }
    }

    /// Applies a send result for one of our user_ids.
    fn apply_result(&self, user_id: u32, r: &SmsResult) {
        let mut st = lock(&self.state);
        let Some(p) = st.pending.get_mut(&user_id) else {
            return;
        };
        let port = r.port.unwrap_or(p.port);
        match &r.status {
            SmsStatus::Sending | SmsStatus::Other(_) => {}
            SmsStatus::SentOk => {
                if matches!(p.stage, Stage::AwaitResult) {
                    tracing::debug!(gateway = %self.name, port, user_id, ref_id = ?r.ref_id, "message left the gateway");
                    if let Some(n) = r.number.as_deref().filter(|n| !n.is_empty()) {
                        p.number = n.to_string();
                    }
                    p.port = port;
                    p.stage = Stage::AwaitReport {
                        ref_id: r.ref_id,
                        time: r.time.clone(),
                        since: Instant::now(),
                    };
                    drop(st);
                    self.retry_unmatched();
                }
            }
            SmsStatus::Delivered => {
                st.pending.remove(&user_id);
                drop(st);
                tracing::info!(gateway = %self.name, port, user_id, "message delivered");
                self.emit(Event::Delivered {
                    gateway: self.name.clone(),
                    gateway_ref: user_id.to_string(),
                    delivered: true,
                    detail: "the gateway reports it delivered".into(),
                });
            }
            SmsStatus::Failed => {
                st.pending.remove(&user_id);
                drop(st);
                let detail = format!(
                    "the gateway could not send it on port {port} ({} of {} segments sent)",
                    r.succ_count.unwrap_or(0),
                    r.count.map_or("?".to_string(), |c| c.to_string())
                );
                tracing::warn!(gateway = %self.name, port, user_id, reason = %detail, "message failed after the gateway accepted it");
                self.emit(Event::Result {
                    gateway: self.name.clone(),
                    gateway_ref: user_id.to_string(),
                    ok: false,
                    detail,
                });
            }
        }
    }

    /// A send result without our user_id (the manual's push example has
    /// none): applied when exactly one awaiting message fits its port and
    /// number; otherwise the poller asks by user_id at once.
    fn apply_anonymous_result(&self, r: &SmsResult) {
        let candidates: Vec<u32> = {
            let st = lock(&self.state);
            st.pending
                .iter()
                .filter(|(_, p)| matches!(p.stage, Stage::AwaitResult))
                .filter(|(_, p)| r.port.is_none_or(|port| port == p.port))
                .filter(|(_, p)| {
                    r.number
                        .as_deref()
                        .is_some_and(|n| same_number(n, &p.number))
                })
                .map(|(u, _)| *u)
                .collect()
        };
        if let [one] = candidates[..] {
            self.apply_result(one, r);
        } else {
            self.wake_results.notify_one();
        }
    }

    /// Matches a delivery report to a sent message: same port, same number,
    /// same ref_id, and not older than the send. Returns false when nothing
    /// fits.
    fn apply_report(&self, r: &DeliverStatus) -> bool {
        let (Some(ref_id), Some(number)) = (r.ref_id, r.number.as_deref()) else {
            return false;
        };
        let found = {
            let st = lock(&self.state);
            st.pending
                .iter()
                .filter_map(|(u, p)| match &p.stage {
                    Stage::AwaitReport {
                        ref_id: Some(rid),
                        time,
                        ..
                    } if *rid == ref_id
                        && r.port.is_none_or(|port| port == p.port)
                        && same_number(number, &p.number)
                        && match (time, &r.time) {
                            (Some(sent), Some(rep)) => rep >= sent,
                            _ => true,
                        } =>
                    {
                        Some((*u, time.clone()))
                    }
                    _ => None,
                })
                // ref_id wraps at 256: the latest send before the report is
                // the one it answers.
                .max_by(|a, b| a.1.cmp(&b.1))
                .map(|(u, _)| u)
        };
        let Some(user_id) = found else {
            return false;
        };
        let port = r.port.map(u32::from);
        let (delivered, detail) = match r.outcome() {
            DeliveryOutcome::Pending | DeliveryOutcome::Unknown => return true,
            DeliveryOutcome::Delivered => {
                (true, "delivery report: received by the handset".to_string())
            }
            // TP-Status 1-31: the SMSC completed it without the handset's
            // confirmation; counted as delivered and said so.
            DeliveryOutcome::CompletedUnconfirmed => (
                true,
                format!(
                    "delivery report: completed, reception not confirmed (status {})",
                    r.status_code.unwrap_or(0)
                ),
            ),
            DeliveryOutcome::Failed => (
                false,
                format!(
                    "delivery report: not delivered (status {})",
                    r.status_code.unwrap_or(0)
                ),
            ),
        };
        lock(&self.state).pending.remove(&user_id);
        tracing::info!(gateway = %self.name, port = ?port, user_id, delivered, "delivery report");
        self.emit(Event::Delivered {
            gateway: self.name.clone(),
            gateway_ref: user_id.to_string(),
            delivered,
            detail,
        });
        true
    }

    fn retry_unmatched(&self) {
        let reports: Vec<(Instant, DeliverStatus)> =
            std::mem::take(&mut lock(&self.state).unmatched_reports);
        let mut keep = Vec::new();
        for (at, r) in reports {
            if !self.apply_report(&r) && at.elapsed() < UNMATCHED_KEEP {
                keep.push((at, r));
            }
        }
        let mut st = lock(&self.state);
        keep.append(&mut st.unmatched_reports);
        st.unmatched_reports = keep;
    }

    async fn poll_results(&self) {
        let ids: Vec<u32> = {
            let st = lock(&self.state);
            let mut v: Vec<u32> = st
                .pending
                .iter()
                .filter(|(_, p)| matches!(p.stage, Stage::AwaitResult))
                .map(|(u, _)| *u)
                .collect();
            v.sort_unstable();
            v
        };
        if ids.is_empty() {
            return;
        }
        // The client asks 32 user_ids a call (reference §2.7).
        match self.client.query_sms_result(&ids).await {
            Ok(results) => {
                for r in &results {
                    if let Some(u) = r.user_id.filter(|u| ids.contains(u)) {
                        self.apply_result(u, r);
                    }
                }
                self.forget_unknown_resumed(&ids, &results);
            }
            Err(e) => {
                tracing::debug!(gateway = %self.name, error = %e, "cannot read send results now")
            }
        }
    }

    async fn poll_reports(&self) {
        let (numbers, ports, after) = {
            let st = lock(&self.state);
            let mut numbers: Vec<String> = Vec::new();
            let mut ports: Vec<u8> = Vec::new();
            let mut after: Option<String> = None;
            let mut all_timed = true;
            for p in st.pending.values() {
                if let Stage::AwaitReport { time, .. } = &p.stage {
                    if !numbers.contains(&p.number) {
                        numbers.push(p.number.clone());
                    }
                    if !ports.contains(&p.port) {
                        ports.push(p.port);
                    }
                    match time {
                        Some(t) if after.as_ref().is_none_or(|a| t < a) => after = Some(t.clone()),
                        Some(_) => {}
                        None => all_timed = false,
                    }
                }
            }
            (numbers, ports, if all_timed { after } else { None })
        };
        if numbers.is_empty() {
            return;
        }
        let q = DeliverStatusQuery {
            numbers,
            ports,
            time_after: after,
            time_before: None,
        };
        match self.client.query_sms_deliver_status(&q).await {
            Ok(reports) => {
                for r in &reports {
                    self.apply_report(r);
                }
            }
            Err(e) => {
                tracing::debug!(gateway = %self.name, error = %e, "cannot read delivery reports now")
            }
        }
    }

    /// A message sent before a restart that the gateway no longer knows
    /// (its reply to our question by user_id does not have it) will get no
    /// result and no report we could match: stop asking (it stays SENT).
    /// Messages of this run are never dropped this way; they may simply be
    /// too new for the gateway's answer.
    fn forget_unknown_resumed(&self, asked: &[u32], results: &[SmsResult]) {
        let mut st = lock(&self.state);
        let mut gone = 0usize;
        for u in asked {
            if results.iter().any(|r| r.user_id == Some(*u)) {
                continue;
            }
            if st
                .pending
                .get(u)
                .is_some_and(|p| p.resumed.is_some() && matches!(p.stage, Stage::AwaitResult))
            {
                st.pending.remove(u);
                gone += 1;
            }
        }
        drop(st);
        if gone > 0 {
            tracing::warn!(gateway = %self.name, count = gone, "the gateway no longer knows messages sent before the restart; they stay SENT");
        }
    }

    /// Forgets messages whose final word never came (they stay SENT).
    fn expire(&self) {
        let mut st = lock(&self.state);
        let before = st.pending.len();
        st.pending.retain(|_, p| match &p.stage {
            Stage::AwaitResult => p.accepted.elapsed() < RESULT_PATIENCE,
            // A message sent before a restart counts the time it waited
            // then.
            Stage::AwaitReport { since, .. } => {
                since.elapsed() + p.resumed.unwrap_or_default() < REPORT_PATIENCE
            }
        });
        let gone = before - st.pending.len();
        st.unmatched_reports
            .retain(|(at, _)| at.elapsed() < UNMATCHED_KEEP);
        drop(st);
        if gone > 0 {
            tracing::info!(gateway = %self.name, count = gone, "stopped waiting for results or reports of old messages; they stay SENT");
        }
    }

    async fn result_loop(self: Arc<Self>, stop: CancellationToken) {
        self.resume().await;
        if !self.after_first_poll(&stop).await {
            return;
        }
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.result_poll) => {}
                _ = self.wake_results.notified() => {}
            }
            if self.auth_blocked() {
                continue;
            }
            self.poll_results().await;
            self.poll_reports().await;
            self.expire();
        }
    }

    // -----------------------------------------------------------------------
    // Inbound
    // -----------------------------------------------------------------------

    fn inbound(&self, sn: &str, m: &IncomingSms) -> Option<Received> {
        let id = m.incoming_sms_id?;
        let port = m.port.map(u32::from);
        let recipient = port.and_then(|p| {
            lock(&self.state)
                .ports
                .get(&p)
                .and_then(|h| h.number.clone())
                .filter(|n| !n.is_empty())
        });
        Some(Received {
            gateway: self.name.clone(),
            port,
            source_key: format!("{sn}:{id}"),
            sender: m.number.clone().unwrap_or_default(),
            // Short codes and alphanumeric senders have no E.164 form.
            number: m.number.as_deref().and_then(|n| {
                smsgate_proto::sms::phone::normalise(n, &self.default_country)
                    .ok()
                    .map(|p| p.into_string())
            }),
            recipient,
            text: m.text.clone(),
            sent_at: m.timestamp.clone(),
        })
    }

    /// The serial number to key received messages with: the one the reply
    /// or push gave, else the last one learned, else the gateway's name.
    fn sn_or(&self, given: Option<&str>) -> String {
        given
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| lock(&self.state).sn.clone())
            .unwrap_or_else(|| self.name.clone())
    }

    /// Hands received messages to the engine and waits (at most
    /// [`STORE_WAIT`]) for each to be on disk; returns how many of them,
    /// from the first, are.
    async fn store_in_order(&self, messages: Vec<Received>) -> usize {
        let mut answers = Vec::with_capacity(messages.len());
        for message in messages {
            let (ack, stored) = StoredAck::new();
            self.emit(Event::InboundAcked { message, ack });
            answers.push(stored);
        }
        let deadline = tokio::time::Instant::now() + STORE_WAIT;
        let mut n = 0;
        for stored in answers {
            match tokio::time::timeout_at(deadline, stored).await {
                Ok(Ok(true)) => n += 1,
                _ => break,
            }
        }
        n
    }

    async fn incoming_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut hwm: u64 = self
            .inbound_mark
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        let mut last_error = String::new();
        if !self.after_first_poll(&stop).await {
            return;
        }
        loop {
            if self.auth_blocked() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.incoming_poll) => {}
                }
                continue;
            }
            match self.client.query_incoming_sms(hwm, &[]).await {
                Ok(batch) => {
                    last_error.clear();
                    self.learn_sn(batch.sn.as_deref());
                    let sn = self.sn_or(batch.sn.as_deref());
                    let mut ids = Vec::new();
                    let mut received = Vec::new();
                    for m in &batch.sms {
                        if let Some(new) = self.inbound(&sn, m) {
                            ids.push(m.incoming_sms_id.unwrap_or(0));
                            received.push(new);
                        }
                    }
                    if !ids.is_empty() {
                        let n = self.store_in_order(received).await;
                        if n > 0 {
                            let top = ids[n - 1];
                            if top > hwm {
                                hwm = top;
                                self.emit(Event::InboundMark {
                                    gateway: self.name.clone(),
                                    mark: i64::try_from(top).unwrap_or(i64::MAX),
                                });
                            }
                        }
                        if n < ids.len() {
                            tracing::warn!(gateway = %self.name, "some received messages are not stored yet; fetching them again next time");
                        }
                    }
                }
                Err(e) => {
                    let s = e.to_string();
                    if s != last_error {
                        tracing::warn!(gateway = %self.name, error = %s, "cannot fetch received messages now");
                        last_error = s;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.incoming_poll) => {}
            }
        }
    }

    // -----------------------------------------------------------------------
    // Pushes
    // -----------------------------------------------------------------------

    fn push(&self, events: Vec<PushEvent>) -> usize {
        let n = events.len();
        for ev in events {
            self.learn_sn(ev.sn.as_deref());
            match ev.kind {
                PushEventKind::IncomingSms(m) => {
                    let sn = self.sn_or(ev.sn.as_deref());
                    match self.inbound(&sn, &m) {
                        Some(new) => self.emit(Event::Inbound(new)),
                        None => {
                            tracing::warn!(gateway = %self.name, "pushed SMS without incoming_sms_id ignored; the poller fetches it")
                        }
                    }
                }
                PushEventKind::SmsResult(r) => match r.user_id {
                    Some(u) => self.apply_result(u, &r),
                    None => self.apply_anonymous_result(&r),
                },
                PushEventKind::DeliverStatus(r) => {
                    if !self.apply_report(&r) {
                        // Its send result may not be known yet.
                        let mut st = lock(&self.state);
                        if st.unmatched_reports.len() >= UNMATCHED_MAX {
                            st.unmatched_reports.remove(0);
                        }
                        st.unmatched_reports.push((Instant::now(), r));
                        drop(st);
                        self.wake_results.notify_one();
                    }
                }
                PushEventKind::Register(reg) => {
                    let Some(port) = reg.port.map(u32::from).filter(|p| *p < self.ports) else {
                        continue;
                    };
                    let old = lock(&self.state).ports.get(&port).cloned();
                    let h = match reg.status {
                        RegisterState::Up => PortHealth {
                            usable: true,
                            reason: String::new(),
                            sim: Some(true),
                            imsi: reg.imsi.clone(),
                            number: reg.number.clone(),
                            registered: Some(true),
                            signal: old.and_then(|o| o.signal),
                            operator: None,
                        },
                        RegisterState::Down => PortHealth {
                            usable: false,
                            reason: if reg.imsi.is_none() {
                                format!("no SIM in port {port}")
                            } else {
                                format!("port {port} not registered")
                            },
                            sim: reg.imsi.as_ref().map(|_| true),
                            imsi: reg.imsi.clone(),
                            number: reg.number.clone(),
                            registered: Some(false),
                            signal: Some(0),
                            operator: None,
                        },
                        RegisterState::Other(ref s) => {
                            tracing::info!(gateway = %self.name, port, status = %s, "register push with an unknown status; reading the ports");
                            self.wake_ports.notify_one();
                            continue;
                        }
                    };
                    self.set_port(port, h);
                    // Read the full state soon (signal, the exact reg).
                    self.wake_ports.notify_one();
                }
                PushEventKind::Device(d) => {
                    tracing::warn!(gateway = %self.name, status = ?d.status, ip = ?d.ip, "device event from the gateway");
                    self.wake_ports.notify_one();
                }
                PushEventKind::Exception(x) => {
                    tracing::warn!(gateway = %self.name, port = ?x.port, kind = ?x.kind, action = ?x.action, "port exception reported by the gateway");
                    self.wake_ports.notify_one();
                }
                PushEventKind::Ussd(u) => {
                    tracing::info!(gateway = %self.name, port = ?u.port, reply = ?u.text, "USSD reply pushed");
                }
                PushEventKind::Cdr(_) => {}
            }
        }
        n
    }

    // -----------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------

    async fn send(&self, msg: &Outbound) -> Result<Accepted, SendError> {
        let Some(port) = u8::try_from(msg.port)
            .ok()
            .filter(|p| *p <= wire::MAX_PORT && msg.port < self.ports)
        else {
            return Err(SendError::PortUnusable {
                reason: format!("port {} does not exist on gateway {}", msg.port, self.name),
            });
        };
        let Some(user_id) = u32::try_from(msg.reference)
            .ok()
            .filter(|u| (1..=i32::MAX as u32).contains(u))
        else {
            return Err(SendError::Permanent {
                reason: format!(
                    "internal reference {} is outside Dinstar's user_id range",
                    msg.reference
                ),
            });
        };
        let length = wire::text_length(&msg.text);
        if length > wire::MAX_TEXT_CHARS {
            return Err(SendError::Permanent {
                reason: format!(
                    "the text is {length} characters long; Dinstar gateways take at most {} (not sent)",
                    wire::MAX_TEXT_CHARS
                ),
            });
        }
        let encoding = if is_gsm7(&msg.text) {
            Encoding::Gsm7Bit
        } else {
            Encoding::Unicode
        };
        match self
            .client
            .send_sms(port, user_id, &msg.to, &msg.text, encoding)
            .await
        {
            Ok(acc) => {
                self.set_auth_failed(false);
                self.track(user_id, port, &msg.to);
                tracing::debug!(gateway = %self.name, port, user_id, task_id = ?acc.task_id, encoding = encoding.as_wire(), "gateway accepted the message");
                Ok(Accepted {
                    gateway_ref: user_id.to_string(),
                })
            }
            Err(e) => self.send_failed(port, user_id, &msg.to, e).await,
        }
    }

    async fn send_failed(
        &self,
        port: u8,
        user_id: u32,
        to: &str,
        e: DinstarError,
    ) -> Result<Accepted, SendError> {
        match e {
            DinstarError::TextTooLong { .. } | DinstarError::InvalidRequest(_) => {
                Err(SendError::Permanent {
                    reason: e.to_string(),
                })
            }
            DinstarError::Permanent { .. } => Err(SendError::Permanent {
                reason: e.to_string(),
            }),
            DinstarError::PortUnusable => {
                // Something changed on the port: read the state now.
                self.wake_ports.notify_one();
                Err(SendError::PortUnusable {
                    reason: format!("the gateway cannot send on port {port} now (error 550)"),
                })
            }
            DinstarError::Auth { .. } | DinstarError::BackingOff { .. } => {
                self.set_auth_failed(true);
                Err(SendError::Auth {
                    reason: self.auth_reason(),
                })
            }
            DinstarError::Setup(reason) => Err(SendError::Temporary { reason }),
            DinstarError::Temporary {
                ref reason,
                never_left,
                gateway_code,
            } => {
                if never_left || gateway_code.is_some() {
                    return Err(SendError::Temporary {
                        reason: reason.clone(),
                    });
                }
                // A timeout or an unreadable reply: the gateway may have
                // queued it. Ask before anything is sent again, so a
                // message is never sent twice.
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.client.query_sms_result(&[user_id]).await {
                    Ok(rs) if rs.iter().any(|r| r.user_id == Some(user_id)) => {
                        tracing::info!(gateway = %self.name, port, user_id, "the reply was lost but the gateway has the message");
                        self.track(user_id, port, to);
                        if let Some(r) = rs.iter().find(|r| r.user_id == Some(user_id)) {
                            self.apply_result(user_id, r);
                        }
                        Ok(Accepted {
                            gateway_ref: user_id.to_string(),
                        })
                    }
                    Ok(_) => Err(SendError::Temporary {
                        reason: format!("{reason}; the gateway does not have it"),
                    }),
                    Err(e2) => Err(SendError::Unknown {
                        reason: format!(
                            "{reason}; and the gateway cannot be asked whether it took it ({e2})"
                        ),
                    }),
                }
            }
        }
    }

    async fn reconcile(&self, port: u32, reference: i64) -> Reconciled {
        let Ok(user_id) = u32::try_from(reference) else {
            return Reconciled::Unknown;
        };
        match self.client.query_sms_result(&[user_id]).await {
            Ok(rs) => match rs.iter().find(|r| r.user_id == Some(user_id)) {
                Some(r) => {
                    let p = r
                        .port
                        .or_else(|| u8::try_from(port).ok())
                        .unwrap_or_default();
                    self.track(user_id, p, r.number.as_deref().unwrap_or(""));
                    tracing::info!(gateway = %self.name, port = p, user_id, status = r.status.as_wire(), "message left in SENDING was taken by the gateway");
                    // The result loop turns a FAILED or DELIVERED status
                    // into its event once the engine has marked it SENT.
                    self.wake_results.notify_one();
                    Reconciled::Sent {
                        gateway_ref: user_id.to_string(),
                    }
                }
                None => {
                    tracing::info!(gateway = %self.name, port, user_id, "message left in SENDING never reached the gateway");
                    Reconciled::NotSent
                }
            },
            Err(e) => {
                tracing::warn!(gateway = %self.name, port, user_id, error = %e, "cannot ask the gateway about a message left in SENDING");
                Reconciled::Unknown
            }
        }
    }
}

impl Transport for DinstarTransport {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ports(&self) -> u32 {
        self.inner.ports
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(self.inner.send(msg))
    }

    fn reconcile<'a>(&'a self, port: u32, reference: i64) -> BoxFuture<'a, Reconciled> {
        Box::pin(self.inner.reconcile(port, reference))
    }

    fn health(&self, port: u32) -> PortHealth {
        self.inner.health(port)
    }

    /// A push (`{"sn": ..., "<event>": ...}`). Answers at once: it only
    /// updates the tables and queues events for the engine.
    fn accept_webhook(&self, request: WebhookRequest) -> Result<WebhookReply, TransportError> {
        let events = wire::parse_push(&request.body).map_err(|e| {
            tracing::warn!(gateway = %self.inner.name, error = %e, "push not understood");
            TransportError::NotUnderstood(e.to_string())
        })?;
        let n = self.inner.push(events);
        tracing::debug!(gateway = %self.inner.name, events = n, "push taken");
        // What the gateway expects back is not documented (reference §8
        // Q14): a 200 with the API's own envelope shape is the safe answer.
        Ok(WebhookReply {
            status: http::StatusCode::OK,
            body: serde_json::json!({"error_code": 200, "events": n}),
            events: n,
        })
    }

    /// Asks the gateway itself, not the last polled state: a breaker must
    /// not close on health read before the gateway went away.
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ports: Vec<u8> = (0..self.inner.ports.min(256))
                .filter_map(|p| u8::try_from(p).ok())
                .collect();
            match self.inner.client.get_port_info(&ports, &[]).await {
                Ok(infos) if infos.iter().any(|i| i.looks_usable()) => Ok(()),
                Ok(_) => Err("the gateway answers but no port can send".into()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_check() {
        assert!(is_gsm7("Hola Muñoz, ¿todo bien? ¡Si! 100€ [ok] {x} ~^|\\"));
        assert!(is_gsm7("Ça va? èéùìò ÄÖÑÜ äöñüà @£$¥ _"));
        // Accented vowels Spanish writes that GSM 03.38 lacks.
        assert!(!is_gsm7("canción"));
        assert!(!is_gsm7("está"));
        assert!(!is_gsm7("¡Sí!"));
        assert!(!is_gsm7("hola 😀"));
        assert!(!is_gsm7("`"));
        assert!(is_gsm7(""));
    }

    #[test]
    fn numbers_compare_by_digits() {
        assert!(same_number("+59899123456", " 59899123456"));
        assert!(!same_number("+59899123456", "59899123457"));
        assert!(!same_number("", ""));
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(35)), "35 s");
        assert_eq!(human(Duration::from_secs(230)), "4 min");
        assert_eq!(human(Duration::ZERO), "1 s");
    }

    #[test]
    fn port_health_reasons() {
        let mut info = PortInfo {
            port: 3,
            reg: Some(RegStatus::NoSim),
            ..Default::default()
        };
        let h = Inner::port_health_from(&info);
        assert!(!h.usable);
        assert_eq!(h.reason, "no SIM in port 3");
        assert_eq!(h.sim, Some(false));
        info.port = 2;
        info.reg = Some(RegStatus::Unregistered);
        let h = Inner::port_health_from(&info);
        assert_eq!(h.reason, "port 2 not registered (UNREGISTER)");
        info.reg = Some(RegStatus::RegisterOk);
        info.signal = Some(23);
        let h = Inner::port_health_from(&info);
        assert!(h.usable && h.reason.is_empty());
        assert_eq!(h.signal, Some(23));
    }
}
