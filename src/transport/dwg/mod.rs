//! `dinstar-dwg`: Dinstar's older binary TCP protocol, the "DWG SMS API"
//! (the seed's "Dinstar" provider).
//!
//! Roles are the other way round from the HTTP API: smsgate listens, the
//! gateway connects, authenticates with a user and password, then reports
//! port status and signal and sends keep-alives. Everything the gateway
//! sends is acknowledged; everything smsgate sends is answered.
//!
//! - Before anything is read, a connection must come from an address in
//!   `allow` (when set) and not be locked out for guessing passwords;
//!   connections waiting to authenticate are bounded, the oldest dropped
//!   for a newcomer ([`guard`]).
//! - One live session at a time. The same gateway (its MAC) logging in
//!   again, after a reboot or a network cut, replaces the old session at
//!   once: waiting for the old socket to time out would leave every port
//!   down for nothing. Another MAC, even with the right password, is
//!   refused while the session lives: it would receive every outbound SMS.
//! - No session, or a session silent for longer than
//!   [`DwgOptions::silence`], makes every port unusable with the reason
//!   "DWG gateway not connected".
//! - `send` writes a send-SMS request whose header serial is the message's
//!   persistent reference, waits for the gateway's response, and maps its
//!   code to [`SendError`]. The later send result (type 3) and delivery
//!   receipt (type 0x11) become [`Event::Result`] and [`Event::Delivered`].
//! - A received SMS is handed to the engine as [`Event::Inbound`] and only
//!   then acknowledged, so a message the engine never got is sent again by
//!   the gateway rather than lost.
//! - The protocol has no query for past sends: `reconcile` answers
//!   [`Reconciled::Unknown`].
//!
//! Wire format: [`codec`]. Sources and open questions:
//! `shared/reference/dinstar-api.md` §4.2.
//!
//! This file holds the transport, its shared state and sending; the
//! connection's two phases are child modules, `impl Inner` blocks over
//! that state: `listener` (accept, authenticate, install the session) and
//! `session` (the frame loop and what each frame from the gateway does);
//! `guard` holds the admission rules as plain data.

pub mod codec;
mod guard;
mod listener;
mod session;

pub use guard::GuardOptions;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::{CancellationToken, DropGuard};

use self::codec::{
    Body, CRED_LEN, CodecError, DwgFramer, Frame, MsgId, ReceivedSms, SendCode, SendSms,
    choose_encoding,
};
use super::{
    Accepted, BoxFuture, Capabilities, Event, Events, Outbound, PortHealth, Reconciled, SendError,
    Transport, TransportError,
};
use crate::config::DwgSettings;

