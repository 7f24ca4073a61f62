//! Transports: the only code that speaks to gateways. Each provider kind
//! implements [`Transport`]; the engine sees nothing else of it.
//!
//! A transport never touches the store. What it needs at start (the
//! messages an earlier run left awaiting a result or a report, its inbound
//! mark) comes in through [`BuildContext`]; what it learns goes out as
//! [`Event`]s, and where it must know that a received message is on disk
//! before it lets go of it, the answer comes back through [`StoredAck`].

pub mod at;
pub mod dinstar;
pub mod dwg;
pub mod http;
mod provider;
pub mod sim;
pub mod twilio;
pub mod whatsapp;
pub mod whatsapp_cloud;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::{GatewayConfig, GatewaySettings};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message handed to a transport for one port.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub message_id: i64,
    pub port: u32,
    /// E.164 destination.
    pub to: String,
    pub text: String,
    /// The reference recorded with the attempt before the call, so a
    /// transport that can be asked later (Dinstar's user_id) can be
    /// reconciled after a crash.
    pub reference: i64,
    /// A provider's template (WhatsApp): sent instead of `text`, which is
    /// then only what the conversation shows.
    pub template: Option<Arc<smsgate_proto::whatsapp_rules::MessageTemplate>>,
}

/// The transport took the message: it has a reference for it.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub gateway_ref: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// Try again later, on this or another channel.
    #[error("temporary failure: {reason}")]
    Temporary { reason: String },
    /// The port cannot send now (no SIM, not registered, Dinstar 550): the
    /// message goes to another channel and this one is taken out of use.
    #[error("port unusable: {reason}")]
    PortUnusable { reason: String },
    /// The gateway refused us (bad credentials, locked out). Every port of
    /// the gateway is unusable until the backoff ends.
    #[error("gateway refused authentication: {reason}")]
    Auth { reason: String },
    /// The message itself cannot be sent, anywhere.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// The request may have left: we cannot tell whether the message went.
    #[error("outcome unknown: {reason}")]
    Unknown { reason: String },
    /// The recipient told the provider to stop (Twilio 21610): the message
    /// fails, and the number goes into the consent ledger and the DNCR
    /// list as an opt-out, so no dialer tries it again.
    #[error("the recipient has opted out: {reason}")]
    OptedOut { reason: String },
    /// Not now, and it is nobody's fault: the gateway's messaging limit is
    /// used up (WhatsApp). The message goes back to its queue, without
    /// counting an attempt, until `retry_in` has passed.
    #[error("deferred: {reason}")]
    Deferred {
        reason: String,
        retry_in: std::time::Duration,
    },
}

impl SendError {
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Temporary { .. } => "temporary",
            Self::PortUnusable { .. } => "port_unusable",
            Self::Auth { .. } => "auth",
            Self::Permanent { .. } => "permanent",
            Self::Unknown { .. } => "unknown",
            Self::OptedOut { .. } => "opted_out",
            Self::Deferred { .. } => "deferred",
        }
    }
}

/// What a transport knows of a message in doubt: left in SENDING by a
/// crash, or sent without a clear answer (a timeout, a broken connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// It left: here is the gateway's reference.
    Sent { gateway_ref: String },
    /// The gateway does not know it. Final only once the gateway has had
    /// time to act on a request it may still hold
    /// ([`ReconcileTiming::grace`]); before that it means "not yet".
    NotSent,
    /// Nobody can tell, now or later.
    Unknown,
    /// The question itself failed (timeout, refused connection, HTTP 5xx,
    /// an unreadable reply): ask again later.
    Unanswered { reason: String },
}

/// A message in doubt, as its transport is asked about it: Dinstar finds
/// it by `reference` (its user_id); a provider that cannot be asked by our
/// reference (Twilio) looks for a message to `to` with this `text` created
/// since `started_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub message_id: i64,
    pub port: u32,
    /// Our reference of the attempt.
    pub reference: i64,
    /// E.164, as handed to the transport.
    pub to: String,
    pub text: String,
    /// Unix ms when the attempt began: the request cannot have reached the
    /// gateway before.
    pub started_ms: i64,
}

