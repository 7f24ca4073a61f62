//! The modem's task: open, start, send, receive, poll, reopen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::framing::{AtFramer, FinalResult, Frame, Urc, last_int};
use super::{ModemInfo, SendRequest, errors};
use crate::config::AtSettings;
use crate::transport::{
    Accepted, Awaiting, Event, Events, PortHealth, Received, SendError, StoredAck,
};
use smsgate_proto::sms::{
    self, Address, ConcatKey, DeliveryOutcome, Reassembler, Reassembly, ServiceCentre, SmsDeliver,
    SmsStatusReport, SubmitOptions, Tpdu,
};

/// Ctrl-Z ends the PDU; ESC abandons a prompt (at-modems.md §1.3).
const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;
/// Consecutive garbage frames after which the port is taken for broken.
const MAX_GARBAGE: u32 = 3;
/// Unfinished multi-part messages kept, and for how long after their last
/// part (parts may come minutes apart; a restart re-reads them from the
/// SIM and starts the clock again).
const REASSEMBLY_SLOTS: usize = 64;
const REASSEMBLY_AGE: Duration = Duration::from_secs(3600);
/// Sent messages remembered for their status reports.
const TRACKED_MAX: usize = 4096;
pub(super) const TRACKED_AGE: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long the engine may take to store a received message.
const STORE_ACK_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a session ended: the port is closed and reopened.
#[derive(Debug, thiserror::Error)]
pub enum Broken {
    #[error("the port closed (modem unplugged?)")]
    Eof,
    #[error("read or write failed: {0}")]
    Io(String),
    #[error("no answer to {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("the modem sends garbage")]
    Garbage,
    #[error("the modem does not answer AT")]
    NoAnswer,
    #[error("stopping")]
    Stop,
}

/// A command's answer.
#[derive(Debug, Default)]
struct Reply {
    lines: Vec<String>,
    records: Vec<(String, Option<String>)>,
    result: Option<FinalResult>,
}

impl Reply {
    fn ok(&self) -> bool {
        self.result == Some(FinalResult::Ok)
    }

    /// The first line with this prefix, without it.
    fn value(&self, prefix: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            l.get(..prefix.len())
                .filter(|h| h.eq_ignore_ascii_case(prefix))
                .map(|_| l[prefix.len()..].trim())
        })
    }

    fn result_text(&self) -> String {
        self.result
            .as_ref()
            .map_or_else(|| "no final result".to_string(), |r| r.to_string())
    }
}

/// The shared, long-lived state of one modem (survives reopens).
pub(crate) struct Modem {
    name: String,
    settings: AtSettings,
    events: Events,
    health: Arc<Mutex<PortHealth>>,
    info: Arc<Mutex<ModemInfo>>,
    /// The SIM refused our PIN once: never send it again (a PUK lock is
    /// three wrong tries away), until the config changes.
    pin_refused: bool,
    reassembler: Reassembler,
    /// The PDU and SIM slot of every part held by the reassembler.
    parts: HashMap<ConcatKey, BTreeMap<u8, Part>>,
    tracked: VecDeque<Tracked>,
    last_reported: Option<PortHealth>,
    /// What an earlier run left awaiting status reports; `tracked` is
    /// rebuilt from it when the task starts.
    resume: Vec<Awaiting>,
}

#[derive(Debug, Clone)]
struct Part {
    slot: Option<(String, u32)>,
    pdu: String,
}

/// A sent message awaiting its status reports.
#[derive(Debug)]
struct Tracked {
    gateway_ref: String,
    to_digits: String,
    /// Per part: its MR and whether its report said delivered.
    parts: Vec<(Option<u8>, bool)>,
    at: Instant,
}

impl Modem {
    pub(crate) fn new(
        name: String,
        settings: AtSettings,
        events: Events,
        health: Arc<Mutex<PortHealth>>,
        info: Arc<Mutex<ModemInfo>>,
        resume: Vec<Awaiting>,
    ) -> Self {
        Self {
            name,
            settings,
            events,
            health,
            info,
            pin_refused: false,
            reassembler: Reassembler::new(
                REASSEMBLY_SLOTS,
                jiff::SignedDuration::from_secs(REASSEMBLY_AGE.as_secs() as i64),
            ),
            parts: HashMap::new(),
            tracked: VecDeque::new(),
            last_reported: None,
            resume,
        }
    }

    /// Rebuilds the sent messages awaiting status reports from what an
    /// earlier run (crashed or stopped) left SENT on this modem within
    /// [`TRACKED_AGE`] (read from the store by the engine), newest
    /// [`TRACKED_MAX`]. Their `gateway_ref` ("<reference>/<mr>.<mr>...")
    /// gives each part's MR. Which parts had already been reported
    /// delivered is not kept: a multi-part message whose reports straddle
    /// the restart waits for a part that already reported and stays SENT
    /// (a part that fails still ends it UNDELIVERED). Single-part messages
    /// resume fully.
    async fn resume(&mut self) {
        let rows = std::mem::take(&mut self.resume);
        if rows.is_empty() {
            return;
        }
        let now = crate::now_ms();
        let skip = rows.len().saturating_sub(TRACKED_MAX);
        let mut resumed = 0usize;
        for row in rows.into_iter().skip(skip) {
            let Some(parts) = parts_of_ref(&row.gateway_ref) else {
                continue;
            };
            if self
                .tracked
                .iter()
                .any(|t| t.gateway_ref == row.gateway_ref)
            {
                continue;
            }
            let age = Duration::from_millis(u64::try_from(now - row.sent_at).unwrap_or(0));
            self.tracked.push_back(Tracked {
                gateway_ref: row.gateway_ref,
                to_digits: digits(row.number.as_deref().unwrap_or("")),
                parts: parts.into_iter().map(|mr| (mr, false)).collect(),
                at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            });
            resumed += 1;
        }
        while self.tracked.len() > TRACKED_MAX {
            self.tracked.pop_front();
        }
        if resumed > 0 {
            tracing::info!(gateway = %self.name, port = 0u32, count = resumed, "waiting again for the status reports of messages sent before the restart");
        }
    }