/// A TCP stream read and written frame by frame with [`DwgFramer`].
///
/// `next` is cancel-safe (bytes read stay in the buffer), so it can sit in
/// a `select!` next to timers and outgoing queues.
pub struct Conn {
    stream: TcpStream,
    codec: DwgFramer,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            codec: DwgFramer::default(),
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` when the peer closed the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>, CodecError> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.rbuf)? {
                return Ok(Some(f));
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(None);
            }
        }
    }

    pub async fn send(&mut self, frame: Frame) -> Result<(), CodecError> {
        self.wbuf.clear();
        self.codec.encode(frame, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Closes the writing half (the peer reads end of stream).
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// The reason every port gives while no gateway session is up.
pub const NOT_CONNECTED: &str = "DWG gateway not connected";

/// Messages remembered while waiting for their send result or receipt.
/// Beyond this the oldest are forgotten (their result is then logged and
/// dropped): memory stays bounded whatever the gateway does.
const MAX_TRACKED: usize = 4096;
/// Received-SMS keys remembered to drop a resent message before the store.
const MAX_SEEN: usize = 1024;

/// Timings; [`Default`] is what the daemon uses.
#[derive(Debug, Clone)]
pub struct DwgOptions {
    /// Send a keep-alive when nothing was sent for this long.
    pub keepalive: Duration,
    /// A session that received nothing for this long is dead.
    pub silence: Duration,
    /// Time from TCP accept to the authentication message.
    pub auth_timeout: Duration,
    /// Password-guessing lockout and the journal's summaries.
    pub guard: GuardOptions,
    /// Time from a send request to the gateway's response.
    pub send_timeout: Duration,
    /// Wait between two tries to bind the listening socket (the old
    /// transport of a reloaded gateway may still hold it for a moment).
    pub bind_retry: Duration,
}

impl Default for DwgOptions {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(30),
            // Three keep-alive periods: one lost packet does not take the
            // ports down.
            silence: Duration::from_secs(90),
            // The gateway authenticates as soon as it is connected; an
            // idle socket holds its place among the handshakes for less.
            auth_timeout: Duration::from_secs(5),
            guard: GuardOptions::default(),
            send_timeout: Duration::from_secs(30),
            bind_retry: Duration::from_secs(1),
        }
    }
}

/// A DWG gateway sends on its ports and receives; it cannot be asked after
/// a crash whether a message left, and keeps nothing across a restart.
pub fn capabilities(ports: u32) -> Capabilities {
    Capabilities {
        ports,
        text_limit: None,
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: None,
        receives: true,
        resume_window: None,
        whatsapp: false,
    }
}

/// The DWG transport of one gateway.
pub struct DwgTransport {
    inner: Arc<Inner>,
    bound: watch::Receiver<Option<SocketAddr>>,
    // Cancels the listener and the session when the transport is dropped.
    _guard: DropGuard,
}

struct Inner {
    name: String,
    ports: u32,
    listen: SocketAddr,
    user: [u8; CRED_LEN],
    password: [u8; CRED_LEN],
    options: DwgOptions,
    events: Events,
    stop: CancellationToken,
    state: Mutex<State>,
    next_session: AtomicU64,
    next_serial: AtomicU32,
    guard: Mutex<guard::Guard>,
}

struct Session {
    id: u64,
    tx: mpsc::Sender<Frame>,
    mac: [u8; 8],
    peer: SocketAddr,
    cancel: CancellationToken,
}

/// A message the gateway accepted, waiting for its result or receipt.
struct Tracked {
    serial: u32,
    port: u8,
    /// Digits only: the gateway may echo the number with or without `+`.
    digits: String,
}

#[derive(Default)]
struct State {
    session: Option<Session>,
    /// Per port, as the last reports said (meaningful while connected).
    health: Vec<PortHealth>,
    /// Send requests waiting for their response, by header serial.
    pending: HashMap<u32, Pending>,
    awaiting_result: VecDeque<Tracked>,
    awaiting_receipt: VecDeque<Tracked>,
    seen: VecDeque<String>,
    seen_set: HashSet<String>,
}

struct Pending {
    port: u8,
    digits: String,
    reply: oneshot::Sender<SendCode>,
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn push_bounded(q: &mut VecDeque<Tracked>, t: Tracked) {
    if q.len() >= MAX_TRACKED {
        q.pop_front();
    }
    q.push_back(t);
}

fn unusable(reason: &str) -> PortHealth {
    PortHealth {
        usable: false,
        reason: reason.to_string(),
        ..Default::default()
    }
}

impl DwgTransport {
    /// Starts listening on `settings.listen` (in the background: a busy
    /// address is retried until it frees or `stop` fires). Must be called
    /// inside a Tokio runtime.
    pub fn start(
        name: &str,
        ports: u32,
        settings: &DwgSettings,
        options: DwgOptions,
        events: Events,
        stop: CancellationToken,
    ) -> Result<Self, TransportError> {
        let setup = |reason: String| TransportError::Setup {
            gateway: name.to_string(),
            reason,
        };
        let user = codec::pad_cred(&settings.user).ok_or_else(|| {
            setup("the DWG user is at most 15 bytes (the protocol's field)".into())
        })?;
        let password = codec::pad_cred(settings.password.expose()).ok_or_else(|| {
            setup("the DWG password is at most 15 bytes (the protocol's field)".into())
        })?;
        if ports > 256 {
            return Err(setup(format!(
                "the DWG protocol numbers ports with one byte; {ports} ports cannot be addressed"
            )));
        }
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| setup("the DWG transport needs the async runtime".into()))?;
        let stop = stop.child_token();
        let inner = Arc::new(Inner {
            name: name.to_string(),
            ports,
            listen: settings.listen,
            user,
            password,
            events,
            stop: stop.clone(),
            state: Mutex::new(State {
                health: vec![unusable(NOT_CONNECTED); ports as usize],
                ..Default::default()
            }),
            next_session: AtomicU64::new(1),
            next_serial: AtomicU32::new(1),
            guard: Mutex::new(guard::Guard::new(
                settings.allow.clone(),
                options.guard.clone(),
                std::time::Instant::now(),
            )),
            options,
        });
        let (bound_tx, bound) = watch::channel(None);
        handle.spawn(inner.clone().listen_loop(bound_tx));
        Ok(Self {
            inner,
            bound,
            _guard: stop.drop_guard(),
        })
    }

    /// The address actually listened on (useful with port 0), once bound;
    /// None if the transport stopped first.
    pub async fn local_addr(&self) -> Option<SocketAddr> {
        let mut rx = self.bound.clone();
        rx.wait_for(Option::is_some).await.ok().and_then(|a| *a)
    }

    /// Whether a gateway is connected and authenticated.
    pub fn connected(&self) -> bool {
        self.inner.lock().session.is_some()
    }

    /// The MAC of the connected gateway, as `aa:bb:cc:dd:ee:ff`.
    pub fn gateway_mac(&self) -> Option<String> {
        self.inner.lock().session.as_ref().map(|s| {
            MsgId {
                mac: s.mac,
                ..Default::default()
            }
            .mac_string()
        })
    }

    async fn send_inner(&self, msg: &Outbound) -> Result<Accepted, SendError> {
        let inner = &self.inner;
        let port = match u8::try_from(msg.port) {
            Ok(p) if msg.port < inner.ports => p,
            _ => {
                return Err(SendError::PortUnusable {
                    reason: format!("port {} does not exist on this gateway", msg.port),
                });
            }
        };
        // The reference is persistent and below 2^31: as the header serial
        // it ties the response, the result and the journal to the message.
        let serial = u32::try_from(msg.reference)
            .ok()
            .filter(|s| *s > 0)
            .unwrap_or_else(|| inner.next_serial.fetch_add(1, Ordering::Relaxed));
        let mut frame = Frame::new(
            MsgId {
                mac: [0; 8],
                time: unix_now(),
                serial,
            },
            Body::SendSms(SendSms {
                port,
                encoding: choose_encoding(&msg.text),
                msg_type: 0,
                numbers: vec![msg.to.clone()],
                text: msg.text.clone(),
            }),
        );
        // Check the frame can be written before anything is queued: a text
        // or number that does not fit fails the same way on every channel.
        if let Err(e) = codec::encode_frame(&frame) {
            return Err(SendError::Permanent {
                reason: format!("cannot be sent over the DWG protocol: {e}"),
            });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let tx = {
            let mut st = inner.lock();
            let Some(session) = st.session.as_ref() else {
                return Err(SendError::PortUnusable {
                    reason: NOT_CONNECTED.into(),
                });
            };
            // Requests carry the gateway's own MAC, as replies do.
            frame.id.mac = session.mac;
            let tx = session.tx.clone();
            if let Some(h) = st.health.get(port as usize).filter(|h| !h.usable) {
                return Err(SendError::PortUnusable {
                    reason: h.reason.clone(),
                });
            }
            if st.pending.contains_key(&serial) {
                return Err(SendError::Temporary {
                    reason: format!("reference {serial} is already waiting for the gateway"),
                });
            }
            st.pending.insert(
                serial,
                Pending {
                    port,
                    digits: digits(&msg.to),
                    reply: reply_tx,
                },
            );
            tx
        };
        if tx.send(frame).await.is_err() {
            inner.lock().pending.remove(&serial);
            return Err(SendError::PortUnusable {
                reason: NOT_CONNECTED.into(),
            });
        }
        tracing::debug!(gateway = %inner.name, port = port, reference = serial, "send request written");
        let code = match tokio::time::timeout(inner.options.send_timeout, reply_rx).await {
            Ok(Ok(code)) => code,
            Ok(Err(_)) => {
                return Err(SendError::Unknown {
                    reason:
                        "the DWG gateway's connection ended before it answered the send request"
                            .into(),
                });
            }
            Err(_) => {
                inner.lock().pending.remove(&serial);
                return Err(SendError::Unknown {
                    reason: format!(
                        "the DWG gateway did not answer the send request within {} s",
                        inner.options.send_timeout.as_secs()
                    ),
                });
            }
        };
        match code {
            SendCode::Succeed | SendCode::PartialSucceed => Ok(Accepted {
                gateway_ref: serial.to_string(),
            }),
            SendCode::PortUnavailable => Err(SendError::PortUnusable {
                reason: format!("the gateway says: {}", code.describe()),
            }),
            SendCode::BadRequest => Err(SendError::Permanent {
                reason: format!("the gateway says: {}", code.describe()),
            }),
            SendCode::Fail | SendCode::Timeout | SendCode::Other(_) => Err(SendError::Temporary {
                reason: format!("the gateway says: {}", code.describe()),
            }),
        }
    }
}

fn mac_of(inner: &Inner) -> Option<[u8; 8]> {
    inner.lock().session.as_ref().map(|s| s.mac)
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

impl Transport for DwgTransport {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn ports(&self) -> u32 {
        self.inner.ports
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(self.send_inner(msg))
    }

    fn reconcile<'a>(&'a self, _asked: &'a super::Asked) -> BoxFuture<'a, Reconciled> {
        // The DWG protocol has no query for past sends (types 0x01–0x12 and
        // the SIM-management 0x01xx set): nobody can tell.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        let st = self.inner.lock();
        if st.session.is_none() {
            return unusable(NOT_CONNECTED);
        }
        st.health
            .get(port as usize)
            .cloned()
            .unwrap_or_else(|| unusable("no such port"))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind;
        // carry on with it rather than take the whole gateway down.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn guard(&self) -> MutexGuard<'_, guard::Guard> {
        self.guard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, ev: Event) -> bool {
        self.events.send(ev).is_ok()
    }

    fn emit_health(&self, port: u32, health: PortHealth) {
        self.emit(Event::PortHealth {
            gateway: self.name.clone(),
            port,
            health,
        });
    }
}

/// The identity of a received SMS. The protocol gives none, and a resent
/// message need not keep its header ID, so it is a hash of what the
/// message is: port, sender, the SMSC's timestamp, encoding and content
/// bytes. SHA-256 (not std's hasher) so the key is stable across builds.
pub fn source_key(m: &ReceivedSms) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&[m.port, m.encoding.byte(), m.timezone as u8]);
    for field in [m.number.as_bytes(), m.timestamp.as_bytes()] {
        ctx.update(&(field.len() as u32).to_be_bytes());
        ctx.update(field);
    }
    ctx.update(&m.content);
    let d = ctx.finish();
    let hex: String = d.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("dwg:{}:{hex}", m.port)
}

/// "yyyyMMddHHmmss" as "YYYY-MM-DD HH:MM:SS" (the HTTP API's form) with the
/// zone byte when it is not 0; anything else is kept as received.
fn format_timestamp(ts: &str, tz: i8) -> String {
    let b = ts.as_bytes();
    if b.len() == 14 && b.iter().all(u8::is_ascii_digit) {
        let s = format!(
            "{}-{}-{} {}:{}:{}",
            &ts[0..4],
            &ts[4..6],
            &ts[6..8],
            &ts[8..10],
            &ts[10..12],
            &ts[12..14]
        );
        // The unit of the zone byte is not documented: keep it raw.
        if tz == 0 { s } else { format!("{s} tz={tz}") }
    } else {
        ts.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use codec::TextEncoding;

    fn sms(text: &str) -> ReceivedSms {
        ReceivedSms {
            number: "099123456".into(),
            msg_type: 0,
            port: 1,
            timestamp: "20240501100003".into(),
            timezone: 0,
            encoding: TextEncoding::Ucs2,
            content: codec::encode_text(text, TextEncoding::Ucs2),
        }
    }

    #[test]
    fn source_key_is_stable_and_tells_messages_apart() {
        let a = sms("hola");
        assert_eq!(source_key(&a), source_key(&a.clone()));
        assert_ne!(source_key(&a), source_key(&sms("hola!")));
        let mut b = a.clone();
        b.port = 2;
        assert_ne!(source_key(&a), source_key(&b));
        // Pinned: a change of the key would store old messages twice.
        assert_eq!(source_key(&a), "dwg:1:544055d75855dbf3e387c79d45c5a0d6");
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp("20240501100003", 0), "2024-05-01 10:00:03");
        assert_eq!(
            format_timestamp("20240501100003", -12),
            "2024-05-01 10:00:03 tz=-12"
        );
        assert_eq!(format_timestamp("junk", 0), "junk");
    }
}
