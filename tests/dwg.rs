//! The `dinstar-dwg` transport against the simulated DWG gateway, over real
//! 127.0.0.1 sockets, and the DWG codec against random bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use smsgate::config::AllowList;
use smsgate::config::{DwgSettings, Secret};
use smsgate::transport::dwg::{DwgOptions, DwgTransport, GuardOptions, NOT_CONNECTED};
use smsgate::transport::{Event, Outbound, SendError, Transport};
use smsgate_proto::dwg::{
    self as codec, Body, DwgCodec, Frame, MsgId, PortState, SendCode, SendSms, TextEncoding,
};
use smsgate_sim::dwg::{DwgSim, DwgSimBuilder, DwgSimHandle, SimPort};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio_util::bytes::BytesMut;
use tokio_util::sync::CancellationToken;

const USER: &str = "smsgate";
const PASSWORD: &str = "s3cret-pw";
const SPANISH: &str = "¿Mañana a las 10? Sí, gracias 👍🏽 ñandú, acción, pingüino 🎉";

fn options() -> DwgOptions {
    DwgOptions {
        keepalive: Duration::from_secs(60),
        silence: Duration::from_secs(30),
        auth_timeout: Duration::from_secs(2),
        guard: GuardOptions::default(),
        send_timeout: Duration::from_secs(3),
        bind_retry: Duration::from_millis(50),
    }
}

struct Rig {
    transport: DwgTransport,
    events: UnboundedReceiver<Event>,
    addr: SocketAddr,
}

/// Stands in for the engine: a received message the transport must see
/// stored is answered "stored" once the test's receiver has it (and "not
/// stored" when the test dropped its receiver), and reaches the test as a
/// plain `Event::Inbound`.
fn engine_stand_in() -> (smsgate::transport::Events, UnboundedReceiver<Event>) {
    let (tx, mut raw) = smsgate::transport::Events::channel();
    let (out, events) = unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = raw.recv().await {
            match e {
                Event::InboundAcked { message, ack } => {
                    ack.done(out.send(Event::Inbound(message)).is_ok());
                }
                other => {
                    let _ = out.send(other);
                }
            }
        }
    });
    (tx, events)
}

async fn rig_with(options: DwgOptions) -> Rig {
    rig_allowing(options, AllowList::default()).await
}

async fn rig_allowing(options: DwgOptions, allow: AllowList) -> Rig {
    let (tx, events) = engine_stand_in();
    let settings = DwgSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        user: USER.into(),
        password: Secret::new(PASSWORD),
        allow,
    };
    let transport = DwgTransport::start("gw1", 4, &settings, options, tx, CancellationToken::new())
        .expect("transport");
    let addr = tokio::time::timeout(Duration::from_secs(5), transport.local_addr())
        .await
        .expect("bound in time")
        .expect("bound");
    Rig {
        transport,
        events,
        addr,
    }
}

async fn rig() -> Rig {
    rig_with(options()).await
}

fn sim_for(addr: SocketAddr) -> DwgSimBuilder {
    DwgSim::builder()
        .connect(addr)
        .credentials(USER, PASSWORD)
        .ports(4)
        .keepalive(Duration::from_millis(200))
        .latency(Duration::from_millis(10))
        .result_delay(Some(Duration::from_millis(50)))
        .receipt_delay(Some(Duration::from_millis(50)))
        .reconnect(Some(Duration::from_millis(100)))
}

/// A rig with a simulated gateway connected and its first reports in.
async fn connected() -> (Rig, DwgSimHandle) {
    let rig = rig().await;
    let sim = sim_for(rig.addr).start();
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "sim connects"
    );
    assert!(
        eventually(|| rig.transport.connected() && rig.transport.health(0).signal == Some(25))
            .await,
        "transport sees the session and the first reports"
    );
    (rig, sim)
}

/// Polls until `f` is true or 5 s pass.
async fn eventually<F: FnMut() -> bool>(mut f: F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// The next event that `pick` accepts, within `wait`.
async fn next_event<T>(
    rx: &mut UnboundedReceiver<Event>,
    wait: Duration,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                if let Some(t) = pick(ev) {
                    return Some(t);
                }
            }
            _ => return None,
        }
    }
}

fn outbound(port: u32, to: &str, text: &str, reference: i64) -> Outbound {
    Outbound {
        message_id: reference,
        port,
        to: to.into(),
        text: text.into(),
        reference,
        template: None,
    }
}

