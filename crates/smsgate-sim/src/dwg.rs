//! A simulated Dinstar DWG gateway speaking the binary "DWG SMS API": it
//! connects to smsgate's listener (the gateway is the client in this
//! protocol), authenticates, reports port status and signal, sends
//! keep-alives, answers send requests and reports their results and
//! delivery receipts, and can deliver received SMS or drop the connection
//! on demand. Every send request is recorded with its time and port.
//!
//! ```no_run
//! # async fn demo() {
//! use smsgate_sim::dwg::DwgSim;
//! let sim = DwgSim::builder()
//!     .connect("127.0.0.1:9000".parse().unwrap())
//!     .credentials("smsgate", "secret")
//!     .ports(8)
//!     .start();
//! sim.wait_connected(std::time::Duration::from_secs(5)).await;
//! let ack = sim.inject_incoming(0, "099123456", "¿Mañana? 👍").await;
//! # }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use smsgate_proto::dwg::{
    Ack, AuthRequest, Body, CodecError, DwgCodec, Frame, MsgId, PortState, ReceivedSms, SendCode,
    SmsReceipt, SmsResult, TextEncoding, choose_encoding, encode_text,
};

/// The gateway's side of the TCP stream, frame by frame. `next` is
/// cancel-safe (bytes read stay in the buffer), so it can sit in a
/// `select!`.
struct Conn {
    stream: TcpStream,
    codec: DwgCodec,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            codec: DwgCodec,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::new(),
        }
    }

    /// The next frame; `Ok(None)` when smsgate closed the connection.
    async fn next(&mut self) -> Result<Option<Frame>, CodecError> {
        loop {
            if let Some(f) = self.codec.decode(&mut self.rbuf)? {
                return Ok(Some(f));
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), CodecError> {
        self.wbuf.clear();
        self.codec.encode(frame, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// Writes the first half of `frame` and closes the connection, as a
    /// gateway losing power or its link mid-write would.
    async fn send_half_and_close(&mut self, frame: Frame) -> Result<(), CodecError> {
        self.wbuf.clear();
        self.codec.encode(frame, &mut self.wbuf)?;
        let half = self.wbuf.len() / 2;
        self.stream.write_all(&self.wbuf[..half]).await?;
        self.stream.flush().await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}

/// A frame the gateway can be made to cut off half-way (see
/// [`DwgSimHandle::cut_next`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutFrame {
    /// The answer to a send request (the gateway took the message).
    SendResponse,
    /// The send result that follows an accepted send.
    SendResult,
    /// A delivery receipt.
    Receipt,
    /// A received SMS (injected).
    ReceivedSms,
    /// A port status report.
    PortStatus,
}

impl CutFrame {
    fn matches(self, body: &Body) -> bool {
        matches!(
            (self, body),
            (Self::SendResponse, Body::SendSmsResponse(_))
                | (Self::SendResult, Body::SendSmsResult(_))
                | (Self::Receipt, Body::SmsReceipt(_))
                | (Self::ReceivedSms, Body::ReceiveSms(_))
                | (Self::PortStatus, Body::PortStatus(_))
        )
    }
}

/// One send request as the simulated gateway saw it.
#[derive(Debug, Clone)]
pub struct SimSend {
    /// Arrival, monotonic.
    pub at: Instant,
    /// Arrival, wall clock.
    pub wall: SystemTime,
    pub port: u8,
    pub numbers: Vec<String>,
    pub text: String,
    pub encoding: TextEncoding,
    /// Header serial of the request (smsgate's message reference).
    pub serial: u32,
    /// What the simulated gateway answered.
    pub answer: SendCode,
}

/// An acknowledgement smsgate sent for something the gateway reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimAck {
    pub kind: u16,
    pub serial: u32,
    pub ack: Ack,
}

/// One port of the simulated gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPort {
    pub state: PortState,
    /// CSQ RSSI, 0–31 (99 unknown).
    pub rssi: u8,
}

impl Default for SimPort {
    fn default() -> Self {
        Self {
            state: PortState::Works,
            rssi: 25,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulated gateway is not connected")]
    NotConnected,
    #[error("smsgate did not acknowledge within {0:?}")]
    NoAck(Duration),
}

/// Entry point: `DwgSim::builder()`.
pub struct DwgSim;

impl DwgSim {
    pub fn builder() -> DwgSimBuilder {
        DwgSimBuilder::default()
    }
}

#[derive(Debug, Clone)]
pub struct DwgSimBuilder {
    connect: SocketAddr,
    user: String,
    password: String,
    ports: u8,
    mac: [u8; 6],
    keepalive: Duration,
    latency: Duration,
    result_delay: Option<Duration>,
    receipt_delay: Option<Duration>,
    reconnect: Option<Duration>,
    echo_result_id: bool,
}

impl Default for DwgSimBuilder {
    fn default() -> Self {
        Self {
            connect: SocketAddr::from(([127, 0, 0, 1], 9000)),
            user: "admin".into(),
            password: "admin".into(),
            ports: 8,
            mac: [0x00, 0x1f, 0xd6, 0xc7, 0x06, 0xa1],
            keepalive: Duration::from_secs(20),
            latency: Duration::from_millis(20),
            result_delay: Some(Duration::from_millis(200)),
            receipt_delay: Some(Duration::from_millis(400)),
            reconnect: Some(Duration::from_secs(1)),
            echo_result_id: true,
        }
    }
}

impl DwgSimBuilder {
    /// smsgate's DWG listener.
    pub fn connect(mut self, addr: SocketAddr) -> Self {
        self.connect = addr;
        self
    }
    pub fn credentials(mut self, user: &str, password: &str) -> Self {
        self.user = user.into();
        self.password = password.into();
        self
    }
    /// Number of GSM ports, 0-based on the wire.
    pub fn ports(mut self, n: u8) -> Self {
        self.ports = n;
        self
    }
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = mac;
        self
    }
    /// How often the gateway sends a keep-alive.
    pub fn keepalive(mut self, d: Duration) -> Self {
        self.keepalive = d;
        self
    }
    /// Delay before answering a send request.
    pub fn latency(mut self, d: Duration) -> Self {
        self.latency = d;
        self
    }
    /// Delay from the answer to the send result (type 3); None: never.
    pub fn result_delay(mut self, d: Option<Duration>) -> Self {
        self.result_delay = d;
        self
    }
    /// Delay from the result to the delivery receipt (0x11); None: never.
    pub fn receipt_delay(mut self, d: Option<Duration>) -> Self {
        self.receipt_delay = d;
        self
    }
    /// Reconnect this long after a drop or a refusal; None: stay down.
    pub fn reconnect(mut self, d: Option<Duration>) -> Self {
        self.reconnect = d;
        self
    }
    /// Whether the send result carries the request's ID (real firmware is
    /// not known to; off makes smsgate match by port and number).
    pub fn echo_result_id(mut self, on: bool) -> Self {
        self.echo_result_id = on;
        self
    }

    /// Starts the gateway's connection loop. Needs a Tokio runtime.
    pub fn start(self) -> DwgSimHandle {
        let (connected_tx, connected) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(SimState {
                ports: vec![SimPort::default(); self.ports as usize],
                ..Default::default()
            }),
            cfg: self,
            session: Mutex::new(None),
            stop: CancellationToken::new(),
            connected: connected_tx,
        });
        tokio::spawn(shared.clone().drive());
        DwgSimHandle { shared, connected }
    }
}