/// How a transport that can be asked about a message in doubt wants it
/// asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileTiming {
    /// From the moment a request may have reached the gateway, how long
    /// it may still act on it: until then "not found" is not an answer.
    /// Longer than the request timeout, since a gateway too slow to answer
    /// in time may still take the request after we stopped waiting.
    pub grace: std::time::Duration,
    /// How long questions that fail are asked again before the message is
    /// settled as unknown.
    pub patience: std::time::Duration,
}

/// Health of one port as the transport sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortHealth {
    pub usable: bool,
    /// Why the port cannot be used, in plain words; empty when usable.
    pub reason: String,
    pub sim: Option<bool>,
    pub imsi: Option<String>,
    pub number: Option<String>,
    pub registered: Option<bool>,
    pub signal: Option<i32>,
    /// The network operator, where the transport knows it (a modem's +COPS).
    pub operator: Option<String>,
}

/// What a transport reports on its own, outside a send call.
#[derive(Debug, Clone)]
pub enum Event {
    Delivered {
        gateway: String,
        gateway_ref: String,
        delivered: bool,
        detail: String,
    },
    PortHealth {
        gateway: String,
        port: u32,
        health: PortHealth,
    },
    /// The gateway's final word on a message it accepted (Dinstar's
    /// sms_result): `ok` false means it did not leave, and the engine
    /// retries it elsewhere or fails it.
    Result {
        gateway: String,
        gateway_ref: String,
        ok: bool,
        detail: String,
    },
    /// A received message. The engine stores it once per `source_key`.
    Inbound(Received),
    /// A received message whose sender must know it is on disk before it
    /// lets go of its own copy (a modem deletes it from the SIM only then;
    /// Dinstar moves its inbound mark past it only then): the engine stores
    /// it as [`Event::Inbound`] and then answers `ack`.
    InboundAcked { message: Received, ack: StoredAck },
    /// A gateway's report on a message that changes nothing: the SMSC is
    /// still trying (a pending or temporary status), or the message was
    /// already settled (a late report, a part reported after another part
    /// failed). The engine appends it, with its code in `detail`, to the
    /// history of the message with `gateway_ref`, whatever its state.
    Noted {
        gateway: String,
        gateway_ref: String,
        detail: String,
    },
    /// The gateway's inbound mark moved (Dinstar: the highest
    /// `incoming_sms_id` whose message, and every one before it, is
    /// stored). Kept across restarts and handed back in
    /// [`BuildContext::inbound_mark`]; it only ever rises.
    InboundMark { gateway: String, mark: i64 },
}

impl Event {
    /// Its kind, for the journal and the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Delivered { .. } => "delivery_report",
            Event::Noted { .. } => "report_noted",
            Event::PortHealth { .. } => "port_health",
            Event::Result { .. } => "send_result",
            Event::Inbound(_) | Event::InboundAcked { .. } => "received_message",
            Event::InboundMark { .. } => "inbound_mark",
        }
    }
}

/// A message a gateway received, as its transport hands it over.
#[derive(Debug, Clone)]
pub struct Received {
    pub gateway: String,
    pub port: Option<u32>,
    /// The gateway's own identity of the message; the same message seen by
    /// push and by poll has the same key and is stored once.
    pub source_key: String,
    /// The sender as the gateway wrote it.
    pub sender: String,
    /// The sender in E.164, when it is a phone number.
    pub number: Option<String>,
    /// Our number it was sent to (the port's SIM), when known.
    pub recipient: Option<String>,
    pub text: String,
    /// When the sender's side says it was sent, as the gateway wrote it.
    pub sent_at: Option<String>,
}

/// A message an earlier run sent through this gateway and left SENT: its
/// send result or delivery report may still come. Read from the store at
/// start, within the transport's [`Capabilities::resume_window`].
#[derive(Debug, Clone)]
pub struct Awaiting {
    pub message_id: i64,
    /// The port of the attempt that sent it.
    pub port: Option<u32>,
    /// Our reference of that attempt (Dinstar's user_id).
    pub reference: Option<i64>,
    pub gateway_ref: String,
    /// E.164, as handed to the transport.
    pub number: Option<String>,
    /// Unix milliseconds.
    pub sent_at: i64,
}