#[tokio::test]
async fn gateway_authenticates_and_its_reports_are_acked() {
    let (rig, sim) = connected().await;
    assert_eq!(sim.auth_results(), vec![true]);
    for port in 0..4 {
        let h = rig.transport.health(port);
        assert!(h.usable, "port {port}: {h:?}");
        assert_eq!(h.sim, Some(true));
        assert_eq!(h.registered, Some(true));
    }
    assert_eq!(
        rig.transport.gateway_mac().as_deref(),
        Some("00:1f:d6:c7:06:a1")
    );
    assert!(
        eventually(|| {
            let acks = sim.acks();
            acks.iter()
                .any(|a| a.kind == codec::kind::PORT_STATUS_ACK && a.ack.ok())
                && acks
                    .iter()
                    .any(|a| a.kind == codec::kind::CSQ_RSSI_ACK && a.ack.ok())
        })
        .await,
        "status and signal reports acknowledged: {:?}",
        sim.acks()
    );
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let rig = rig().await;
    let sim = sim_for(rig.addr)
        .credentials(USER, "wrong")
        .reconnect(None)
        .start();
    assert!(
        eventually(|| sim.auth_results() == vec![false]).await,
        "refused: {:?}",
        sim.auth_results()
    );
    assert!(!sim.connected());
    assert!(!rig.transport.connected());
    let h = rig.transport.health(0);
    assert!(!h.usable);
    assert_eq!(h.reason, NOT_CONNECTED);
    let err = rig
        .transport
        .send(&outbound(0, "+59899123456", "hola", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::PortUnusable { ref reason } if reason == NOT_CONNECTED),
        "{err:?}"
    );

    // A wrong user is refused the same way.
    let sim2 = sim_for(rig.addr)
        .credentials("intruder", PASSWORD)
        .reconnect(None)
        .start();
    assert!(eventually(|| sim2.auth_results() == vec![false]).await);
    assert!(!rig.transport.connected());
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed() {
    let rig = rig().await;
    let mut s = tokio::net::TcpStream::connect(rig.addr).await.unwrap();
    // A keep-alive instead of the authentication message.
    let bytes = codec::encode_frame(&Frame::new(MsgId::default(), Body::KeepAlive)).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &bytes)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut s, &mut buf),
    )
    .await
    .expect("closed in time")
    .unwrap_or(0);
    assert_eq!(n, 0, "no answer, just the close");
    assert!(!rig.transport.connected());
}

#[tokio::test]
async fn keep_alives_are_answered() {
    // smsgate's own keep-alive period is 60 s here: whatever the gateway
    // receives within a second is an answer to its own.
    let (_rig, sim) = connected().await;
    assert!(
        eventually(|| sim.keepalives_received() >= 2).await,
        "answers received: {}",
        sim.keepalives_received()
    );
}

#[tokio::test]
async fn smsgate_sends_keep_alives_when_idle() {
    let mut o = options();
    o.keepalive = Duration::from_millis(150);
    let rig = rig_with(o).await;
    // The gateway stays silent, so only smsgate's own keep-alives arrive.
    let sim = sim_for(rig.addr)
        .keepalive(Duration::from_secs(3600))
        .start();
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    assert!(eventually(|| sim.keepalives_received() >= 2).await);
}