enum Cmd {
    Frame(Frame),
    Inject(Frame, oneshot::Sender<Ack>),
    Disconnect,
}

#[derive(Default)]
struct SimState {
    ports: Vec<SimPort>,
    sends: Vec<SimSend>,
    script: VecDeque<SendCode>,
    result_script: VecDeque<SendCode>,
    auth: Vec<bool>,
    keepalives_in: u64,
    acks: Vec<SimAck>,
    silent: bool,
    serial: u32,
    connections: u64,
    /// Frames to cut off half-way, each once.
    cuts: Vec<CutFrame>,
    /// Frames cut off so far.
    cut_done: u64,
}

struct Shared {
    cfg: DwgSimBuilder,
    state: Mutex<SimState>,
    session: Mutex<Option<mpsc::Sender<Cmd>>>,
    stop: CancellationToken,
    connected: watch::Sender<bool>,
}

/// Control of a running simulated gateway. Dropping it stops the gateway.
pub struct DwgSimHandle {
    shared: Arc<Shared>,
    connected: watch::Receiver<bool>,
}

impl Drop for DwgSimHandle {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

fn now_stamp() -> String {
    // UTC, with the timezone byte 0.
    jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string()
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

impl DwgSimHandle {
    /// Every send request so far, in arrival order.
    pub fn sends(&self) -> Vec<SimSend> {
        self.shared.lock().sends.clone()
    }
    /// Outcome of every authentication attempt (true: accepted).
    pub fn auth_results(&self) -> Vec<bool> {
        self.shared.lock().auth.clone()
    }
    /// Keep-alives received from smsgate.
    pub fn keepalives_received(&self) -> u64 {
        self.shared.lock().keepalives_in
    }
    /// Acknowledgements smsgate sent.
    pub fn acks(&self) -> Vec<SimAck> {
        self.shared.lock().acks.clone()
    }
    /// TCP connections made so far.
    pub fn connections(&self) -> u64 {
        self.shared.lock().connections
    }
    pub fn connected(&self) -> bool {
        *self.connected.borrow()
    }
    /// Waits until authenticated (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }
    /// Waits until not connected (true) or `timeout` passes (false).
    pub async fn wait_disconnected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| !*c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A received SMS as the gateway would report it now.
    pub fn incoming_sms(port: u8, from: &str, text: &str) -> ReceivedSms {
        let encoding = choose_encoding(text);
        ReceivedSms {
            number: from.into(),
            msg_type: 0,
            port,
            timestamp: now_stamp(),
            timezone: 0,
            encoding,
            content: encode_text(text, encoding),
        }
    }

    /// Delivers a received SMS and waits for smsgate's acknowledgement.
    pub async fn inject_incoming(&self, port: u8, from: &str, text: &str) -> Result<Ack, SimError> {
        self.inject_sms(Self::incoming_sms(port, from, text)).await
    }

    /// Delivers this exact SMS (again, to test resends).
    pub async fn inject_sms(&self, sms: ReceivedSms) -> Result<Ack, SimError> {
        let frame = self.shared.frame(Body::ReceiveSms(sms));
        let (tx, rx) = oneshot::channel();
        self.shared.command(Cmd::Inject(frame, tx)).await?;
        let wait = Duration::from_secs(5);
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(ack)) => Ok(ack),
            Ok(Err(_)) => Err(SimError::NotConnected),
            Err(_) => Err(SimError::NoAck(wait)),
        }
    }