/// What a kind of gateway can do, known from its config before (and
/// without) building its transport: imports and the API check texts
/// against it, the engine decides claim-ahead and resumption with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Ports (channels) it has.
    pub ports: u32,
    /// The longest text it takes, in UTF-16 units, when it caps texts below
    /// what `max_parts` parts would hold (Dinstar: 670 whatever the
    /// encoding). None when only the parts limit applies.
    pub text_limit: Option<usize>,
    /// The most SMS parts one message may need.
    pub max_parts: usize,
    /// Whether a message in doubt (left in SENDING by a crash, or sent
    /// without a clear answer) can be asked about (Dinstar by user_id), and
    /// how; the others end UNKNOWN.
    pub reconcile: Option<ReconcileTiming>,
    /// Whether it receives messages.
    pub receives: bool,
    /// How far back, at start, it wants the messages it sent and still
    /// awaits ([`BuildContext::awaiting`]); None when it awaits nothing
    /// across a restart.
    pub resume_window: Option<std::time::Duration>,
    /// WhatsApp's rules apply (the 24-hour window, templates, the
    /// messaging limit): at start it wants its customers' last messages
    /// and its templates of the last 24 hours
    /// ([`BuildContext::last_inbound`], [`BuildContext::templates_sent`]).
    pub whatsapp: bool,
}

/// What a gateway's kind can do (see [`Capabilities`]).
pub fn capabilities(gw: &GatewayConfig) -> Capabilities {
    match &gw.settings {
        GatewaySettings::Dinstar(s) => dinstar::capabilities(gw.ports, s),
        GatewaySettings::DinstarDwg(_) => dwg::capabilities(gw.ports),
        GatewaySettings::At(_) => at::capabilities(),
        GatewaySettings::Sim(s) => sim::capabilities(gw.ports, s),
        GatewaySettings::Http(s) => http::capabilities(gw.ports, s),
        GatewaySettings::WhatsappCloud(_) => whatsapp_cloud::capabilities(gw.ports),
        GatewaySettings::Twilio(s) => twilio::capabilities(gw.ports, s),
    }
}

/// An HTTP request a gateway or provider made to our API (Dinstar's push),
/// as the API received it: the raw body, so a signature can be checked over
/// the exact bytes, and the peer, for address allow-lists.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: ::http::Method,
    /// The path and query as received (a Meta verification GET's
    /// `hub.challenge`; the query Twilio signed).
    pub uri: ::http::Uri,
    pub headers: ::http::HeaderMap,
    pub body: bytes::Bytes,
    pub peer: Option<std::net::SocketAddr>,
}

/// The transport's answer to a webhook: what the API sends back.
#[derive(Debug, Clone)]
pub struct WebhookReply {
    pub status: ::http::StatusCode,
    pub body: serde_json::Value,
    /// Sent instead of `body` when set: a content type and the text (Meta's
    /// challenge as text/plain, an empty TwiML response for Twilio).
    pub raw: Option<(&'static str, String)>,
    /// How many events the request carried (for the log).
    pub events: usize,
}

/// The engine's answer to [`Event::InboundAcked`]: true once the message is
/// stored (or was stored before). Dropped unanswered counts as not stored.
#[derive(Clone)]
pub struct StoredAck(Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>>);

impl StoredAck {
    pub fn new() -> (Self, tokio::sync::oneshot::Receiver<bool>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Self(Arc::new(std::sync::Mutex::new(Some(tx)))), rx)
    }

    /// The event that asks the engine to store `message`, and the answer
    /// to wait for: what every transport that must know sends.
    pub fn ask(message: Received) -> (Event, StoredAnswer) {
        let (ack, answer) = Self::new();
        (Event::InboundAcked { message, ack }, StoredAnswer(answer))
    }

    pub fn done(&self, stored: bool) {
        if let Some(tx) = self.0.lock().ok().and_then(|mut g| g.take()) {
            let _ = tx.send(stored);
        }
    }
}