#[tokio::test]
async fn a_silent_gateway_makes_every_port_unusable() {
    let mut o = options();
    o.silence = Duration::from_millis(600);
    let mut rig = rig_with(o).await;
    let sim = sim_for(rig.addr).reconnect(None).start();
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    assert!(eventually(|| rig.transport.connected()).await);
    // Alive for longer than the silence timeout while keep-alives flow.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(rig.transport.connected(), "keep-alives keep the session");
    sim.set_silent(true);
    let down = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::PortHealth {
            port: 3, health, ..
        } if !health.usable => Some(health),
        _ => None,
    })
    .await
    .expect("port 3 reported down");
    assert_eq!(down.reason, NOT_CONNECTED);
    for port in 0..4 {
        assert_eq!(rig.transport.health(port).reason, NOT_CONNECTED);
    }
    assert!(sim.wait_disconnected(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_send_goes_out_on_its_port_and_is_reported() {
    let (mut rig, sim) = connected().await;
    let t0 = Instant::now();
    let acc = rig
        .transport
        .send(&outbound(2, "+59899123456", "Su turno es a las 10", 4242))
        .await
        .expect("accepted");
    assert_eq!(acc.gateway_ref, "4242");
    let sends = sim.sends();
    assert_eq!(sends.len(), 1);
    let s = &sends[0];
    assert_eq!(s.port, 2);
    assert_eq!(s.numbers, vec!["+59899123456".to_string()]);
    assert_eq!(s.text, "Su turno es a las 10");
    assert_eq!(s.encoding, TextEncoding::Ascii);
    assert_eq!(s.serial, 4242);
    assert!(s.at >= t0);

    let (ok, detail) = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::Result {
            gateway_ref,
            ok,
            detail,
            ..
        } if gateway_ref == "4242" => Some((ok, detail)),
        _ => None,
    })
    .await
    .expect("send result");
    assert!(ok, "{detail}");
    let delivered = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::Delivered {
            gateway_ref,
            delivered,
            ..
        } if gateway_ref == "4242" => Some(delivered),
        _ => None,
    })
    .await
    .expect("delivery receipt");
    assert!(delivered);
    assert!(
        eventually(|| {
            let acks = sim.acks();
            acks.iter().any(|a| {
                a.kind == codec::kind::SEND_SMS_RESULT_ACK && a.serial == 4242 && a.ack.ok()
            }) && acks
                .iter()
                .any(|a| a.kind == codec::kind::SMS_RECEIPT_ACK && a.ack.ok())
        })
        .await,
        "result and receipt acknowledged: {:?}",
        sim.acks()
    );
}

#[tokio::test]
async fn results_are_matched_by_port_and_number_without_an_echoed_id() {
    let rig = rig().await;
    let mut rig = rig;
    let sim = sim_for(rig.addr).echo_result_id(false).start();
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    assert!(eventually(|| rig.transport.health(1).usable).await);
    sim.script_result(SendCode::Fail);
    rig.transport
        .send(&outbound(1, "+59899000111", "uno", 77))
        .await
        .expect("accepted");
    let (ok, detail) = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::Result {
            gateway_ref,
            ok,
            detail,
            ..
        } if gateway_ref == "77" => Some((ok, detail)),
        _ => None,
    })
    .await
    .expect("send result matched");
    assert!(!ok, "the network failed it: {detail}");
}

#[tokio::test]
async fn refusals_map_to_send_errors() {
    let (rig, sim) = connected().await;
    let t = &rig.transport;
    sim.script_send(SendCode::BadRequest);
    let e = t
        .send(&outbound(0, "+59899123456", "a", 10))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    sim.script_send(SendCode::Fail);
    let e = t
        .send(&outbound(0, "+59899123456", "b", 11))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Temporary { .. }), "{e:?}");
    sim.script_send(SendCode::PortUnavailable);
    let e = t
        .send(&outbound(0, "+59899123456", "c", 12))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::PortUnusable { .. }), "{e:?}");
    sim.script_send(SendCode::Other(255));
    let e = t
        .send(&outbound(0, "+59899123456", "d", 13))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Temporary { .. }), "{e:?}");
    assert_eq!(sim.sends().len(), 4, "each went out once");

    // A port that does not exist never reaches the gateway.
    let e = t
        .send(&outbound(9, "+59899123456", "e", 14))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::PortUnusable { .. }), "{e:?}");
    // Nor does a text the protocol cannot carry.
    let e = t
        .send(&outbound(0, "+59899123456", &"ñ".repeat(700), 15))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
    assert_eq!(sim.sends().len(), 4);
}

#[tokio::test]
async fn no_answer_in_time_is_unknown() {
    let mut o = options();
    o.send_timeout = Duration::from_millis(300);
    let rig = rig_with(o).await;
    let sim = sim_for(rig.addr).latency(Duration::from_secs(2)).start();
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    assert!(eventually(|| rig.transport.health(0).usable).await);
    let e = rig
        .transport
        .send(&outbound(0, "+59899123456", "hola", 20))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Unknown { .. }), "{e:?}");
    assert_eq!(sim.sends().len(), 1, "it did leave");
}

