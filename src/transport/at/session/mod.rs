//! The modem's task: open, start, send, receive, poll, reopen.
//!
//! This file holds the modem's long-lived state, the reopen loop and the
//! session's main loop (poll, URC dispatch); the session's parts are
//! children, each an `impl Session` block over the fields defined here:
//! `commands` (one AT exchange), `start` (the start-up sequence and
//! health checks), `send` and `receive`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::framing::{AtFramer, FinalResult, Frame, Urc, last_int};
use super::{ModemInfo, SendRequest};
use crate::config::AtSettings;
use crate::transport::{Awaiting, Event, Events, PortHealth, SendError};
use smsgate_proto::sms::{self, ConcatKey, Reassembler, Tpdu};

mod commands;
mod receive;
mod send;
mod start;

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
/// Sent messages a part's failure settled, remembered this long after and
/// at most this many (the oldest forgotten first), so the reports of their
/// other parts, coming later, are still matched and noted in the message's
/// history.
const SETTLED_MAX: usize = 1024;
const SETTLED_AGE: Duration = Duration::from_secs(24 * 3600);
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
        line_value(&self.lines, prefix)
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
    /// Tracked messages a part's failure settled, with when, newest last
    /// (within [`SETTLED_AGE`] and [`SETTLED_MAX`]).
    settled: VecDeque<(Instant, Tracked)>,
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
    /// Per part: its MR and whether its report said delivered (once
    /// settled: whether a final report came for it).
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
            settled: VecDeque::new(),
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

    /// Keeps a tracked message a part's failure has settled, for the
    /// reports still to come of its other parts.
    fn settle(&mut self, t: Tracked) {
        if self.settled.len() >= SETTLED_MAX {
            self.settled.pop_front();
        }
        self.settled.push_back((Instant::now(), t));
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
        while self
            .m
            .settled
            .front()
            .is_some_and(|(at, _)| at.elapsed() >= SETTLED_AGE)
        {
            self.m.settled.pop_front();
        }
        if self.sim_ready && !self.needs_setup && (self.rescan || self.no_cnmi) {
            self.list_stored().await?;
        }
        Ok(())
    }

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

/// The first of a reply's information `lines` that starts with `prefix`
/// (any case), without the prefix and trimmed: `+CSQ: 17,99` gives
/// `17,99` for `+CSQ:`.
pub fn line_value<'a>(lines: &'a [String], prefix: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        l.get(..prefix.len())
            .filter(|h| h.eq_ignore_ascii_case(prefix))
            .map(|_| l[prefix.len()..].trim())
    })
}

/// The RSSI of a `+CSQ:` value (`<rssi>,<ber>`); None when the modem does
/// not know it (99) or the value is not a number.
pub fn csq_rssi(v: &str) -> Option<i32> {
    v.split(',')
        .next()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|v| *v != 99)
}

/// The operator of a `+COPS:` value (`<mode>,<format>,"<operator>"[,<act>]`),
/// without its quotes; None when the modem names none.
pub fn cops_operator(v: &str) -> Option<String> {
    v.split(',')
        .nth(2)
        .map(|o| o.trim().trim_matches('"').to_string())
}

/// The TP-MR of a `+CMGS:` value (`<mr>[,<scts>]`), the reference the
/// part's status report will carry.
pub fn cmgs_reference(v: &str) -> Option<u8> {
    v.split(',')
        .next()
        .and_then(|v| v.trim().parse::<u8>().ok())
}

/// The slot index (the first field, as `+CMGL:` gives it) and the TPDU
/// length (the last integer) of a `+CMGR:` or `+CMGL:` record header.
pub fn record_header(header: &str) -> (Option<u32>, Option<usize>) {
    let Some((_, fields)) = header.split_once(':') else {
        return (None, None);
    };
    let index = fields
        .split(',')
        .next()
        .and_then(|i| i.trim().parse::<u32>().ok());
    (index, last_int(fields))
}

/// The TP-MR of each part from a `gateway_ref` "<reference>/<mr>.<mr>..."
/// (`?` for a part the modem gave none); None when it is not one.
pub fn parts_of_ref(gateway_ref: &str) -> Option<Vec<Option<u8>>> {
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
    fn reply_values() {
        let lines = vec!["+csq: 17,99".to_string(), "+CSQ: 3,0".to_string()];
        assert_eq!(line_value(&lines, "+CSQ:"), Some("17,99"));
        assert_eq!(line_value(&lines, "+COPS:"), None);
        assert_eq!(csq_rssi("17,99"), Some(17));
        assert_eq!(csq_rssi("99,99"), None);
        assert_eq!(csq_rssi("x"), None);
        assert_eq!(cops_operator("0,0,\"Antel\",7").as_deref(), Some("Antel"));
        assert_eq!(cops_operator("0"), None);
        assert_eq!(cmgs_reference(" 17"), Some(17));
        assert_eq!(cmgs_reference(" 256"), None);
        assert_eq!(cmgs_reference(" 5,\"26/12/07\""), Some(5));
        assert_eq!(record_header("+CMGR: 0,,24"), (Some(0), Some(24)));
        assert_eq!(record_header("+CMGL: 3,1,,156"), (Some(3), Some(156)));
        assert_eq!(record_header("+CMGL"), (None, None));
    }

    #[test]
    fn numbers_match_national_and_international() {
        assert!(same_number("4915259911630", "9911630"));
        assert!(!same_number("59899123456", "59899123457"));
    }
}