/// The engine's answer to come for one [`StoredAck::ask`].
pub struct StoredAnswer(tokio::sync::oneshot::Receiver<bool>);

impl StoredAnswer {
    /// True when the message is on disk by `deadline`; a refusal, a
    /// dropped question or no answer in time all mean not stored.
    pub async fn stored_by(self, deadline: tokio::time::Instant) -> bool {
        matches!(
            tokio::time::timeout_at(deadline, self.0).await,
            Ok(Ok(true))
        )
    }
}

impl std::fmt::Debug for StoredAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredAck")
    }
}

pub trait Transport: Send + Sync {
    fn name(&self) -> &str;
    fn ports(&self) -> u32;
    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>>;
    /// Asks the gateway what became of a message in doubt.
    fn reconcile<'a>(&'a self, asked: &'a Asked) -> BoxFuture<'a, Reconciled>;
    fn health(&self, port: u32) -> PortHealth;
    /// Where `number`'s WhatsApp customer-service window stands on this
    /// gateway; None for gateways without one (SMS).
    fn window(&self, number: &str) -> Option<smsgate_proto::whatsapp_rules::WindowState> {
        let _ = number;
        None
    }
    /// The messaging limit's use: customers reached outside their window
    /// in the last 24 hours, and the limit; None without one.
    fn messaging_limit(&self) -> Option<(usize, Option<u32>)> {
        None
    }
    /// Whether the gateway answers healthily now; an open breaker calls
    /// this to decide to close. By default: some port reports usable.
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if (0..self.ports()).any(|p| self.health(p).usable) {
                Ok(())
            } else {
                Err("no port of the gateway is usable".into())
            }
        })
    }
    /// A request the gateway made to our API (Dinstar's push URL). Only
    /// transports whose gateway calls us take them; the others refuse.
    /// Async, so a transport can answer only once what the request
    /// carried is on disk (a provider that does not send again after a
    /// 200 must not get one for a message a crash would lose).
    fn accept_webhook<'a>(
        &'a self,
        request: WebhookRequest,
    ) -> BoxFuture<'a, Result<WebhookReply, TransportError>> {
        let _ = request;
        Box::pin(std::future::ready(Err(TransportError::NotTaken(format!(
            "gateway {} does not take pushes",
            self.name()
        )))))
    }
}

/// Events waiting for the engine, at most. The engine takes them as fast
/// as the store writes; a queue this full means the store has stalled for
/// long while gateways kept talking.
pub const EVENT_QUEUE: usize = 16_384;

/// Where transports tell the engine what happened: a bounded queue, so a
/// stalled engine cannot make it grow without limit.
///
/// Producers that can wait use [`Events::send_waiting`]: the gateway then
/// waits with them (a DWG session stops reading, a modem's received message
/// stays on its SIM). The others use [`Events::send`], which drops an event
/// when the queue is full, counts it in `smsgate_events_dropped_total` and
/// says so in the journal at most once a minute. What a drop costs is in
/// docs/failure-modes.md.
#[derive(Clone)]
pub struct Events {
    tx: tokio::sync::mpsc::Sender<Event>,
    dropped: prometheus_client::metrics::counter::Counter,
    told: Arc<std::sync::Mutex<DropsTold>>,
}

#[derive(Default)]
struct DropsTold {
    last: Option<std::time::Instant>,
    since: u64,
}

/// Room taken in the queue by [`Events::reserve`]; what is not used is
/// given back when it is dropped.
pub struct Reserved<'a>(Option<tokio::sync::mpsc::PermitIterator<'a, Event>>);

impl Reserved<'_> {
    /// Queues `ev` in the room taken; Err when it is all used.
    pub fn send(&mut self, ev: Event) -> Result<(), NotQueued> {
        match self.0.as_mut().and_then(Iterator::next) {
            Some(permit) => {
                permit.send(ev);
                Ok(())
            }
            None => Err(NotQueued),
        }
    }
}

/// The event was not queued: the queue is full, or the engine has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine's event queue is full or closed")]
pub struct NotQueued;