#[tokio::test]
async fn port_status_makes_ports_unusable_and_usable() {
    let (mut rig, sim) = connected().await;
    sim.set_port(
        1,
        SimPort {
            state: PortState::NoSim,
            rssi: 99,
        },
    )
    .await;
    let down = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::PortHealth {
            port: 1, health, ..
        } if !health.usable => Some(health),
        _ => None,
    })
    .await
    .expect("port 1 down");
    assert_eq!(down.sim, Some(false));
    assert_eq!(down.reason, "no SIM card");
    assert!(
        eventually(|| rig.transport.health(1).signal.is_none()).await,
        "99 = unknown signal"
    );
    let e = rig
        .transport
        .send(&outbound(1, "+59899123456", "x", 30))
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::PortUnusable { .. }), "{e:?}");
    assert!(sim.sends().is_empty(), "refused before the wire");
    assert!(rig.transport.health(0).usable, "other ports unaffected");

    sim.set_port(
        1,
        SimPort {
            state: PortState::NotRegistered,
            rssi: 3,
        },
    )
    .await;
    assert!(eventually(|| rig.transport.health(1).reason == "not registered on the network").await);
    sim.set_port(
        1,
        SimPort {
            state: PortState::Works,
            rssi: 18,
        },
    )
    .await;
    let up = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::PortHealth {
            port: 1, health, ..
        } if health.usable => Some(health),
        _ => None,
    })
    .await
    .expect("port 1 up");
    assert!(up.reason.is_empty());
    assert!(eventually(|| rig.transport.health(1).signal == Some(18)).await);
    rig.transport
        .send(&outbound(1, "+59899123456", "y", 31))
        .await
        .expect("sent once usable");
}

#[tokio::test]
async fn received_sms_arrives_once_and_intact() {
    let (mut rig, sim) = connected().await;
    let sms = DwgSimHandle::incoming_sms(3, "099123456", SPANISH);
    assert_eq!(sms.encoding, TextEncoding::Ucs2);
    let ack = sim.inject_sms(sms.clone()).await.expect("acked");
    assert!(ack.ok());
    let m = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::Inbound(m) => Some(m),
        _ => None,
    })
    .await
    .expect("inbound event");
    assert_eq!(m.gateway, "gw1");
    assert_eq!(m.port, Some(3));
    assert_eq!(m.sender, "099123456");
    assert_eq!(m.text, SPANISH);
    assert!(m.source_key.starts_with("dwg:3:"));
    assert!(m.sent_at.is_some());

    // The gateway resends it (our ack got lost): acked again, not repeated.
    let ack = sim.inject_sms(sms).await.expect("acked again");
    assert!(ack.ok());
    // A different message right after still comes through, and is the next
    // event: the resend produced none.
    sim.inject_incoming(3, "099123456", "otro").await.unwrap();
    let next = next_event(&mut rig.events, Duration::from_secs(5), |e| match e {
        Event::Inbound(m) => Some(m),
        _ => None,
    })
    .await
    .expect("second message");
    assert_eq!(next.text, "otro");
    assert_ne!(next.source_key, m.source_key);
}

#[tokio::test]
async fn received_sms_is_not_acked_when_nobody_takes_it() {
    let (rig, sim) = connected().await;
    let Rig {
        transport, events, ..
    } = rig;
    drop(events);
    let ack = sim
        .inject_incoming(0, "099123456", "hola")
        .await
        .expect("answered");
    assert!(!ack.ok(), "a failure ack keeps it on the gateway");
    drop(transport);
}

#[tokio::test]
async fn outbound_emoji_and_accents_survive() {
    let (rig, sim) = connected().await;
    rig.transport
        .send(&outbound(0, "+59899123456", SPANISH, 40))
        .await
        .expect("sent");
    let s = &sim.sends()[0];
    assert_eq!(s.encoding, TextEncoding::Ucs2);
    assert_eq!(s.text, SPANISH);
}

#[tokio::test]
async fn the_gateway_reconnects_after_a_drop() {
    let (rig, sim) = connected().await;
    sim.disconnect().await;
    assert!(
        eventually(|| !rig.transport.connected()).await,
        "the drop is noticed"
    );
    assert_eq!(rig.transport.health(0).reason, NOT_CONNECTED);
    assert!(
        eventually(|| rig.transport.connected() && rig.transport.health(0).usable).await,
        "back after the reconnect"
    );
    assert_eq!(sim.connections(), 2);
    assert_eq!(sim.auth_results(), vec![true, true]);
    rig.transport
        .send(&outbound(0, "+59899123456", "de nuevo", 50))
        .await
        .expect("sends after reconnecting");
}

/// The MAC the simulated gateway uses by default, as the header carries it.
const SIM_MAC: [u8; 8] = [0x00, 0x1f, 0xd6, 0xc7, 0x06, 0xa1, 0, 0];

