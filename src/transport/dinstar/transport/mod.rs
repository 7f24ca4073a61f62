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
//!
//! This file holds the shared state and the transport itself; each job is
//! a child module of `impl Inner` methods over that state: `ports` (port
//! health and its poller), `results` (the awaiting table, results and
//! delivery reports), `incoming` (the inbound poller), `push` (pushes) and
//! `send` (sending and reconciling).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::client::{AuthScheme, DinstarClient, DinstarClientConfig, DinstarError};
use super::tls::{TlsVerify, parse_fingerprint};
use crate::config::DinstarSettings;
use crate::transport::{
    Accepted, Asked, Awaiting, BoxFuture, BuildContext, Capabilities, Event, Events, Outbound,
    PortHealth, ReconcileTiming, Reconciled, SendError, Transport, TransportError, WebhookReply,
    WebhookRequest,
};
use smsgate_proto::dinstar::wire::{self, DeliverStatus};

mod incoming;
mod ports;
mod push;
mod results;
mod send;

use results::{Pending, Settled};

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
/// receives, and can be asked by user_id about a message in doubt (a
/// crash left it in SENDING, or its send's answer was lost), with the
/// grace and patience its config sets.
pub fn capabilities(ports: u32, settings: &DinstarSettings) -> Capabilities {
    Capabilities {
        ports: ports.min(u32::from(wire::MAX_PORT) + 1),
        text_limit: Some(wire::MAX_TEXT_CHARS),
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: Some(ReconcileTiming {
            grace: settings.reconcile_grace,
            patience: settings.reconcile_patience,
        }),
        receives: true,
        resume_window: Some(RESUME_WINDOW),
        whatsapp: false,
    }
}
/// Pushed delivery reports that match nothing yet (their send result has
/// not arrived) are kept this long and at most this many.
const UNMATCHED_KEEP: Duration = Duration::from_secs(3600);
const UNMATCHED_MAX: usize = 512;
/// Messages whose final word came are remembered this long and at most
/// this many (the oldest forgotten first; about 150 bytes each, so under
/// 1 MB a gateway), so that a late report (a failure after the delivery,
/// a second report of a multi-part message) is still matched and noted in
/// the message's history instead of going unmatched.
const SETTLED_KEEP: Duration = Duration::from_secs(24 * 3600);
const SETTLED_MAX: usize = 4096;
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
    /// Messages whose final word came, newest last, within
    /// [`SETTLED_KEEP`] and [`SETTLED_MAX`].
    settled: std::collections::VecDeque<Settled>,
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

    fn learn_sn(&self, sn: Option<&str>) {
        if let Some(sn) = sn.filter(|s| !s.is_empty()) {
            let mut st = lock(&self.state);
            if st.sn.as_deref() != Some(sn) {
                tracing::info!(gateway = %self.name, sn, "gateway serial number");
                st.sn = Some(sn.to_string());
            }
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

    fn reconcile<'a>(&'a self, asked: &'a Asked) -> BoxFuture<'a, Reconciled> {
        Box::pin(self.inner.reconcile(asked.port, asked.reference))
    }

    fn health(&self, port: u32) -> PortHealth {
        self.inner.health(port)
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

    /// A push (`{"sn": ..., "<event>": ...}`). Answers at once: it only
    /// updates the tables and queues events for the engine.
    fn accept_webhook<'a>(
        &'a self,
        request: WebhookRequest,
    ) -> BoxFuture<'a, Result<WebhookReply, TransportError>> {
        Box::pin(std::future::ready(self.take_push(request)))
    }
}

impl DinstarTransport {
    fn take_push(&self, request: WebhookRequest) -> Result<WebhookReply, TransportError> {
        let events = wire::parse_push(&request.body).map_err(|e| {
            tracing::warn!(gateway = %self.inner.name, error = %e, "push not understood");
            TransportError::NotUnderstood(e.to_string())
        })?;
        // Taken whole or not at all: a push applied while its events cannot
        // be queued would lose the reports it carries. Refused, the pollers
        // fetch the same results and reports from the gateway.
        let busy = || {
            TransportError::Busy(format!(
                "gateway {}: smsgate's event queue is full; push again later",
                self.inner.name
            ))
        };
        if self.inner.events.room() < events.len() {
            return Err(busy());
        }
        // The received messages' room is taken before anything is applied,
        // so one answered 200 is never dropped by a queue that another push
        // (or poller) filled since the check above.
        let sms = events
            .iter()
            .filter(|e| matches!(e.kind, wire::PushEventKind::IncomingSms(_)))
            .count();
        let Some(mut room) = self.inner.events.reserve(sms) else {
            return Err(busy());
        };
        let (n, received) = self.inner.push(events);
        for message in received {
            let _ = room.send(Event::Inbound(message));
        }
        tracing::debug!(gateway = %self.inner.name, events = n, "push taken");
        // What the gateway expects back is not documented (reference §8
        // Q14): a 200 with the API's own envelope shape is the safe answer.
        Ok(WebhookReply {
            status: http::StatusCode::OK,
            body: serde_json::json!({"error_code": 200, "events": n}),
            raw: None,
            events: n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smsgate_proto::dinstar::wire::{PortInfo, RegStatus};
    use smsgate_proto::sms::gsm7::is_gsm7;

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