impl Events {
    /// A queue of [`EVENT_QUEUE`] events and its receiving end.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<Event>) {
        Self::counted(prometheus_client::metrics::counter::Counter::default())
    }

    /// The same, counting drops in `dropped` (the daemon's metric).
    pub fn counted(
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> (Self, tokio::sync::mpsc::Receiver<Event>) {
        let (tx, rx) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        let told = Arc::default();
        (Self { tx, dropped, told }, rx)
    }

    /// Queues `ev` without waiting; a full queue drops it (counted, told).
    pub fn send(&self, ev: Event) -> Result<(), NotQueued> {
        match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(tokio::sync::mpsc::error::TrySendError::Full(ev)) => {
                self.dropped_one(&ev);
                Err(NotQueued)
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => Err(NotQueued),
        }
    }

    /// Room for `n` events, taken now or not at all (None: the queue has
    /// less room): what goes through it is never dropped. A check of
    /// [`Events::room`] followed by sends is not that: another producer
    /// can take the room in between.
    pub fn reserve(&self, n: usize) -> Option<Reserved<'_>> {
        if n == 0 {
            return Some(Reserved(None));
        }
        self.tx.try_reserve_many(n).ok().map(|p| Reserved(Some(p)))
    }

    /// Queues `ev`, waiting for room while the queue is full.
    pub async fn send_waiting(&self, ev: Event) -> Result<(), NotQueued> {
        self.tx.send(ev).await.map_err(|_| NotQueued)
    }

    /// Events that can be queued now without a drop.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    fn dropped_one(&self, ev: &Event) {
        self.dropped.inc();
        let Ok(mut t) = self.told.lock() else {
            return;
        };
        t.since += 1;
        let due = t
            .last
            .is_none_or(|l| l.elapsed() >= std::time::Duration::from_secs(60));
        if due {
            tracing::error!(
                dropped = t.since,
                kind = ev.kind(),
                queue = EVENT_QUEUE,
                "the engine's event queue is full (the store is stalled?): events are dropped; see smsgate_events_dropped_total"
            );
            t.last = Some(std::time::Instant::now());
            t.since = 0;
        }
    }
}

/// What the transport layer refuses, outside a send (a failed send is a
/// [`SendError`], the outcome the channel acts on).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The gateway's transport cannot be set up from its config.
    #[error("gateway {gateway:?}: {reason}")]
    Setup { gateway: String, reason: String },
    /// No transport runs for this gateway.
    #[error("no running gateway {0:?} (not configured, disabled, or failed to start)")]
    NotRunning(String),
    /// A webhook that is not what this gateway sends (bad JSON, unknown
    /// shape): the caller's fault.
    #[error("{0}")]
    NotUnderstood(String),
    /// This gateway takes no webhooks.
    #[error("{0}")]
    NotTaken(String),
    /// Not taken now (the engine's event queue is full); the gateway should
    /// send it again later, and the pollers fetch what it holds meanwhile.
    #[error("{0}")]
    Busy(String),
}

/// What [`build`] gives a transport besides its config.
#[derive(Clone)]
pub struct BuildContext {
    pub events: Events,
    /// Cancelled when the gateway stops (removed or changed on reload, or
    /// the daemon stopping): a transport's background tasks end with it.
    pub stop: CancellationToken,
    /// Messages an earlier run sent through this gateway and left SENT
    /// within its [`Capabilities::resume_window`], oldest first: their
    /// results and delivery reports are still awaited.
    pub awaiting: Vec<Awaiting>,
    /// The inbound mark this gateway last reported ([`Event::InboundMark`]).
    pub inbound_mark: Option<i64>,
    /// `[daemon] default_country`, for numbers written without a country.
    pub default_country: String,
    /// With [`Capabilities::whatsapp`]: each customer's last message to
    /// this gateway in the last 24 hours (E.164, unix ms).
    pub last_inbound: Vec<(String, i64)>,
    /// With [`Capabilities::whatsapp`]: the templates it sent in the last
    /// 24 hours (E.164, unix ms), what its messaging limit has used.
    pub templates_sent: Vec<(String, i64)>,
}