/// A hand-made client: connects, sends an authentication with these
/// credentials and MAC, and returns the open stream with the answer:
/// Some(true/false) for an AuthResponse, None when the connection was closed
/// without one.
async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
    mac: [u8; 8],
) -> (tokio::net::TcpStream, Option<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = codec::AuthRequest::new(user, password).unwrap();
    let frame = Frame::new(
        MsgId {
            mac,
            time: 0,
            serial: 1,
        },
        Body::Auth(auth),
    );
    // Refused connections are closed before anything is read: the write
    // itself may then fail, which is the same answer.
    if s.write_all(&codec::encode_frame(&frame).unwrap())
        .await
        .is_err()
    {
        return (s, None);
    }
    let mut buf = BytesMut::new();
    let mut codec = DwgCodec;
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(Some(f)) = codec.decode(&mut buf) {
                return match f.body {
                    Body::AuthResponse(a) => Some(a.ok()),
                    _ => None,
                };
            }
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("answered or closed within 5 s");
    (s, answer)
}

/// Whether the peer closed `s` within `wait` (end of stream or a reset).
async fn closed_within(s: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, tokio::io::AsyncReadExt::read(s, &mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A second client that knows the credentials but is not the connected
/// gateway (another MAC) does not get the session: the first gateway keeps
/// its messages. Before, any successful login replaced the live session,
/// so an intruder received every outbound SMS.
#[tokio::test]
async fn a_second_gateway_cannot_take_over_the_live_session() {
    let rig = rig().await;
    let first = sim_for(rig.addr).reconnect(None).start();
    assert!(first.wait_connected(Duration::from_secs(5)).await);
    assert!(eventually(|| rig.transport.health(0).usable).await);
    let second = sim_for(rig.addr)
        .mac([2, 0, 0, 0, 0, 2])
        .reconnect(None)
        .start();
    assert!(
        eventually(|| !second.auth_results().is_empty()).await,
        "the second login is answered"
    );
    assert_eq!(second.auth_results(), vec![false], "refused");
    assert!(!second.connected());
    assert!(first.connected(), "the first session stays");
    assert_eq!(
        rig.transport.gateway_mac().as_deref(),
        Some("00:1f:d6:c7:06:a1")
    );
    rig.transport
        .send(&outbound(0, "+59899123456", "hola", 60))
        .await
        .expect("sent");
    assert_eq!(
        first.sends().len(),
        1,
        "the message went to the first gateway"
    );
    assert!(second.sends().is_empty());
    // Nor can the intruder inject anything: it has no session.
    assert!(
        second
            .inject_incoming(0, "099123456", "falso")
            .await
            .is_err()
    );
}

/// The same gateway (its MAC) logging in again replaces its old session at
/// once: its old TCP connection died without a FIN (a cut cable, a reboot),
/// and waiting for it to time out would keep every port down.
#[tokio::test]
async fn the_same_gateway_reconnecting_replaces_its_dead_session() {
    let rig = rig().await;
    // The gateway's first connection: authenticated, then silent for good,
    // as a connection whose far end vanished.
    let (mut old, answer) = login(rig.addr, USER, PASSWORD, SIM_MAC).await;
    assert_eq!(answer, Some(true));
    assert!(eventually(|| rig.transport.connected()).await);
    let sim = sim_for(rig.addr).reconnect(None).start();
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "the same MAC is let in"
    );
    assert_eq!(sim.connections(), 1, "on its first try");
    assert!(
        closed_within(&mut old, Duration::from_secs(5)).await,
        "the old connection is closed"
    );
    assert!(eventually(|| rig.transport.health(0).usable).await);
    rig.transport
        .send(&outbound(0, "+59899123456", "hola", 61))
        .await
        .expect("sent");
    assert_eq!(sim.sends().len(), 1);
}

/// Wrong passwords from one address are answered a few times, then the
/// address is locked out: its connections are closed without reading, so
/// the right password from there is refused too while the lockout lasts.
/// Before, every guess was answered (200 in 0.06 s).
#[tokio::test]
async fn password_guessing_is_locked_out_per_address() {
    let rig = rig().await;
    let mut answered = 0;
    for i in 0..30 {
        let (_s, answer) = login(rig.addr, USER, &format!("guess-{i}"), SIM_MAC).await;
        assert_ne!(answer, Some(true), "guess {i} accepted");
        if answer == Some(false) {
            answered += 1;
        }
    }
    assert!(
        (1..=5).contains(&answered),
        "{answered} of 30 guesses were checked"
    );
    let (_s, answer) = login(rig.addr, USER, PASSWORD, SIM_MAC).await;
    assert_eq!(
        answer, None,
        "locked out: not even the right password is read"
    );
    assert!(!rig.transport.connected());
}

/// A lockout ends by itself, and a successful login forgives the failures
/// before it: the gateway whose password a technician just fixed gets in.
#[tokio::test]
async fn a_lockout_ends_and_a_login_forgives_earlier_failures() {
    let mut o = options();
    o.guard.lockout = Duration::from_millis(500);
    let rig = rig_with(o).await;
    for i in 0..5 {
        let (_s, answer) = login(rig.addr, USER, &format!("guess-{i}"), SIM_MAC).await;
        assert_eq!(answer, Some(false));
    }
    let (_s, answer) = login(rig.addr, USER, PASSWORD, SIM_MAC).await;
    assert_eq!(answer, None, "locked out");
    let sim = sim_for(rig.addr).start();
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "let in once the lockout is over"
    );
    sim.shutdown();
    assert!(eventually(|| !rig.transport.connected()).await);
    // Four failures, a login, four more: never five in a row, never locked.
    for round in 0..2 {
        for i in 0..4 {
            let (_s, answer) = login(rig.addr, USER, &format!("r{round}-{i}"), SIM_MAC).await;
            assert_eq!(answer, Some(false), "round {round}, guess {i} is checked");
        }
        let (s, answer) = login(rig.addr, USER, PASSWORD, SIM_MAC).await;
        assert_eq!(answer, Some(true), "round {round}: the right password");
        drop(s);
        assert!(eventually(|| !rig.transport.connected()).await);
    }
}