    /// Changes a port and reports the new status and signal at once.
    pub async fn set_port(&self, port: u8, setting: SimPort) {
        if let Some(p) = self.shared.lock().ports.get_mut(port as usize) {
            *p = setting;
        }
        let _ = self.shared.report_ports().await;
    }

    /// The answer to the next send request (else: by the port's state).
    pub fn script_send(&self, code: SendCode) {
        self.shared.lock().script.push_back(code);
    }
    /// The send result (type 3) of the next accepted request.
    pub fn script_result(&self, code: SendCode) {
        self.shared.lock().result_script.push_back(code);
    }
    /// Stops (true) or resumes sending keep-alives, as a hung gateway would.
    pub fn set_silent(&self, silent: bool) {
        self.shared.lock().silent = silent;
    }
    /// The next frame of this kind is written half-way, then the TCP
    /// connection is closed (it comes back if `reconnect` is set). Calls
    /// queue up, one cut per call.
    pub fn cut_next(&self, frame: CutFrame) {
        self.shared.lock().cuts.push(frame);
    }
    /// Frames cut off half-way so far.
    pub fn cuts_done(&self) -> u64 {
        self.shared.lock().cut_done
    }
    /// Drops the TCP connection (it comes back if `reconnect` is set).
    pub async fn disconnect(&self) {
        let _ = self.shared.command(Cmd::Disconnect).await;
    }
    /// Sends any frame, for protocol tests.
    pub async fn send_raw(&self, body: Body) -> Result<(), SimError> {
        let f = self.shared.frame(body);
        self.shared.command(Cmd::Frame(f)).await
    }
    /// Stops the gateway.
    pub fn shutdown(&self) {
        self.shared.stop.cancel();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a frame with this body is to be cut off (and, if so, counts
    /// the cut as done).
    fn take_cut(&self, body: &Body) -> bool {
        let mut st = self.lock();
        let Some(i) = st.cuts.iter().position(|c| c.matches(body)) else {
            return false;
        };
        st.cuts.remove(i);
        st.cut_done += 1;
        true
    }

    fn frame(&self, body: Body) -> Frame {
        let serial = {
            let mut st = self.lock();
            st.serial = st.serial.wrapping_add(1);
            st.serial
        };
        let mut mac = [0u8; 8];
        mac[..6].copy_from_slice(&self.cfg.mac);
        Frame::new(
            MsgId {
                mac,
                time: unix_now(),
                serial,
            },
            body,
        )
    }

    async fn command(&self, cmd: Cmd) -> Result<(), SimError> {
        let tx = self
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match tx {
            Some(tx) => tx.send(cmd).await.map_err(|_| SimError::NotConnected),
            None => Err(SimError::NotConnected),
        }
    }

    async fn report_ports(&self) -> Result<(), SimError> {
        let ports = self.lock().ports.clone();
        let status = self.frame(Body::PortStatus(ports.iter().map(|p| p.state).collect()));
        let rssi = self.frame(Body::CsqRssi(ports.iter().map(|p| p.rssi).collect()));
        self.command(Cmd::Frame(status)).await?;
        self.command(Cmd::Frame(rssi)).await
    }

    async fn drive(self: Arc<Self>) {
        loop {
            match self.connect_once().await {
                Ok(true) => {
                    tracing::warn!("simulated DWG gateway: smsgate refused the credentials")
                }
                Ok(false) => {}
                Err(e) => tracing::info!(error = %e, "simulated DWG gateway: connection ended"),
            }
            let _ = self.connected.send(false);
            *self.session.lock().unwrap_or_else(|p| p.into_inner()) = None;
            let Some(delay) = self.cfg.reconnect else {
                return;
            };
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection; Ok(true) when smsgate refused the credentials.
    async fn connect_once(self: &Arc<Self>) -> Result<bool, String> {
        let stream = tokio::select! {
            _ = self.stop.cancelled() => return Ok(false),
            s = TcpStream::connect(self.cfg.connect) => s.map_err(|e| e.to_string())?,
        };
        let _ = stream.set_nodelay(true);
        self.lock().connections += 1;
        let mut conn = Conn::new(stream);
        // Credentials too long for the field go out cut, as a gateway's
        // web form would have refused them anyway.
        let cut = |s: &str| -> String {
            let mut s = s.to_string();
            while s.len() > 15 {
                s.pop();
            }
            s
        };
        let auth = AuthRequest::new(&cut(&self.cfg.user), &cut(&self.cfg.password))
            .ok_or("credentials do not fit")?;
        conn.send(self.frame(Body::Auth(auth)))
            .await
            .map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .map_err(|_| "no authentication response".to_string())?
            .map_err(|e| e.to_string())?;
        let accepted = matches!(reply, Some(Frame { body: Body::AuthResponse(a), .. }) if a.ok());
        self.lock().auth.push(accepted);
        if !accepted {
            return Ok(true);
        }
        let (tx, mut rx) = mpsc::channel::<Cmd>(64);
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
        // What a real gateway does right after authentication.
        let ports = self.lock().ports.clone();
        conn.send(self.frame(Body::PortStatus(ports.iter().map(|p| p.state).collect())))
            .await
            .map_err(|e| e.to_string())?;
        conn.send(self.frame(Body::CsqRssi(ports.iter().map(|p| p.rssi).collect())))
            .await
            .map_err(|e| e.to_string())?;
        let _ = self.connected.send(true);
        let mut ack_waiters: Vec<(u32, oneshot::Sender<Ack>)> = Vec::new();
        let mut keepalive = tokio::time::interval(self.cfg.keepalive);
        keepalive.tick().await;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(false),
                _ = keepalive.tick() => {
                    if !self.lock().silent {
                        conn.send(self.frame(Body::KeepAlive)).await.map_err(|e| e.to_string())?;
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Frame(f)) | Some(Cmd::Inject(f, _)) if self.take_cut(&f.body) => {
                        conn.send_half_and_close(f).await.map_err(|e| e.to_string())?;
                        return Err("cut off mid-frame".into());
                    }
                    Some(Cmd::Frame(f)) => conn.send(f).await.map_err(|e| e.to_string())?,
                    Some(Cmd::Inject(f, ack)) => {
                        ack_waiters.push((f.id.serial, ack));
                        conn.send(f).await.map_err(|e| e.to_string())?;
                    }
                    Some(Cmd::Disconnect) | None => return Ok(false),
                },
                f = conn.next() => {
                    let Some(frame) = f.map_err(|e| e.to_string())? else {
                        return Err("smsgate closed the connection".into());
                    };
                    self.on_frame(frame, &mut conn, &tx, &mut ack_waiters).await?;
                }
            }
        }
    }

    async fn on_frame(
        self: &Arc<Self>,
        frame: Frame,
        conn: &mut Conn,
        tx: &mpsc::Sender<Cmd>,
        ack_waiters: &mut Vec<(u32, oneshot::Sender<Ack>)>,
    ) -> Result<(), String> {
        let serial = frame.id.serial;
        let record = |kind: u16, ack: Ack| {
            self.lock().acks.push(SimAck { kind, serial, ack });
        };
        match &frame.body {
            Body::KeepAlive => self.lock().keepalives_in += 1,
            Body::SendSms(req) => {
                let answer = {
                    let mut st = self.lock();
                    let by_port = match st.ports.get(req.port as usize) {
                        Some(p) if p.state == PortState::Works => SendCode::Succeed,
                        _ => SendCode::PortUnavailable,
                    };
                    let answer = st.script.pop_front().unwrap_or(by_port);
                    st.sends.push(SimSend {
                        at: Instant::now(),
                        wall: SystemTime::now(),
                        port: req.port,
                        numbers: req.numbers.clone(),
                        text: req.text.clone(),
                        encoding: req.encoding,
                        serial,
                        answer,
                    });
                    answer
                };
                tracing::info!(port = req.port, numbers = ?req.numbers, serial = serial, answer = ?answer, "simulated DWG gateway: send request");
                self.clone().answer_send(frame.clone(), answer, tx.clone());
            }
            Body::SendUssd(u) => {
                conn.send(frame.reply(Body::SendUssdResponse(SendCode::Succeed)))
                    .await
                    .map_err(|e| e.to_string())?;
                let reply = self.frame(Body::ReceiveUssd(smsgate_proto::dwg::ReceivedUssd {
                    port: u.port,
                    status: 0,
                    encoding: TextEncoding::Ascii,
                    content: b"Simulated balance: 100.00".to_vec(),
                }));
                let _ = tx.send(Cmd::Frame(reply)).await;
            }
            Body::ReceiveSmsAck(a) => {
                record(frame.body.kind(), *a);
                if let Some(i) = ack_waiters.iter().position(|(s, _)| *s == serial) {
                    let (_, w) = ack_waiters.swap_remove(i);
                    let _ = w.send(*a);
                }
            }
            Body::SendSmsResultAck(a)
            | Body::PortStatusAck(a)
            | Body::CsqRssiAck(a)
            | Body::ReceiveUssdAck(a)
            | Body::SmsReceiptAck(a) => record(frame.body.kind(), *a),
            _ => {}
        }
        Ok(())
    }

    /// Answers a send request after the latency, then reports its result
    /// and receipt, from a task of its own so the connection keeps going.
    fn answer_send(self: Arc<Self>, req: Frame, answer: SendCode, tx: mpsc::Sender<Cmd>) {
        tokio::spawn(async move {
            tokio::time::sleep(self.cfg.latency).await;
            if tx
                .send(Cmd::Frame(req.reply(Body::SendSmsResponse(answer))))
                .await
                .is_err()
                || answer != SendCode::Succeed
            {
                return;
            }
            let Body::SendSms(s) = &req.body else { return };
            let number = s.numbers.first().cloned().unwrap_or_default();
            let Some(delay) = self.cfg.result_delay else {
                return;
            };
            tokio::time::sleep(delay).await;
            let code = self
                .lock()
                .result_script
                .pop_front()
                .unwrap_or(SendCode::Succeed);
            let body = Body::SendSmsResult(SmsResult {
                count: 1,
                number: number.clone(),
                port: s.port,
                code,
                slices: 1,
                succeeded: u8::from(code == SendCode::Succeed),
            });
            let result = if self.cfg.echo_result_id {
                req.reply(body)
            } else {
                self.frame(body)
            };
            if tx.send(Cmd::Frame(result)).await.is_err() || code != SendCode::Succeed {
                return;
            }
            let Some(delay) = self.cfg.receipt_delay else {
                return;
            };
            tokio::time::sleep(delay).await;
            let receipt = self.frame(Body::SmsReceipt(SmsReceipt {
                port: s.port,
                number,
                receipt_id: (req.id.serial & 0xff) as u8,
                timestamp: now_stamp(),
                timezone: 0,
                state: 0,
            }));
            let _ = tx.send(Cmd::Frame(receipt)).await;
        });
    }
}
