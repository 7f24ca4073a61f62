//! An authenticated session: the frame loop (keep-alives, silence, the
//! outgoing queue) and what each frame from the gateway does to the
//! tables: send responses and results, delivery receipts, received
//! messages, port status and signal. Its own file because it is the
//! protocol's message handling, apart from how a connection is accepted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Ack, Body, Frame, MsgId, PortState, ReceivedSms, SendCode, SmsResult};
use super::{
    Conn, Inner, MAX_SEEN, Tracked, digits, format_timestamp, mac_of, push_bounded, source_key,
    unix_now,
};
use crate::transport::{Event, Received, StoredAck};

/// How long a received message may take to be stored before the gateway is
/// told to keep it.
const STORE_WAIT: Duration = Duration::from_secs(10);

impl Inner {
    /// Runs an authenticated session until it ends; returns why it ended.
    pub(super) async fn run_session(
        &self,
        framed: &mut Conn,
        mut rx: mpsc::Receiver<Frame>,
        cancel: &CancellationToken,
    ) -> String {
        let opts = &self.options;
        let mut last_rx = Instant::now();
        let mut last_tx = Instant::now();
        let mut last_keepalive: Option<Instant> = None;
        loop {
            let silence_at = last_rx + opts.silence;
            let keepalive_at = last_tx + opts.keepalive;
            let wake = silence_at.min(keepalive_at);
            let mut out: Vec<Frame> = Vec::new();
            tokio::select! {
                _ = cancel.cancelled() => {
                    return if self.stop.is_cancelled() { "smsgate stopped the transport".into() } else { "replaced by a new connection".into() };
                }
                f = framed.next() => match f {
                    Ok(Some(frame)) => {
                        last_rx = Instant::now();
                        if matches!(frame.body, Body::KeepAlive) {
                            // Answer the gateway's keep-alive, but never one
                            // that follows ours within a second: if the
                            // gateway echoes keep-alives too, we must not
                            // ping-pong for ever.
                            if last_keepalive.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                                out.push(frame.reply(Body::KeepAlive));
                                last_keepalive = Some(Instant::now());
                            }
                        } else if let Body::ReceiveSms(m) = &frame.body {
                            // Answered only once the store has it: the
                            // session waits (back-pressure: one received
                            // message in flight per gateway).
                            let ack = self.on_received(m).await;
                            out.push(frame.reply(Body::ReceiveSmsAck(ack)));
                        } else {
                            out.extend(self.handle(frame));
                        }
                    }
                    Err(e) => return format!("unreadable stream: {e}"),
                    Ok(None) => return "the gateway closed the connection".into(),
                },
                Some(frame) = rx.recv() => out.push(frame),
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= silence_at {
                        return format!("nothing received for {} s", opts.silence.as_secs());
                    }
                    let mac = mac_of(self).unwrap_or([0; 8]);
                    out.push(Frame::new(MsgId { mac, time: unix_now(), serial: self.next_serial.fetch_add(1, Ordering::Relaxed) }, Body::KeepAlive));
                    last_keepalive = Some(Instant::now());
                }
            }
            for frame in out {
                if let Err(e) = framed.send(frame).await {
                    return format!("cannot write to the gateway: {e}");
                }
                last_tx = Instant::now();
            }
        }
    }

    /// Handles one frame from the gateway; returns the replies to write.
    fn handle(&self, frame: Frame) -> Vec<Frame> {
        let gw = &self.name;
        match &frame.body {
            Body::SendSmsResponse(code) => {
                self.on_send_response(frame.id.serial, *code);
                vec![]
            }
            // No room for its event: a failure ack, and the gateway sends it
            // again, rather than an event dropped and a message left SENT.
            Body::SendSmsResult(_) | Body::SmsReceipt(_) if self.events.room() == 0 => {
                tracing::debug!(gateway = %gw, kind = frame.body.kind(), "engine's event queue full; the gateway will send it again");
                let ack = match frame.body {
                    Body::SendSmsResult(_) => Body::SendSmsResultAck(Ack::FAIL),
                    _ => Body::SmsReceiptAck(Ack::FAIL),
                };
                vec![frame.reply(ack)]
            }
            Body::SendSmsResult(r) => {
                self.on_result(frame.id.serial, r);
                vec![frame.reply(Body::SendSmsResultAck(Ack::OK))]
            }
            Body::PortStatus(states) => {
                self.on_status(states);
                vec![frame.reply(Body::PortStatusAck(Ack::OK))]
            }
            Body::CsqRssi(values) => {
                self.on_rssi(values);
                vec![frame.reply(Body::CsqRssiAck(Ack::OK))]
            }
            Body::SmsReceipt(r) => {
                self.on_receipt(r);
                vec![frame.reply(Body::SmsReceiptAck(Ack::OK))]
            }
            Body::ReceiveUssd(u) => {
                tracing::info!(gateway = %gw, port = u.port, status = u.status, text = %codec::decode_text(&u.content, u.encoding), "USSD received");
                vec![frame.reply(Body::ReceiveUssdAck(Ack::OK))]
            }
            Body::Auth(_) => {
                // Already authenticated; answer so the gateway is not left
                // waiting, and keep the session.
                vec![frame.reply(Body::AuthResponse(Ack::OK))]
            }
            Body::Malformed { kind, reason } => {
                tracing::warn!(gateway = %gw, kind = kind, reason = %reason, "unreadable DWG message ignored");
                vec![]
            }
            other => {
                tracing::debug!(gateway = %gw, kind = other.kind(), "DWG message not used by smsgate; ignored");
                vec![]
            }
        }
    }

    fn on_send_response(&self, serial: u32, code: SendCode) {
        let mut st = self.lock();
        let Some(p) = st.pending.remove(&serial) else {
            tracing::debug!(gateway = %self.name, reference = serial, "send response for a request no longer waited for");
            return;
        };
        if matches!(code, SendCode::Succeed | SendCode::PartialSucceed) {
            let tracked = Tracked {
                serial,
                port: p.port,
                digits: p.digits,
            };
            push_bounded(&mut st.awaiting_result, tracked);
        }
        let _ = p.reply.send(code);
    }

    fn on_result(&self, serial: u32, r: &SmsResult) {
        let ok = matches!(r.code, SendCode::Succeed | SendCode::PartialSucceed);
        let number = digits(&r.number);
        let mut st = self.lock();
        // A result that overtakes its response answers the request itself.
        if let Some(p) = st.pending.remove(&serial) {
            if ok {
                let t = Tracked {
                    serial,
                    port: p.port,
                    digits: p.digits,
                };
                push_bounded(&mut st.awaiting_receipt, t);
            }
            let _ = p.reply.send(r.code);
            return;
        }
        // By the ID when the gateway echoes it, else the oldest message to
        // the same number on the same port (the body has no message id).
        let idx = st
            .awaiting_result
            .iter()
            .position(|t| t.serial == serial && t.port == r.port)
            .or_else(|| {
                st.awaiting_result
                    .iter()
                    .position(|t| t.port == r.port && t.digits == number)
            });
        let Some(t) = idx.and_then(|i| st.awaiting_result.remove(i)) else {
            tracing::info!(gateway = %self.name, port = r.port, code = r.code.byte(), "send result for a message this session does not track; ignored");
            return;
        };
        let reference = t.serial;
        if ok {
            push_bounded(&mut st.awaiting_receipt, t);
        }
        drop(st);
        let mut detail = format!(
            "{}; {} of {} segments sent",
            r.code.describe(),
            r.succeeded,
            r.slices
        );
        if r.code == SendCode::PartialSucceed {
            // Resending would repeat the segments that did arrive: count it
            // as sent and say so.
            detail.push_str(" (partly sent; not resent)");
        }
        tracing::debug!(gateway = %self.name, port = r.port, reference = reference, ok = ok, detail = %detail, "send result");
        self.emit(Event::Result {
            gateway: self.name.clone(),
            gateway_ref: reference.to_string(),
            ok,
            detail,
        });
    }

    fn on_receipt(&self, r: &codec::SmsReceipt) {
        // TP-Status 32–63: the network is still trying; wait for the next.
        if (32..64).contains(&r.state) {
            return;
        }
        let number = digits(&r.number);
        let mut st = self.lock();
        let idx = st
            .awaiting_receipt
            .iter()
            .position(|t| t.port == r.port && t.digits == number);
        let Some(t) = idx.and_then(|i| st.awaiting_receipt.remove(i)) else {
            tracing::debug!(gateway = %self.name, port = r.port, "delivery receipt for a message we do not track; ignored");
            return;
        };
        drop(st);
        let delivered = r.state < 32;
        self.emit(Event::Delivered {
            gateway: self.name.clone(),
            gateway_ref: t.serial.to_string(),
            delivered,
            detail: format!("delivery receipt, status {}", r.state),
        });
    }

    /// Hands a received SMS to the engine; the ack says whether it was.
    /// Hands a received message to the engine and says OK to the gateway
    /// only once it is on disk; a failure ack (not stored, or not within
    /// [`STORE_WAIT`]) leaves it on the gateway, which sends it again.
    async fn on_received(&self, m: &ReceivedSms) -> Ack {
        let key = source_key(m);
        {
            let st = self.lock();
            if st.seen_set.contains(&key) {
                // The gateway sent it again (our ack was lost): the engine
                // has it already.
                tracing::debug!(gateway = %self.name, port = m.port, "received SMS sent again; acknowledged once more, not stored twice");
                return Ack::OK;
            }
        }
        let inbound = Received {
            gateway: self.name.clone(),
            port: Some(u32::from(m.port)),
            source_key: key.clone(),
            sender: m.number.clone(),
            number: None,
            recipient: None,
            text: m.text(),
            sent_at: Some(format_timestamp(&m.timestamp, m.timezone)),
        };
        let (ask, answer) = StoredAck::ask(inbound);
        // Waits for room: meanwhile the session reads nothing more, and the
        // gateway waits for this ack.
        if self.events.send_waiting(ask).await.is_err() {
            // Nobody to hand it to: a failure ack keeps it on the gateway.
            tracing::error!(gateway = %self.name, port = m.port, "received SMS could not be handed over; the gateway keeps it");
            return Ack::FAIL;
        }
        if !answer
            .stored_by(tokio::time::Instant::now() + STORE_WAIT)
            .await
        {
            tracing::warn!(gateway = %self.name, port = m.port, "received SMS not stored; the gateway keeps it and sends it again");
            return Ack::FAIL;
        }
        let mut st = self.lock();
        if st.seen.len() >= MAX_SEEN {
            if let Some(old) = st.seen.pop_front() {
                st.seen_set.remove(&old);
            }
        }
        st.seen.push_back(key.clone());
        st.seen_set.insert(key);
        Ack::OK
    }

    fn on_status(&self, states: &[PortState]) {
        let mut changed = Vec::new();
        {
            let mut st = self.lock();
            let reported = states.len();
            for (i, h) in st.health.iter_mut().enumerate() {
                let mut next = h.clone();
                match states.get(i) {
                    Some(s) => {
                        let (usable, sim, registered, reason) = match s {
                            PortState::Works => (true, Some(true), Some(true), String::new()),
                            PortState::NoSim => {
                                (false, Some(false), Some(false), "no SIM card".to_string())
                            }
                            PortState::NotRegistered => (
                                false,
                                Some(true),
                                Some(false),
                                "not registered on the network".to_string(),
                            ),
                            PortState::Unavailable => {
                                (false, None, None, "port unavailable".to_string())
                            }
                            PortState::Other(b) => {
                                (false, None, None, format!("unknown port status {b}"))
                            }
                        };
                        next.usable = usable;
                        next.sim = sim;
                        next.registered = registered;
                        next.reason = reason;
                    }
                    None => {
                        next.usable = false;
                        next.reason = format!("the gateway reports only {reported} ports");
                    }
                }
                if next != *h {
                    *h = next.clone();
                    changed.push((i as u32, next));
                }
            }
        }
        for (port, h) in changed {
            if !h.usable {
                tracing::warn!(gateway = %self.name, port = port, reason = %h.reason, "DWG port unusable");
            } else {
                tracing::info!(gateway = %self.name, port = port, "DWG port usable");
            }
            self.emit_health(port, h);
        }
    }

    fn on_rssi(&self, values: &[u8]) {
        let mut changed = Vec::new();
        {
            let mut st = self.lock();
            for (i, v) in values.iter().enumerate() {
                let Some(h) = st.health.get_mut(i) else { break };
                // 99 is "not known" in AT+CSQ terms.
                let signal = (*v != 99).then_some(i32::from(*v));
                if h.signal != signal {
                    h.signal = signal;
                    changed.push((i as u32, h.clone()));
                }
            }
        }
        for (port, h) in changed {
            self.emit_health(port, h);
        }
    }
}