/// With `allow` set, only the listed addresses reach the authentication;
/// others are closed before anything is read, the right password too.
#[tokio::test]
async fn only_addresses_in_allow_may_log_in() {
    let entry = |s: &str| AllowList::parse_entry(s).unwrap();
    let others = AllowList::new(vec![entry("192.0.2.10"), entry("2001:db8::/32")]);
    let rig = rig_allowing(options(), others).await;
    let (mut s, answer) = login(rig.addr, USER, PASSWORD, SIM_MAC).await;
    assert_eq!(answer, None, "refused unread");
    assert!(closed_within(&mut s, Duration::from_secs(5)).await);
    assert!(!rig.transport.connected());

    let loopback = AllowList::new(vec![entry("192.0.2.10"), entry("127.0.0.0/8")]);
    let rig = rig_allowing(options(), loopback).await;
    let sim = sim_for(rig.addr).start();
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "listed: let in"
    );
}

/// Connections that never authenticate cannot keep the gateway out: the
/// oldest waiting one is dropped for a newcomer. Before, eight idle sockets
/// filled the listener and the gateway was refused until they timed out.
#[tokio::test]
async fn idle_sockets_cannot_keep_the_gateway_out() {
    let mut o = options();
    // Long enough that the idle sockets outlive the test's wait.
    o.auth_timeout = Duration::from_secs(60);
    let rig = rig_with(o).await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(rig.addr).await.unwrap());
    }
    // Let the listener accept them all before the gateway comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sim = sim_for(rig.addr).start();
    assert!(
        sim.wait_connected(Duration::from_secs(5)).await,
        "the gateway gets in despite the idle sockets"
    );
    assert_eq!(sim.connections(), 1, "on its first try");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(5)).await,
        "the oldest idle socket was dropped"
    );
}

#[tokio::test]
async fn dropping_the_transport_closes_the_listener() {
    let rig = rig().await;
    let addr = rig.addr;
    let sim = sim_for(addr).reconnect(None).start();
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    drop(rig);
    assert!(
        sim.wait_disconnected(Duration::from_secs(5)).await,
        "session closed"
    );
    assert!(
        eventually(|| std::net::TcpStream::connect(addr).is_err()).await,
        "listener closed"
    );
}

#[tokio::test]
async fn the_stop_token_ends_the_transport() {
    let (tx, _events) = smsgate::transport::Events::channel();
    let stop = CancellationToken::new();
    let settings = DwgSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        user: USER.into(),
        password: Secret::new(PASSWORD),
        allow: Default::default(),
    };
    let t = DwgTransport::start("gw1", 2, &settings, options(), tx, stop.clone()).unwrap();
    let addr = t.local_addr().await.unwrap();
    stop.cancel();
    assert!(eventually(|| std::net::TcpStream::connect(addr).is_err()).await);
    // Still alive as an object, it only says it is not connected.
    assert_eq!(t.health(0).reason, NOT_CONNECTED);
}