    /// Opens, runs and reopens the port until `stop`.
    pub(crate) async fn run(
        mut self,
        mut requests: mpsc::Receiver<SendRequest>,
        stop: CancellationToken,
    ) {
        self.resume().await;
        let mut backoff = BACKOFF_MIN;
        loop {
            if stop.is_cancelled() {
                return;
            }
            let device = self.settings.device.clone();
            let baud = self.settings.baud;
            let opened = tokio::task::spawn_blocking(move || {
                tokio_serial::SerialStream::open(&tokio_serial::new(device.to_string_lossy(), baud))
            })
            .await;
            let why = match opened {
                Ok(Ok(port)) => {
                    if let Ok(mut i) = self.info.lock() {
                        i.sessions += 1;
                    }
                    let started = Instant::now();
                    let mut s = Session::new(port, &mut self);
                    let why = s.run(&mut requests, &stop).await;
                    if matches!(why, Broken::Stop) {
                        return;
                    }
                    // A session that ran a while earns a fresh backoff.
                    if started.elapsed() > Duration::from_secs(60) {
                        backoff = BACKOFF_MIN;
                    }
                    why.to_string()
                }
                Ok(Err(e)) => format!("cannot open {}: {e}", self.settings.device.display()),
                Err(e) => format!("cannot open {}: {e}", self.settings.device.display()),
            };
            tracing::warn!(gateway = %self.name, port = 0u32, reason = %why, retry_in_ms = backoff.as_millis() as u64, "modem unavailable; reopening");
            self.set_health(PortHealth {
                usable: false,
                reason: format!("modem unavailable: {why}"),
                ..Default::default()
            });
            // Sends that come while the port is down go elsewhere at once.
            let until = tokio::time::Instant::now() + backoff;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    r = requests.recv() => match r {
                        Some(r) => {
                            let _ = r.reply.send(Err(SendError::PortUnusable {
                                reason: format!("modem unavailable: {why}"),
                            }));
                        }
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn set_health(&mut self, h: PortHealth) {
        if let Ok(mut g) = self.health.lock() {
            *g = h.clone();
        }
        if self.last_reported.as_ref() != Some(&h) {
            if h.usable {
                tracing::info!(gateway = %self.name, port = 0u32, signal = ?h.signal, "modem usable");
            }
            let _ = self.events.send(Event::PortHealth {
                gateway: self.name.clone(),
                port: 0,
                health: h.clone(),
            });
            self.last_reported = Some(h);
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }
}

/// One open port.
struct Session<'m, T> {
    m: &'m mut Modem,
    reader: FramedRead<ReadHalf<T>, AtFramer>,
    writer: WriteHalf<T>,
    urcs: VecDeque<Urc>,
    garbage: u32,
    /// The storage `AT+CMGR`/`AT+CMGD` act on now (`AT+CPMS` first value).
    read_mem: Option<String>,
    /// Start-up must run (again): SIM was locked, or the modem rebooted.
    needs_setup: bool,
    /// List the SIM at the next poll (a store failed, or no CNMI).
    rescan: bool,
    no_cnmi: bool,
    sim_ready: bool,
    registered: Option<bool>,
    signal: Option<i32>,
    imsi: Option<String>,
    sim_reason: String,
}

impl<'m, T: AsyncRead + AsyncWrite + Send + 'static> Session<'m, T> {
    fn new(port: T, m: &'m mut Modem) -> Self {
        let (r, w) = tokio::io::split(port);
        Self {
            m,
            reader: FramedRead::new(r, AtFramer::new()),
            writer: w,
            urcs: VecDeque::new(),
            garbage: 0,
            read_mem: None,
            needs_setup: true,
            rescan: true,
            no_cnmi: false,
            sim_ready: false,
            registered: None,
            signal: None,
            imsi: None,
            sim_reason: String::new(),
        }
    }

    fn timeout(&self) -> Duration {
        self.m.settings.timeout
    }

    async fn run(
        &mut self,
        requests: &mut mpsc::Receiver<SendRequest>,
        stop: &CancellationToken,
    ) -> Broken {
        match self.run_inner(requests, stop).await {
            Ok(()) => Broken::Stop,
            Err(b) => b,
        }
    }

    async fn run_inner(
        &mut self,
        requests: &mut mpsc::Receiver<SendRequest>,
        stop: &CancellationToken,
    ) -> Result<(), Broken> {
        self.wake_up().await?;
        self.setup().await?;
        let mut poll = tokio::time::interval(self.m.settings.port_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            self.handle_urcs().await?;
            if self.needs_setup && self.sim_ready {
                self.setup().await?;
            }
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = requests.recv() => {
                    let Some(r) = r else { return Ok(()) };
                    self.serve_send(r).await?;
                }
                f = self.reader.next() => {
                    let f = frame_or_broken(f)?;
                    self.idle_frame(f)?;
                }
                _ = poll.tick() => {
                    self.poll().await?;
                }
            }
        }
    }

    /// ESC closes a prompt a crash left open (Telit); CR ends any partial
    /// line; then `AT` until the modem answers (SIM800 autobaud locks on the
    /// first `AT`).
    async fn wake_up(&mut self) -> Result<(), Broken> {
        self.write(&[ESC, b'\r']).await?;
        let t = self.timeout().min(Duration::from_secs(2));
        for _ in 0..5 {
            match self.command("AT", t).await {
                Ok(r) if r.result.is_some() => return Ok(()),
                Ok(_) | Err(Broken::Timeout(..)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Broken::NoAnswer)
    }

    /// The start-up sequence (at-modems.md §1.2).
    async fn setup(&mut self) -> Result<(), Broken> {
        let t = self.timeout();
        // Echo off; the codec drops echoes anyway.
        self.command("ATE0", t).await?;
        // Numeric +CME/+CMS errors; the codec also maps the words of
        // +CMEE=2 back to numbers.
        self.command("AT+CMEE=1", t).await?;
        if let Ok(r) = self.command("AT+CGMI", t).await {
            let v = r.lines.first().cloned();
            if let Ok(mut i) = self.m.info.lock() {
                i.manufacturer = v;
            }
        }
        if let Ok(r) = self.command("AT+CGMM", t).await {
            let v = r.lines.first().cloned();
            if let Ok(mut i) = self.m.info.lock() {
                i.model = v;
            }
        }
        self.check_sim().await?;
        if !self.sim_ready {
            self.publish_health();
            return Ok(());
        }
        self.check_network().await?;
        // PDU mode is required; a modem still booting refuses it (SIM800
        // before "SMS Ready"): try again at the next poll.
        let r = self.command("AT+CMGF=0", t).await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the modem refuses PDU mode (AT+CMGF=0); trying again later");
            self.needs_setup = true;
            self.sim_reason = "the modem refuses PDU mode".into();
            self.publish_health();
            return Ok(());
        }
        // Service 0: +CMT/+CDS need no AT+CNMA.
        self.command("AT+CSMS=0", t).await?;
        // Read, write and receive on the SIM when the modem allows it.
        let r = self.command("AT+CPMS=\"SM\",\"SM\",\"SM\"", t).await?;
        self.read_mem = r.ok().then(|| "SM".to_string());
        // New messages as +CMTI (stored, so nothing is lost if we are slow);
        // status reports directly as +CDS (ds=1; Quectel's +CDSI names the
        // wrong memory, asterisk-chan-quectel PR#75), else stored as +CDSI,
        // else none. With no CNMI at all, the SIM is listed at every poll.
        self.no_cnmi = true;
        for cnmi in ["2,1,0,1,0", "2,1,0,2,0", "2,1,0,0,0", "2,1"] {
            if self.command(&format!("AT+CNMI={cnmi}"), t).await?.ok() {
                self.no_cnmi = false;
                break;
            }
        }
        if self.no_cnmi {
            tracing::warn!(gateway = %self.m.name, port = 0u32, "the modem takes no AT+CNMI setting; received messages are found by polling");
        }
        if let Some(smsc) = self.m.settings.smsc.clone() {
            let toa = if smsc.starts_with('+') { 145 } else { 129 };
            let r = self
                .command(&format!("AT+CSCA=\"{smsc}\",{toa}"), t)
                .await?;
            if !r.ok() {
                tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the modem refused the configured SMSC");
            }
        }
        if let Ok(r) = self.command("AT+CIMI", t).await {
            self.imsi = r
                .lines
                .iter()
                .find(|l| l.chars().all(|c| c.is_ascii_digit()) && l.len() >= 6)
                .cloned();
        }
        self.needs_setup = false;
        self.sim_reason.clear();
        self.list_stored().await?;
        self.publish_health();
        Ok(())
    }

    async fn check_sim(&mut self) -> Result<(), Broken> {
        let t = self.timeout().max(Duration::from_secs(1));
        for attempt in 0..3 {
            let r = self.command_early("AT+CPIN?", t * 3, "+CPIN:").await?;
            let state = r
                .value("+CPIN:")
                .map(|v| v.trim_matches('"').to_ascii_uppercase());
            match (state.as_deref(), &r.result) {
                (Some("READY"), _) => {
                    self.sim_ready = true;
                    self.sim_reason.clear();
                    return Ok(());
                }
                (Some("SIM PIN"), _) => {
                    self.sim_ready = false;
                    let Some(pin) = self.m.settings.pin.clone() else {
                        self.sim_reason = "the SIM asks for a PIN and none is configured".into();
                        return Ok(());
                    };
                    if self.m.pin_refused {
                        self.sim_reason = "the SIM refused the configured PIN; it is not sent again until the config changes".into();
                        return Ok(());
                    }
                    tracing::info!(gateway = %self.m.name, port = 0u32, "sending the SIM PIN");
                    let cmd = format!("AT+CPIN=\"{}\"", pin.expose());
                    let r = self.command_secret(&cmd, t * 3).await?;
                    if !r.ok() {
                        // Never retry a PIN (TinyGSM #189): each try counts.
                        self.m.pin_refused = true;
                        tracing::error!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "the SIM refused the PIN; not sending it again");
                        self.sim_reason = "the SIM refused the configured PIN".into();
                        return Ok(());
                    }
                    // The SIM needs a moment after the PIN.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                (Some(other), _) => {
                    self.sim_ready = false;
                    self.sim_reason = format!("the SIM is locked ({other}); it needs a technician");
                    tracing::error!(gateway = %self.m.name, port = 0u32, state = %other, "SIM locked");
                    return Ok(());
                }
                (None, Some(FinalResult::Cme(c))) if c.code == Some(14) && attempt < 2 => {
                    // SIM busy: retry after a moment (python-gsmmodem #11).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                (None, Some(FinalResult::Cme(c))) => {
                    self.sim_ready = false;
                    self.sim_reason = match c.code {
                        Some(10) => "no SIM card".into(),
                        Some(13) | Some(15) => "SIM failure".into(),
                        _ => format!("the SIM cannot be read (+CME ERROR: {c})"),
                    };
                    return Ok(());
                }
                _ => {
                    self.sim_ready = false;
                    self.sim_reason = format!("the SIM state cannot be read ({})", r.result_text());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn check_network(&mut self) -> Result<(), Broken> {
        let t = self.timeout();
        let r = self.command("AT+CREG?", t).await?;
        self.registered = r
            .value("+CREG:")
            .and_then(creg_stat)
            .map(|s| s == 1 || s == 5);
        let r = self.command("AT+CSQ", t).await?;
        self.signal = r
            .value("+CSQ:")
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse::<i32>().ok())
            .filter(|v| *v != 99);
        let r = self.command("AT+COPS?", t).await?;
        let operator = r.value("+COPS:").and_then(|v| {
            v.split(',')
                .nth(2)
                .map(|o| o.trim().trim_matches('"').to_string())
        });
        let changed = self
            .m
            .info
            .lock()
            .map(|mut i| {
                let changed = i.operator != operator;
                i.operator = operator.clone();
                changed
            })
            .unwrap_or(false);
        if changed {
            tracing::info!(gateway = %self.m.name, port = 0u32, operator = ?operator, "operator");
        }
        Ok(())
    }

    fn publish_health(&mut self) {
        let (usable, reason) = if !self.sim_ready || !self.sim_reason.is_empty() {
            (false, self.sim_reason.clone())
        } else if self.registered == Some(false) {
            (false, "not registered on the network".to_string())
        } else {
            (true, String::new())
        };
        let h = PortHealth {
            usable,
            reason,
            sim: Some(self.sim_ready),
            imsi: self.imsi.clone(),
            number: None,
            registered: self.registered,
            signal: self.signal,
            operator: self.m.info.lock().ok().and_then(|i| i.operator.clone()),
        };
        self.m.set_health(h);
    }

    async fn poll(&mut self) -> Result<(), Broken> {
        self.check_sim().await?;
        if self.sim_ready {
            self.check_network().await?;
        }
        if self.sim_ready && self.needs_setup {
            self.setup().await?;
        }
        self.publish_health();
        self.expire_parts().await?;
        self.m.tracked.retain(|t| t.at.elapsed() < TRACKED_AGE);
        if self.sim_ready && !self.needs_setup && (self.rescan || self.no_cnmi) {
            self.list_stored().await?;
        }
        Ok(())
    }

    // ---- commands ----

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Broken> {
        let t = self.timeout();
        match tokio::time::timeout(t, async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Broken::Io(e.to_string())),
            Err(_) => Err(Broken::Timeout("a write".into(), t)),
        }
    }

    async fn next_frame(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<Frame, Broken> {
        match tokio::time::timeout_at(deadline, self.reader.next()).await {
            Ok(f) => {
                let f = frame_or_broken(f)?;
                if let Frame::Garbage(n) = f {
                    self.garbage += 1;
                    tracing::debug!(gateway = %self.m.name, port = 0u32, bytes = n, "garbage from the modem");
                    if self.garbage >= MAX_GARBAGE {
                        return Err(Broken::Garbage);
                    }
                } else {
                    self.garbage = 0;
                }
                Ok(f)
            }
            Err(_) => Err(Broken::Timeout(
                what.to_string(),
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )),
        }
    }

    async fn command(&mut self, cmd: &str, t: Duration) -> Result<Reply, Broken> {
        tracing::trace!(gateway = %self.m.name, port = 0u32, command = %cmd, "AT");
        self.exchange(cmd, t, None).await
    }

    /// A command carrying a secret: nothing of it is logged.
    async fn command_secret(&mut self, cmd: &str, t: Duration) -> Result<Reply, Broken> {
        self.exchange(cmd, t, None).await
    }

    /// Wavecom answers `AT+CPIN?` with no OK (python-gsmmodem fakemodems):
    /// once a line with `early` came, a short wait for the final result is
    /// enough.
    async fn command_early(
        &mut self,
        cmd: &str,
        t: Duration,
        early: &str,
    ) -> Result<Reply, Broken> {
        self.exchange(cmd, t, Some(early)).await
    }

    async fn exchange(
        &mut self,
        cmd: &str,
        t: Duration,
        early: Option<&str>,
    ) -> Result<Reply, Broken> {
        let mut line = cmd.as_bytes().to_vec();
        line.push(b'\r');
        self.write(&line).await?;
        let shown = if cmd.to_ascii_uppercase().starts_with("AT+CPIN=") {
            "AT+CPIN=<hidden>".to_string()
        } else {
            cmd.to_string()
        };
        let mut deadline = tokio::time::Instant::now() + t;
        let mut reply = Reply::default();
        loop {
            let f = match self.next_frame(deadline, &shown).await {
                Ok(f) => f,
                Err(Broken::Timeout(..)) if early.is_some_and(|p| reply.value(p).is_some()) => {
                    reply.result = Some(FinalResult::Ok);
                    return Ok(reply);
                }
                Err(Broken::Timeout(..)) => {
                    return Err(Broken::Timeout(shown, t));
                }
                Err(e) => return Err(e),
            };
            match f {
                Frame::Final(r) => {
                    reply.result = Some(r);
                    return Ok(reply);
                }
                Frame::Line(l) => {
                    if let Some(p) = early
                        && l.to_ascii_uppercase().starts_with(p)
                    {
                        deadline =
                            deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    reply.lines.push(l);
                }
                Frame::Record { header, pdu } => reply.records.push((header, pdu)),
                Frame::Urc(u) => self.urcs.push_back(u),
                Frame::Prompt => {
                    // A prompt we did not ask for: close it so the modem
                    // does not take our next command as PDU text.
                    self.write(&[ESC]).await?;
                }
                Frame::Echo(_) | Frame::Garbage(_) => {}
            }
        }
    }

    fn idle_frame(&mut self, f: Frame) -> Result<(), Broken> {
        match f {
            Frame::Urc(u) => self.urcs.push_back(u),
            Frame::Garbage(_) => {
                self.garbage += 1;
                if self.garbage >= MAX_GARBAGE {
                    return Err(Broken::Garbage);
                }
            }
            Frame::Line(l) => {
                // Unsolicited +CREG and the like: nothing to do.
                tracing::debug!(gateway = %self.m.name, port = 0u32, line = %l, "unsolicited line");
            }
            _ => {}
        }
        Ok(())
    }

    // ---- sending ----

    async fn serve_send(&mut self, r: SendRequest) -> Result<(), Broken> {
        if !self.sim_ready || self.needs_setup {
            let reason = if self.sim_reason.is_empty() {
                "the modem is not ready".to_string()
            } else {
                self.sim_reason.clone()
            };
            let _ = r.reply.send(Err(SendError::PortUnusable { reason }));
            return Ok(());
        }
        let (result, broken) = self.send(&r.msg).await;
        if let Ok(a) = &result {
            tracing::info!(gateway = %self.m.name, port = 0u32, message = r.msg.message_id, gateway_ref = %a.gateway_ref, "sent");
        }
        let _ = r.reply.send(result);
        match broken {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }

    /// Sends every part; the error (if any) and whether the port broke.
    async fn send(
        &mut self,
        msg: &super::Outbound,
    ) -> (Result<Accepted, SendError>, Option<Broken>) {
        let destination = match Address::parse(&msg.to) {
            Ok(a) => a,
            Err(e) => {
                return (
                    Err(SendError::Permanent {
                        reason: format!("the destination {:?} cannot be encoded: {e}", msg.to),
                    }),
                    None,
                );
            }
        };
        let options = SubmitOptions {
            // Derived from the attempt's persistent reference: a different
            // reference for consecutive messages, with no counter to keep.
            concat_reference: (msg.reference.rem_euclid(256)) as u16,
            // "00": the modem's SMSC (set with AT+CSCA when configured).
            service_centre: ServiceCentre::ModemDefault,
            ..SubmitOptions::default()
        };
        let pdus = match sms::encode_submit(&destination, &msg.text, &options) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Err(SendError::Permanent {
                        reason: format!("the text cannot be encoded: {e}"),
                    }),
                    None,
                );
            }
        };
        let total = pdus.len();
        let mut mrs: Vec<Option<u8>> = Vec::with_capacity(total);
        for (i, pdu) in pdus.iter().enumerate() {
            let left_before = i > 0;
            let unknown = |why: String| SendError::Unknown {
                reason: format!("part {} of {total}: {why}; earlier parts left", i + 1),
            };
            match self.send_part(pdu).await {
                PartOutcome::Sent(mr) => mrs.push(mr),
                PartOutcome::NotSent(result, broken) => {
                    let err = if left_before {
                        unknown(format!("the modem answered {result}"))
                    } else {
                        errors::send_error(&result)
                    };
                    if matches!(errors::classify(&result), errors::ErrorClass::OurBug) {
                        tracing::error!(gateway = %self.m.name, port = 0u32, message = msg.message_id, answer = %result, "the modem refused our PDU: a bug in smsgate's encoder");
                    }
                    if matches!(errors::classify(&result), errors::ErrorClass::PortUnusable) {
                        // Find out what is wrong before the next message.
                        self.needs_setup = true;
                        self.sim_reason = format!("the modem answered {result}");
                        self.publish_health();
                    }
                    return (Err(err), broken);
                }
                PartOutcome::NotSentBroken(b) => {
                    let err = if left_before {
                        unknown(b.to_string())
                    } else {
                        SendError::PortUnusable {
                            reason: format!(
                                "the modem failed before the message was handed over: {b}"
                            ),
                        }
                    };
                    return (Err(err), Some(b));
                }
                PartOutcome::MaybeSent(why, broken) => {
                    return (
                        Err(SendError::Unknown {
                            reason: format!("part {} of {total}: {why}", i + 1),
                        }),
                        broken,
                    );
                }
            }
        }
        let gateway_ref = format!(
            "{}/{}",
            msg.reference,
            mrs.iter()
                .map(|m| m.map_or_else(|| "?".to_string(), |m| m.to_string()))
                .collect::<Vec<_>>()
                .join(".")
        );
        if options.status_report_request {
            if self.m.tracked.len() >= TRACKED_MAX {
                self.m.tracked.pop_front();
            }
            self.m.tracked.push_back(Tracked {
                gateway_ref: gateway_ref.clone(),
                to_digits: digits(&msg.to),
                parts: mrs.iter().map(|m| (*m, false)).collect(),
                at: Instant::now(),
            });
        }
        (Ok(Accepted { gateway_ref }), None)
    }

    async fn send_part(&mut self, pdu: &sms::SubmitPdu) -> PartOutcome {
        if let Err(b) = self
            .write(format!("AT+CMGS={}\r", pdu.tpdu_length).as_bytes())
            .await
        {
            return PartOutcome::NotSentBroken(b);
        }
        // Up to the prompt nothing can have left.
        let deadline = tokio::time::Instant::now() + self.timeout().max(Duration::from_secs(1));
        loop {
            match self.next_frame(deadline, "AT+CMGS").await {
                Ok(Frame::Prompt) => break,
                // An OK before the prompt answers something older (an ESC
                // or a resync): not ours.
                Ok(Frame::Final(FinalResult::Ok)) => {}
                Ok(Frame::Final(r)) => return PartOutcome::NotSent(r, None),
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => {
                    // A stuck prompt: ESC abandons it (Telit, Quectel); then
                    // check that the modem still answers.
                    if let Err(b) = self.write(&[ESC]).await {
                        return PartOutcome::NotSentBroken(b);
                    }
                    let r = FinalResult::Error("no prompt for the PDU".into());
                    return match self.resync().await {
                        Ok(()) => PartOutcome::NotSent(r, None),
                        Err(b) => PartOutcome::NotSentBroken(b),
                    };
                }
                Err(b) => return PartOutcome::NotSentBroken(b),
            }
        }
        let mut body = pdu.hex.clone().into_bytes();
        body.push(CTRL_Z);
        if let Err(b) = self.write(&body).await {
            // Some bytes may have reached the modem, Ctrl-Z included.
            return PartOutcome::MaybeSent(
                format!("the port failed while the PDU was written: {b}"),
                Some(b),
            );
        }
        // From here the part may have left.
        let t = self.m.settings.send_timeout;
        let deadline = tokio::time::Instant::now() + t;
        let mut mr = None;
        loop {
            match self.next_frame(deadline, "+CMGS").await {
                Ok(Frame::Line(l)) => {
                    if let Some(v) = l.strip_prefix("+CMGS:") {
                        mr = v
                            .split(',')
                            .next()
                            .and_then(|v| v.trim().parse::<u8>().ok());
                    }
                }
                Ok(Frame::Final(FinalResult::Ok)) => return PartOutcome::Sent(mr),
                Ok(Frame::Final(r)) => return PartOutcome::NotSent(r, None),
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => {
                    // Never resend blindly: the network may have it. ESC and
                    // a resync leave the modem usable for the next message.
                    let why = format!("no +CMGS within {t:?}");
                    let broken = match self.write(&[ESC]).await {
                        Ok(()) => self.resync().await.err(),
                        Err(b) => Some(b),
                    };
                    return PartOutcome::MaybeSent(why, broken);
                }
                Err(b) => {
                    return PartOutcome::MaybeSent(
                        format!("the modem went away after the PDU: {b}"),
                        Some(b),
                    );
                }
            }
        }
    }

    /// After an abandoned exchange: `AT` until OK, so late answers of the
    /// old exchange are drained and the next command starts clean.
    async fn resync(&mut self) -> Result<(), Broken> {
        let t = self.timeout().min(Duration::from_secs(2));
        for _ in 0..3 {
            match self.command("AT", t).await {
                Ok(r) if r.ok() => {
                    // That OK may have answered the ESC; the AT's own comes
                    // next. Drain until the modem is quiet.
                    return self.drain_quiet(Duration::from_millis(300)).await;
                }
                Ok(_) | Err(Broken::Timeout(..)) => continue,
                Err(b) => return Err(b),
            }
        }
        Err(Broken::NoAnswer)
    }

    /// Reads until nothing came for `quiet`, keeping the URCs.
    async fn drain_quiet(&mut self, quiet: Duration) -> Result<(), Broken> {
        loop {
            let deadline = tokio::time::Instant::now() + quiet;
            match self.next_frame(deadline, "drain").await {
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => return Ok(()),
                Err(b) => return Err(b),
            }
        }
    }

    // ---- receiving ----

    async fn handle_urcs(&mut self) -> Result<(), Broken> {
        // Reading a message may bring more URCs; bounded so a flood of
        // vendor codes cannot keep us here.
        for _ in 0..256 {
            let Some(u) = self.urcs.pop_front() else {
                return Ok(());
            };
            match u {
                Urc::Cmti { mem, index } | Urc::Cdsi { mem, index } => {
                    self.read_slot(&mem, index).await?;
                }
                Urc::Cmt { length, pdu } => self.record(None, &pdu, length).await?,
                Urc::Cds { length, pdu } => {
                    if let Ok(d) = sms::decode_hex(&pdu, length)
                        && let Tpdu::StatusReport(r) = d.tpdu
                    {
                        self.status_report(&r);
                    } else {
                        tracing::warn!(gateway = %self.m.name, port = 0u32, pdu = %pdu, "a +CDS that is not a readable status report");
                    }
                }
                Urc::Boot(line) => {
                    tracing::warn!(gateway = %self.m.name, port = 0u32, line = %line, "the modem restarted; setting it up again");
                    self.needs_setup = true;
                    // PIN, CNMI and PDU mode are gone: re-check the SIM first.
                    self.check_sim().await?;
                    if self.sim_ready {
                        self.setup().await?;
                    } else {
                        self.publish_health();
                    }
                }
                Urc::Call(l) | Urc::Vendor(l) => {
                    tracing::debug!(gateway = %self.m.name, port = 0u32, line = %l, "unsolicited code ignored");
                }
            }
        }
        Ok(())
    }

    /// Makes `mem` the storage that CMGR/CMGD act on.
    async fn select_mem(&mut self, mem: &str) -> Result<bool, Broken> {
        if self.read_mem.as_deref() == Some(mem) || mem.is_empty() {
            return Ok(true);
        }
        let r = self
            .command(&format!("AT+CPMS=\"{mem}\""), self.timeout())
            .await?;
        if r.ok() {
            self.read_mem = Some(mem.to_string());
        }
        Ok(r.ok())
    }

    async fn read_slot(&mut self, mem: &str, index: u32) -> Result<(), Broken> {
        if !self.select_mem(mem).await? {
            tracing::warn!(gateway = %self.m.name, port = 0u32, mem = %mem, index, "cannot select the storage a message was announced in");
            self.rescan = true;
            return Ok(());
        }
        let r = self
            .command(&format!("AT+CMGR={index}"), self.timeout())
            .await?;
        // An empty slot: +CMS ERROR: 321, a bare OK, or a zero-length
        // record (at-modems.md §1.7).
        for (header, pdu) in r.records {
            if let Some(pdu) = pdu {
                let length = header.split_once(':').and_then(|(_, v)| last_int(v));
                self.record(Some((mem.to_string(), index)), &pdu, length)
                    .await?;
            }
        }
        Ok(())
    }

    /// `AT+CMGL=4`: everything stored (start-up, and after a failed store).
    async fn list_stored(&mut self) -> Result<(), Broken> {
        let t = self.timeout().max(Duration::from_secs(30));
        let r = self.command("AT+CMGL=4", t).await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "cannot list the stored messages");
            return Ok(());
        }
        self.rescan = false;
        let mem = self.read_mem.clone().unwrap_or_default();
        for (header, pdu) in r.records {
            let Some(pdu) = pdu else { continue };
            let (_, fields) = header.split_once(':').unwrap_or(("", ""));
            let index = fields
                .split(',')
                .next()
                .and_then(|i| i.trim().parse::<u32>().ok());
            let length = last_int(fields);
            let slot = index.map(|i| (mem.clone(), i));
            self.record(slot, &pdu, length).await?;
        }
        Ok(())
    }

    /// One stored or delivered PDU.
    async fn record(
        &mut self,
        slot: Option<(String, u32)>,
        pdu: &str,
        length: Option<usize>,
    ) -> Result<(), Broken> {
        let decoded = match sms::decode_hex(pdu, length) {
            Ok(d) => d,
            Err(e) => {
                // Kept on the SIM: deleting what we cannot read could lose a
                // message a later version reads.
                tracing::warn!(gateway = %self.m.name, port = 0u32, slot = ?slot, error = %e, "a stored message cannot be decoded; left on the SIM");
                return Ok(());
            }
        };
        match decoded.tpdu {
            Tpdu::Deliver(d) => self.deliver(slot, pdu, &d).await,
            Tpdu::StatusReport(r) => {
                self.status_report(&r);
                if let Some((mem, index)) = slot {
                    self.delete(&mem, index).await?;
                }
                Ok(())
            }
            // A message stored for sending (stat 2/3): not ours.
            Tpdu::Submit(_) => Ok(()),
        }
    }

    async fn deliver(
        &mut self,
        slot: Option<(String, u32)>,
        pdu: &str,
        d: &SmsDeliver,
    ) -> Result<(), Broken> {
        let part = Part {
            slot,
            pdu: pdu.trim().trim_matches('"').to_ascii_uppercase(),
        };
        let now = jiff::Timestamp::now();
        match d.user_data.concat() {
            None => {
                let text = d.user_data.body.text().unwrap_or_default();
                self.hand_over(d, text, vec![part]).await
            }
            Some(c) => {
                let key = ConcatKey {
                    sender: d.originator.to_string(),
                    reference: c.reference,
                    width: c.width,
                    total: c.total,
                };
                let entry = self.m.parts.entry(key.clone()).or_default();
                entry.entry(c.sequence).or_insert(part);
                match self.m.reassembler.push_deliver(d, now) {
                    Reassembly::Complete(a) => {
                        let parts: Vec<Part> = self
                            .m
                            .parts
                            .remove(&key)
                            .map(|p| p.into_values().collect())
                            .unwrap_or_default();
                        let text = a.text().unwrap_or_default();
                        self.hand_over(d, text, parts).await
                    }
                    Reassembly::Waiting { .. } | Reassembly::Duplicate => Ok(()),
                }
            }
        }
    }

    /// Parts that never completed are handed over as they are, so nothing
    /// stays on the SIM for ever.
    async fn expire_parts(&mut self) -> Result<(), Broken> {
        for inc in self.m.reassembler.expire(jiff::Timestamp::now()) {
            let parts: Vec<Part> = self
                .m
                .parts
                .remove(&inc.key)
                .map(|p| p.into_values().collect())
                .unwrap_or_default();
            let missing = inc.missing();
            tracing::warn!(gateway = %self.m.name, port = 0u32, sender = %inc.key.sender, missing = ?missing, "a multi-part message never completed; storing the parts that came");
            let text = inc.text().unwrap_or_default();
            let Some(first) = parts.first() else { continue };
            let Ok(decoded) = sms::decode_hex(&first.pdu, None) else {
                continue;
            };
            if let Tpdu::Deliver(d) = decoded.tpdu {
                self.hand_over(&d, text, parts).await?;
            }
        }
        Ok(())
    }

    /// Hands a whole message to the engine, waits until it is stored, then
    /// deletes its parts from the SIM.
    async fn hand_over(
        &mut self,
        d: &SmsDeliver,
        text: String,
        parts: Vec<Part>,
    ) -> Result<(), Broken> {
        let mut h = Md5::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b"|");
            }
            h.update(p.pdu.as_bytes());
        }
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let sender = d.originator.to_string();
        let message = Received {
            gateway: self.m.name.clone(),
            port: Some(0),
            source_key: format!("at:{key}"),
            number: sender.starts_with('+').then(|| sender.clone()),
            sender,
            recipient: None,
            text,
            sent_at: d.sc_timestamp.and_then(|t| t.to_rfc3339()),
        };
        let (ack, stored) = StoredAck::new();
        self.m.emit(Event::InboundAcked { message, ack });
        let stored = matches!(
            tokio::time::timeout(STORE_ACK_TIMEOUT, stored).await,
            Ok(Ok(true))
        );
        if !stored {
            // It stays on the SIM and is read again at the next poll.
            tracing::warn!(gateway = %self.m.name, port = 0u32, "a received message was not stored; kept on the SIM");
            self.rescan = true;
            return Ok(());
        }
        for p in parts {
            if let Some((mem, index)) = p.slot {
                self.delete(&mem, index).await?;
            }
        }
        Ok(())
    }

    async fn delete(&mut self, mem: &str, index: u32) -> Result<(), Broken> {
        if !self.select_mem(mem).await? {
            return Ok(());
        }
        let r = self
            .command(&format!("AT+CMGD={index}"), self.timeout())
            .await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, index, answer = %r.result_text(), "cannot delete a message from the SIM");
        }
        Ok(())
    }

    fn status_report(&mut self, r: &SmsStatusReport) {
        let outcome = r.outcome();
        let recipient = digits(&r.recipient.to_string());
        let found = self
            .m
            .tracked
            .iter_mut()
            .enumerate()
            .rev()
            .find_map(|(ti, t)| {
                if !same_number(&t.to_digits, &recipient) {
                    return None;
                }
                t.parts
                    .iter()
                    .position(|(mr, done)| *mr == Some(r.message_reference) && !done)
                    .map(|pi| (ti, pi))
            });
        let Some((ti, pi)) = found else {
            tracing::debug!(gateway = %self.m.name, port = 0u32, mr = r.message_reference, "status report for a message not sent since start; ignored");
            return;
        };
        let detail = sms::pdu::status_description(r.status).to_string();
        match outcome {
            // The service centre is still trying: another report follows.
            DeliveryOutcome::Temporary => {}
            DeliveryOutcome::Delivered => {
                let t = &mut self.m.tracked[ti];
                t.parts[pi].1 = true;
                if t.parts.iter().all(|(_, d)| *d) {
                    let gateway_ref = t.gateway_ref.clone();
                    self.m.tracked.remove(ti);
                    self.m.emit(Event::Delivered {
                        gateway: self.m.name.clone(),
                        gateway_ref,
                        delivered: true,
                        detail,
                    });
                }
            }
            DeliveryOutcome::Permanent => {
                let gateway_ref = self.m.tracked[ti].gateway_ref.clone();
                self.m.tracked.remove(ti);
                self.m.emit(Event::Delivered {
                    gateway: self.m.name.clone(),
                    gateway_ref,
                    delivered: false,
                    detail: format!("part {}: {detail} (TP-ST 0x{:02X})", pi + 1, r.status),
                });
            }
        }
    }
}