/// Builds the transport a gateway's config describes.
pub fn build(gw: &GatewayConfig, ctx: BuildContext) -> Result<Arc<dyn Transport>, TransportError> {
    match &gw.settings {
        GatewaySettings::DinstarDwg(s) => Ok(Arc::new(dwg::DwgTransport::start(
            &gw.name,
            gw.ports,
            s,
            dwg::DwgOptions::default(),
            ctx.events,
            ctx.stop.clone(),
        )?)),
        GatewaySettings::At(s) => Ok(Arc::new(at::AtTransport::start_resuming(
            &gw.name,
            s.clone(),
            ctx.events,
            ctx.stop.clone(),
            ctx.awaiting,
        ))),
        GatewaySettings::Sim(s) => Ok(Arc::new(sim::SimTransport::start(
            &gw.name,
            gw.ports,
            s.clone(),
            ctx.events,
            ctx.stop.clone(),
        ))),
        GatewaySettings::Http(s) => {
            http::HttpTransport::start(&gw.name, gw.ports, s, ctx).map(|t| t as Arc<dyn Transport>)
        }
        GatewaySettings::WhatsappCloud(s) => {
            whatsapp_cloud::WhatsappCloudTransport::start(&gw.name, gw.ports, s, ctx)
                .map(|t| t as Arc<dyn Transport>)
        }
        GatewaySettings::Twilio(s) => twilio::TwilioTransport::start(&gw.name, gw.ports, s, ctx)
            .map(|t| t as Arc<dyn Transport>),
        GatewaySettings::Dinstar(s) => dinstar::DinstarTransport::start(&gw.name, gw.ports, s, ctx)
            .map(|t| Arc::new(t) as Arc<dyn Transport>)
            .map_err(|e| TransportError::Setup {
                gateway: gw.name.clone(),
                reason: e.to_string(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(port: u32) -> Event {
        Event::PortHealth {
            gateway: "gw1".into(),
            port,
            health: PortHealth::default(),
        }
    }

    /// The queue holds EVENT_QUEUE events and no more: beyond, `send` drops
    /// and counts, `send_waiting` waits for the engine to take one.
    #[tokio::test]
    async fn the_event_queue_is_bounded_and_counts_what_it_drops() {
        let (events, mut rx) = Events::channel();
        for p in 0..EVENT_QUEUE as u32 {
            events.send(health(p)).unwrap();
        }
        assert_eq!(events.room(), 0);
        assert_eq!(events.send(health(0)), Err(NotQueued));
        assert_eq!(events.send(health(1)), Err(NotQueued));
        assert_eq!(events.dropped.get(), 2);
        let waiting = {
            let events = events.clone();
            tokio::spawn(async move { events.send_waiting(health(7)).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no room yet");
        rx.recv().await.unwrap();
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(events.dropped.get(), 2);
        drop(rx);
        assert_eq!(events.send(health(0)), Err(NotQueued));
    }

    /// Room reserved is the reserver's: another producer finds the queue
    /// full, and what goes through the reservation is never dropped.
    #[tokio::test]
    async fn reserved_room_is_not_taken_by_others() {
        let (events, mut rx) = Events::channel();
        for p in 0..EVENT_QUEUE as u32 - 2 {
            events.send(health(p)).unwrap();
        }
        assert!(events.reserve(3).is_none(), "only 2 places left");
        let mut room = events.reserve(2).unwrap();
        assert_eq!(events.room(), 0);
        assert_eq!(
            events.send(health(9)),
            Err(NotQueued),
            "taken by the reservation"
        );
        assert_eq!(room.send(health(1000)), Ok(()));
        assert_eq!(room.send(health(1001)), Ok(()));
        assert_eq!(room.send(health(1002)), Err(NotQueued), "all used");
        assert_eq!(events.dropped.get(), 1);
        assert!(events.reserve(0).is_some());
        drop(room);
        let mut last = None;
        while let Ok(Event::PortHealth { port, .. }) = rx.try_recv() {
            last = Some(port);
        }
        assert_eq!(last, Some(1001));
    }
}