#[test]
fn credentials_longer_than_the_field_are_a_setup_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (tx, _rx) = smsgate::transport::Events::channel();
        let settings = DwgSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            user: USER.into(),
            password: Secret::new("a-password-of-20-ch"),
            allow: Default::default(),
        };
        let err = DwgTransport::start("gw1", 2, &settings, options(), tx, CancellationToken::new())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("15 bytes"), "{err}");
        assert!(!err.to_string().contains("a-password"), "{err}");
    });
}

proptest! {
    #[test]
    fn codec_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode_frame(&bytes);
        // And through the streaming decoder, fed in two pieces.
        let mut codec = DwgCodec;
        let cut = bytes.len() / 2;
        let mut buf = BytesMut::from(&bytes[..cut]);
        let mut frames = 0;
        while let Ok(Some(_)) = codec.decode(&mut buf) {
            frames += 1;
        }
        buf.extend_from_slice(&bytes[cut..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {
            frames += 1;
        }
        prop_assert!(frames <= bytes.len() / codec::HEADER_LEN + 1);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(kind in 0u16..0x20, body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0; 16]);
        bytes.extend_from_slice(&kind.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&body);
        let (frame, used) = codec::decode_frame(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(frame.body.kind(), kind);
    }

    #[test]
    fn send_requests_round_trip_any_text(text in "\\PC{0,300}", port in 0u8..32, serial in any::<u32>()) {
        let enc = codec::choose_encoding(&text);
        let frame = Frame::new(MsgId { mac: [1, 2, 3, 4, 5, 6, 0, 0], time: 7, serial }, Body::SendSms(SendSms {
            port,
            encoding: enc,
            msg_type: 0,
            numbers: vec!["+59899123456".into()],
            text: text.clone(),
        }));
        match codec::encode_frame(&frame) {
            Ok(bytes) => {
                let (back, _) = codec::decode_frame(&bytes).unwrap().unwrap();
                prop_assert_eq!(back, frame);
            }
            // Only a text over the protocol's limit may be refused.
            Err(e) => prop_assert!(codec::encode_text(&text, enc).len() > codec::MAX_TEXT_BYTES, "{}", e),
        }
    }
}

/// A received SMS is acknowledged to the gateway only after the store says
/// it is on disk, and refused (so the gateway keeps it) when it is not.
/// Before, the ack went at once and a kill or a full disk right after lost
/// the message.
#[tokio::test]
async fn a_received_sms_is_acked_only_once_stored() {
    let (tx, mut events) = smsgate::transport::Events::channel();
    let settings = DwgSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        user: USER.into(),
        password: Secret::new(PASSWORD),
        allow: Default::default(),
    };
    let transport =
        DwgTransport::start("gw1", 4, &settings, options(), tx, CancellationToken::new()).unwrap();
    let addr = transport.local_addr().await.unwrap();
    let sim = std::sync::Arc::new(sim_for(addr).start());
    assert!(sim.wait_connected(Duration::from_secs(5)).await);
    let refused = ack_when_stored(&sim, &mut events, false).await;
    assert!(!refused.ok(), "not stored: the gateway must keep it");
    let taken = ack_when_stored(&sim, &mut events, true).await;
    assert!(taken.ok(), "stored: acknowledged");
}

/// Injects an SMS, checks the gateway is not answered before the store
/// is, answers `stored`, and returns the gateway's ack.
async fn ack_when_stored(
    sim: &std::sync::Arc<DwgSimHandle>,
    events: &mut tokio::sync::mpsc::Receiver<Event>,
    stored: bool,
) -> codec::Ack {
    let s = sim.clone();
    let inject = tokio::spawn(async move { s.inject_incoming(1, "099123456", "hola").await });
    let pending = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(Event::InboundAcked { ack, .. })) => break ack,
            Ok(Some(_)) => continue,
            other => panic!("no stored-or-not question: {other:?}"),
        }
    };
    // Nothing is acked before the store has answered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!inject.is_finished(), "acked before the store answered");
    pending.done(stored);
    inject.await.unwrap().expect("answered")
}