enum PartOutcome {
    Sent(Option<u8>),
    /// Refused before it left (an error before the prompt, or the network
    /// refused it after the PDU).
    NotSent(FinalResult, Option<Broken>),
    /// The port broke before the PDU was written.
    NotSentBroken(Broken),
    /// The PDU was written and no answer came.
    MaybeSent(String, Option<Broken>),
}

fn frame_or_broken(f: Option<Result<Frame, std::io::Error>>) -> Result<Frame, Broken> {
    match f {
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => Err(Broken::Io(e.to_string())),
        None => Err(Broken::Eof),
    }
}

/// The `<stat>` of a `+CREG:` line, solicited (`n,stat[,lac,ci[,act]]`) or
/// unsolicited (`stat[,lac,ci]`): the second field when it is a small
/// number, else the first (at-modems.md §1.5; gammu at-creg dumps).
pub fn creg_stat(v: &str) -> Option<u8> {
    let fields: Vec<&str> = v.split(',').map(str::trim).collect();
    let small = |s: &&str| s.parse::<u8>().ok().filter(|n| *n <= 11);
    if fields.len() >= 2
        && let Some(s) = small(&fields[1])
    {
        return Some(s);
    }
    fields.first().and_then(small)
}

/// The TP-MR of each part from a `gateway_ref` "<reference>/<mr>.<mr>..."
/// (`?` for a part the modem gave none); None when it is not one.
fn parts_of_ref(gateway_ref: &str) -> Option<Vec<Option<u8>>> {
    let (_, mrs) = gateway_ref.split_once('/')?;
    mrs.split('.')
        .map(|m| match m {
            "?" => Some(None),
            m => m.parse::<u8>().ok().map(Some),
        })
        .collect()
}

fn digits(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_digit()).collect()
}

/// A report may give the recipient in national form while we sent to the
/// international one (oFono test_sr_assembly): compare the last 8 digits.
fn same_number(a: &str, b: &str) -> bool {
    if a.is_empty() || b.is_empty() {
        return true;
    }
    let n = a.len().min(b.len()).min(8);
    a[a.len() - n..] == b[b.len() - n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_mrs_come_back_from_the_gateway_ref() {
        assert_eq!(parts_of_ref("42/17"), Some(vec![Some(17)]));
        assert_eq!(
            parts_of_ref("42/17.?.255"),
            Some(vec![Some(17), None, Some(255)])
        );
        assert_eq!(parts_of_ref("42"), None);
        assert_eq!(parts_of_ref("42/256"), None);
        assert_eq!(parts_of_ref("42/x"), None);
    }

    #[test]
    fn creg_forms() {
        assert_eq!(creg_stat("0,1"), Some(1));
        assert_eq!(creg_stat("2,1,\"5E25\",\"605F\""), Some(1));
        assert_eq!(creg_stat("2,1,4CA,81DE445"), Some(1));
        assert_eq!(creg_stat("5,\"5E25\",\"605F\""), Some(5));
        assert_eq!(creg_stat("1"), Some(1));
        assert_eq!(creg_stat("0,3"), Some(3));
        assert_eq!(creg_stat(""), None);
    }

    #[test]
    fn numbers_match_national_and_international() {
        assert!(same_number("4915259911630", "9911630"));
        assert!(!same_number("59899123456", "59899123457"));
    }
}
