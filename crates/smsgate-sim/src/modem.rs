//! A fake GSM modem on a pseudo-terminal: a client (smsgate's `at`
//! transport, or gammu) opens the pty's slave path as it would a serial
//! port and talks AT to it.
//!
//! It answers like real modems do (at-modems.md §1): `\r\n<line>\r\n`
//! framing, echo until `ATE0`, the `\r\n> ` prompt with no line end, PDU
//! mode sends checked against `<length>` and decoded with smsgate's codec,
//! SIM storage with `+CMTI`/`AT+CMGR`/`AT+CMGL`/`AT+CMGD`, status reports as
//! `+CDS` or `+CDSI`, and the identification commands gammu uses. Tests
//! script faults through [`Faults`]: replies delayed, URCs in the middle of
//! a reply, `+CMS ERROR`s, a prompt that never comes, silence, garbage,
//! unplugging (the pty goes away; a new one appears at the same stable
//! path, as `/dev/serial/by-id/...` does on re-plug) and vendor quirks.
//!
//! Everything runs on one plain thread, so the fake serves async tests and
//! the `smsgate-sim modem` command alike.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smsgate_proto::sms::{
    self, Address, Body, Concat, DataCoding, RefWidth, ScTimestamp, SmsDeliver, SmsStatusReport,
    Tpdu, UserData, UserDataHeader,
};

const CTRL_Z: u8 = 0x1A;
const ESC: u8 = 0x1B;

/// Scripted misbehaviour. Counters count down as they fire.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Wait this long before each answer.
    pub delay: Duration,
    /// The next sends are refused with these `+CMS ERROR` codes, after the
    /// PDU (as the network would), one per `AT+CMGS`.
    pub cmgs_errors: VecDeque<u16>,
    /// This many sends pass before `cmgs_errors` apply (to fail a later
    /// part of a multi-part message).
    pub cmgs_skip: u32,
    /// Sent between the prompt and `+CMGS` (ZTE and Quectel do this).
    pub urc_in_cmgs: Option<String>,
    /// Sent before the prompt.
    pub urc_before_prompt: Option<String>,
    /// This many `AT+CMGS` get no prompt at all (until ESC).
    pub stuck_prompts: u32,
    /// Answer nothing, read everything.
    pub silent: bool,
    /// Unplug when the Nth PDU from now arrives (1 = the next one), without
    /// answering it: the client cannot know whether it left.
    pub unplug_on_pdu: Option<u32>,
    /// Unplug when the Nth `AT+CMGS=` from now arrives, before the prompt.
    pub unplug_on_cmgs: Option<u32>,
    /// How long the modem stays unplugged.
    pub replug_after: Duration,
    /// Answer every command with binary noise.
    pub garbage: bool,
    /// This many `AT+CMGS` get their `>` prompt, then the modem stops
    /// answering (as `silent`, until the test clears it): the PDU that
    /// follows is read and dropped, never sent.
    pub silent_after_prompt: u32,
    /// This many PDUs are taken (recorded in `sent`: they may have left),
    /// then the modem stops answering (as `silent`) before its `+CMGS`.
    pub silent_after_pdu: u32,
}

/// Vendor behaviour (at-modems.md §1.9).
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    /// Wavecom: `+CPIN: READY` with no OK after it.
    pub cpin_no_ok: bool,
    /// Huawei E1752: lines end in `\r\r\n`; unknown commands get
    /// `COMMAND NOT SUPPORT`.
    pub huawei: bool,
    /// A `^RSSI:n` before every answer (Huawei's periodic signal URC).
    pub rssi_flood: bool,
    /// Refuses `AT+CNMI` with ds=1 (SIMCom A7670X, many Qualcomm parts).
    pub no_cnmi_ds1: bool,
}

/// One PDU the fake was given with `AT+CMGS`.
#[derive(Debug, Clone)]
pub struct SentPdu {
    /// When the PDU arrived, for pacing checks.
    pub at: Instant,
    pub hex: String,
    pub length: usize,
    pub mr: u8,
    pub submit: Option<sms::SmsSubmit>,
}

#[derive(Debug, Clone)]
struct Stored {
    /// 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT.
    stat: u8,
    hex: String,
    length: usize,
}

/// What the fake knows; tests read and change it through
/// [`FakeModem::state`].
#[derive(Debug)]
pub struct ModemState {
    pub faults: Faults,
    pub quirks: Quirks,
    pub echo: bool,
    pub cmee: u8,
    pub pdu_mode: bool,
    /// `AT+CNMI` values: mode, mt, bm, ds, bfr.
    pub cnmi: [u8; 5],
    /// The SIM's PIN; `None` means no PIN asked.
    pub sim_pin: Option<String>,
    pub pin_entered: bool,
    pub pin_attempts: u32,
    pub sim_present: bool,
    /// `+CREG` stat: 1 home, 5 roaming, 2 searching, 3 denied, 0 not.
    pub registration: u8,
    pub rssi: u8,
    pub operator: String,
    pub smsc: String,
    pub capacity: u32,
    /// The storage CMGR/CMGL/CMGD act on (`AT+CPMS` first value). Only the
    /// SIM ("SM", and "MT"/"SR" which include it) holds messages; the
    /// phone memory "ME" is empty, as on a modem with no flash storage.
    pub mem: String,
    storage: BTreeMap<u32, Stored>,
    next_mr: u8,
    /// Every PDU accepted or refused, in order.
    pub sent: Vec<SentPdu>,
    /// Every command line received (PINs included: tests check them).
    pub commands: Vec<String>,
    /// Status to report for each sent part that asked for a report, after
    /// `report_delay`; `None` sends none.
    pub auto_report: Option<u8>,
    /// Statuses for the next status reports, one per part sent that asked
    /// for one, in order, before `auto_report` applies again (a multi-part
    /// message whose second part fails: `[0x00, 0x41]`).
    pub report_script: VecDeque<u8>,
    pub report_delay: Duration,
    /// New messages go straight to the client as `+CMT` with the PDU
    /// (never stored on the SIM), whatever `AT+CNMI` asked: a modem whose
    /// firmware routes them so. Otherwise they follow `AT+CNMI` (`+CMTI`
    /// after storing them when mt=1, `+CMT` when mt=2 or 3).
    pub deliver_direct: bool,
    pending_reports: Vec<(Instant, SmsStatusReport)>,
    /// Times the modem was unplugged.
    pub unplugs: u32,
}

impl Default for ModemState {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            quirks: Quirks::default(),
            echo: true,
            cmee: 0,
            pdu_mode: true,
            cnmi: [1, 0, 0, 0, 0],
            sim_pin: None,
            pin_entered: false,
            pin_attempts: 0,
            sim_present: true,
            registration: 1,
            rssi: 21,
            operator: "Fake Telecom".into(),
            smsc: "+59899000000".into(),
            capacity: 30,
            mem: "SM".into(),
            storage: BTreeMap::new(),
            next_mr: 1,
            sent: Vec::new(),
            commands: Vec::new(),
            auto_report: Some(0),
            report_script: VecDeque::new(),
            report_delay: Duration::from_millis(100),
            deliver_direct: false,
            pending_reports: Vec::new(),
            unplugs: 0,
        }
    }
}

impl ModemState {
    /// The submits recorded, decoded.
    pub fn submits(&self) -> Vec<sms::SmsSubmit> {
        self.sent.iter().filter_map(|s| s.submit.clone()).collect()
    }

    /// Indices of the messages on the SIM.
    pub fn stored(&self) -> Vec<u32> {
        self.storage.keys().copied().collect()
    }
}

struct Pty {
    master: File,
    /// Kept open so the pty stays up while clients come and go.
    _slave: OwnedFd,
    path: PathBuf,
}

struct Shared {
    state: Mutex<ModemState>,
    pty: Mutex<Option<Pty>>,
    link: PathBuf,
    stop: AtomicBool,
    replug_at: Mutex<Option<Instant>>,
}

/// A running fake modem. Dropping it stops it and removes the pty.
pub struct FakeModem {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FakeModemError {
    #[error("cannot make a pseudo-terminal: {0}")]
    Pty(String),
    #[error("a schedule needs at least one sender, one text and an interval over 0")]
    Schedule,
    #[error("cannot make the link {path}: {error}")]
    Link {
        path: PathBuf,
        error: std::io::Error,
    },
}

fn lock(m: &Mutex<ModemState>) -> MutexGuard<'_, ModemState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_pty() -> Result<Pty, FakeModemError> {
    use nix::sys::termios;
    let p = nix::pty::openpty(None, None).map_err(|e| FakeModemError::Pty(e.to_string()))?;
    // Raw from the start: a fresh pty echoes and cooks lines, which a
    // modem never does.
    let mut t =
        termios::tcgetattr(p.slave.as_fd()).map_err(|e| FakeModemError::Pty(e.to_string()))?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(p.slave.as_fd(), termios::SetArg::TCSANOW, &t)
        .map_err(|e| FakeModemError::Pty(e.to_string()))?;
    let path =
        nix::unistd::ttyname(p.slave.as_fd()).map_err(|e| FakeModemError::Pty(e.to_string()))?;
    Ok(Pty {
        master: File::from(p.master),
        _slave: p.slave,
        path,
    })
}

/// Points `link` at `target` atomically (a new symlink renamed over it).
fn relink(link: &Path, target: &Path) -> Result<(), FakeModemError> {
    let tmp = link.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .and_then(|()| std::fs::rename(&tmp, link))
        .map_err(|error| FakeModemError::Link {
            path: link.to_path_buf(),
            error,
        })
}

impl FakeModem {
    /// Starts a fake modem whose stable path is the symlink `link` (like
    /// `/dev/serial/by-id/...`), pointing at the current pty.
    pub fn start(link: &Path, state: ModemState) -> Result<Self, FakeModemError> {
        let pty = open_pty()?;
        relink(link, &pty.path)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            pty: Mutex::new(Some(pty)),
            link: link.to_path_buf(),
            stop: AtomicBool::new(false),
            replug_at: Mutex::new(None),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("fake-modem".into())
            .spawn(move || run(s))
            .map_err(|e| FakeModemError::Pty(e.to_string()))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The stable path clients open.
    pub fn path(&self) -> &Path {
        &self.shared.link
    }

    /// The pty behind it now (changes on re-plug), if plugged.
    pub fn tty(&self) -> Option<PathBuf> {
        self.shared
            .pty
            .lock()
            .ok()
            .and_then(|p| p.as_ref().map(|p| p.path.clone()))
    }

    pub fn state(&self) -> MutexGuard<'_, ModemState> {
        lock(&self.shared.state)
    }

    /// Takes the modem away now; it comes back after `replug_after`
    /// (`None`: stays away until [`FakeModem::replug`]).
    pub fn unplug(&self, replug_after: Option<Duration>) {
        unplug(&self.shared, replug_after);
    }

    pub fn replug(&self) -> Result<(), FakeModemError> {
        replug(&self.shared)
    }

    /// A received SMS from `from`: stored on the SIM and announced as the
    /// client's `AT+CNMI` asks (+CMTI, or +CMT with the PDU; always +CMT
    /// with [`ModemState::deliver_direct`]). Multi-part (concatenated PDUs
    /// with the 8-bit reference `concat_ref`) when the text needs it;
    /// returns the PDUs.
    pub fn receive(&self, from: &str, text: &str, concat_ref: u8) -> Vec<String> {
        let pdus = deliver_pdus(from, text, concat_ref);
        for p in &pdus {
            self.receive_pdu(p);
        }
        pdus
    }

    /// A received PDU (SCA included) put on the SIM with no announcement,
    /// as if it came while no client listened; its index.
    pub fn store_pdu(&self, hex: &str) -> Option<u32> {
        let bytes = sms::pdu::parse_hex(hex).unwrap_or_default();
        let sca = bytes.first().map_or(0, |n| usize::from(*n) + 1);
        store(&mut self.state(), 0, hex, bytes.len().saturating_sub(sca))
    }

    /// A received PDU (SCA included), stored and announced (or handed
    /// over directly as `+CMT`, see [`ModemState::deliver_direct`]).
    pub fn receive_pdu(&self, hex: &str) {
        receive_pdu(&self.shared, hex);
    }

    /// Customers writing in on a schedule: every `every`, the next sender
    /// (cycled) sends the next text (cycled), multi-part when it is long,
    /// `count` times or until the modem is dropped. The first comes after
    /// one interval. Runs on a thread of its own.
    pub fn receive_every(&self, s: ReceiveSchedule) -> Result<(), FakeModemError> {
        if s.from.is_empty() || s.texts.is_empty() || s.every.is_zero() {
            return Err(FakeModemError::Schedule);
        }
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("fake-modem-customers".into())
            .spawn(move || {
                let mut n: usize = 0;
                let mut next = Instant::now() + s.every;
                while s.count.is_none_or(|c| (n as u64) < c) {
                    while Instant::now() < next {
                        if shared.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(20).min(s.every));
                    }
                    next += s.every;
                    let from = &s.from[n % s.from.len()];
                    let text = &s.texts[n % s.texts.len()];
                    // A fresh concatenation reference for each message, as
                    // a sender's phone picks one.
                    let reference = s.first_ref.wrapping_add(n as u8);
                    n += 1;
                    for p in deliver_pdus(from, text, reference) {
                        receive_pdu(&shared, &p);
                    }
                }
            })
            .map(|_| ())
            .map_err(|e| FakeModemError::Pty(e.to_string()))
    }

    /// Writes an unsolicited line now.
    pub fn urc(&self, line: &str) {
        let crlf = lock(&self.shared.state).quirks.huawei;
        write_raw(&self.shared, frame_line(line, crlf).as_bytes());
    }

    /// Writes raw bytes now.
    pub fn write_raw(&self, bytes: &[u8]) {
        write_raw(&self.shared, bytes);
    }
}

/// Customers writing in to a fake modem, see [`FakeModem::receive_every`].
#[derive(Debug, Clone)]
pub struct ReceiveSchedule {
    pub every: Duration,
    pub from: Vec<String>,
    pub texts: Vec<String>,
    /// How many messages in all; `None`: no end.
    pub count: Option<u64>,
    /// The concatenation reference of the first message (then one more
    /// for each).
    pub first_ref: u8,
}

fn receive_pdu(shared: &Shared, hex: &str) {
    let mut st = lock(&shared.state);
    let bytes = sms::pdu::parse_hex(hex).unwrap_or_default();
    let sca = bytes.first().map_or(0, |n| usize::from(*n) + 1);
    let length = bytes.len().saturating_sub(sca);
    let mt = if st.deliver_direct { 2 } else { st.cnmi[1] };
    let urc = match mt {
        2 | 3 => format!("+CMT: ,{length}\r\n{hex}"),
        mt => match store(&mut st, 0, hex, length) {
            Some(i) if mt == 1 => format!("+CMTI: \"SM\",{i}"),
            _ => return,
        },
    };
    let crlf = st.quirks.huawei;
    drop(st);
    write_raw(shared, frame_line(&urc, crlf).as_bytes());
}

impl Drop for FakeModem {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.shared.link);
    }
}

fn unplug(shared: &Shared, replug_after: Option<Duration>) {
    if let Ok(mut p) = shared.pty.lock() {
        *p = None;
    }
    lock(&shared.state).unplugs += 1;
    if let Ok(mut r) = shared.replug_at.lock() {
        *r = replug_after.map(|d| Instant::now() + d);
    }
}

fn replug(shared: &Shared) -> Result<(), FakeModemError> {
    let pty = open_pty()?;
    relink(&shared.link, &pty.path)?;
    if let Ok(mut p) = shared.pty.lock() {
        *p = Some(pty);
    }
    if let Ok(mut r) = shared.replug_at.lock() {
        *r = None;
    }
    let mut st = lock(&shared.state);
    // A re-plugged modem has rebooted: factory echo, no CNMI.
    st.echo = true;
    st.cnmi = [1, 0, 0, 0, 0];
    st.pin_entered = false;
    Ok(())
}

fn write_raw(shared: &Shared, bytes: &[u8]) {
    if let Ok(mut p) = shared.pty.lock()
        && let Some(pty) = p.as_mut()
    {
        let _ = pty.master.write_all(bytes);
        let _ = pty.master.flush();
    }
}

fn frame_line(line: &str, huawei: bool) -> String {
    if huawei {
        format!("\r\r\n{line}\r\r\n")
    } else {
        format!("\r\n{line}\r\n")
    }
}

fn store(st: &mut ModemState, stat: u8, hex: &str, length: usize) -> Option<u32> {
    let free = (1..=st.capacity).find(|i| !st.storage.contains_key(i))?;
    st.storage.insert(
        free,
        Stored {
            stat,
            hex: hex.to_string(),
            length,
        },
    );
    Some(free)
}

/// SMS-DELIVER PDUs (with an SCA) carrying `text` from `from`.
pub fn deliver_pdus(from: &str, text: &str, concat_ref: u8) -> Vec<String> {
    let plan = sms::plan(text);
    let originator = Address::parse(from)
        .or_else(|_| Address::alphanumeric(from))
        .unwrap_or(Address {
            kind: sms::AddressKind::Unknown,
            type_of_address: 0x81,
            value: String::new(),
        });
    let coding = DataCoding::for_encoding(plan.encoding);
    let total = plan.segments as u8;
    let mut sca = Vec::new();
    let _ =
        Address::parse("+59899000000").map(|a| Address::write_service_centre(Some(&a), &mut sca));
    plan.part_texts(text)
        .enumerate()
        .filter_map(|(i, part)| {
            let header = (total > 1).then(|| {
                UserDataHeader::for_concat(Concat {
                    reference: u16::from(concat_ref),
                    width: RefWidth::Bits8,
                    total,
                    sequence: i as u8 + 1,
                })
            });
            let body = match plan.encoding {
                sms::Encoding::Gsm7 => Body::Gsm7(part.to_string()),
                sms::Encoding::Ucs2 => Body::Ucs2(sms::ucs2::to_units(part)),
            };
            let tpdu = sms::encode_tpdu(&Tpdu::Deliver(SmsDeliver {
                more_messages_waiting: false,
                loop_prevention: false,
                status_report_indication: false,
                reply_path: false,
                originator: originator.clone(),
                protocol_id: 0,
                data_coding: coding,
                sc_timestamp: Some(now_stamp()),
                user_data: UserData { header, body },
            }))
            .ok()?;
            let mut bytes = sca.clone();
            bytes.extend(tpdu);
            Some(sms::pdu::to_hex(&bytes))
        })
        .collect()
}

fn now_stamp() -> ScTimestamp {
    let now = jiff::tz::TimeZone::UTC.to_datetime(jiff::Timestamp::now());
    ScTimestamp {
        year: now.year() as u16,
        month: now.month() as u8,
        day: now.day() as u8,
        hour: now.hour() as u8,
        minute: now.minute() as u8,
        second: now.second() as u8,
        tz_quarters: 0,
    }
}

/// Input state: commands, or the PDU after a prompt.
enum Input {
    Command,
    Pdu { length: usize, text_mode: bool },
}

fn run(shared: Arc<Shared>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut input = Input::Command;
    while !shared.stop.load(Ordering::SeqCst) {
        // Re-plug when due.
        let due = shared
            .replug_at
            .lock()
            .ok()
            .and_then(|r| *r)
            .is_some_and(|t| Instant::now() >= t);
        if due {
            let _ = replug(&shared);
            buf.clear();
            input = Input::Command;
        }
        send_due_reports(&shared);
        let master = match shared.pty.lock() {
            Ok(p) => p.as_ref().and_then(|p| p.master.try_clone().ok()),
            Err(_) => None,
        };
        let Some(mut master) = master else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let readable = {
            let mut fds = [nix::poll::PollFd::new(
                master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(20u8)), Ok(n) if n > 0)
                && fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN))
        };
        if !readable {
            continue;
        }
        let mut chunk = [0u8; 1024];
        let n = match master.read(&mut chunk) {
            Ok(0) | Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            match input {
                Input::Command => {
                    let Some(end) = buf.iter().position(|b| *b == b'\r' || *b == b'\n') else {
                        // ESC on its own (closing a prompt we never gave).
                        buf.retain(|b| *b != ESC);
                        break;
                    };
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line[..line.len() - 1])
                        .trim_matches(|c: char| c == ESC as char || c.is_whitespace())
                        .to_string();
                    if line.is_empty() {
                        continue;
                    }
                    if let Some(next) = command(&shared, &line) {
                        input = next;
                    }
                }
                Input::Pdu { length, text_mode } => {
                    let Some(end) = buf.iter().position(|b| *b == CTRL_Z || *b == ESC) else {
                        break;
                    };
                    let body: Vec<u8> = buf.drain(..=end).collect();
                    input = Input::Command;
                    if body[end] == ESC {
                        // Abandoned: OK, nothing sent (Telit, Quectel).
                        if !lock(&shared.state).faults.silent {
                            reply(&shared, &[], "OK");
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&body[..end]).trim().to_string();
                    pdu(&shared, &text, length, text_mode);
                }
            }
        }
    }
}

fn send_due_reports(shared: &Shared) {
    let mut st = lock(&shared.state);
    if st.pending_reports.is_empty() {
        return;
    }
    let now = Instant::now();
    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.pending_reports)
        .into_iter()
        .partition(|(t, _)| *t <= now);
    st.pending_reports = later;
    let huawei = st.quirks.huawei;
    let mut out = String::new();
    for (_, r) in due {
        let Ok(tpdu) = sms::encode_tpdu(&Tpdu::StatusReport(r)) else {
            continue;
        };
        let hex = format!("00{}", sms::pdu::to_hex(&tpdu));
        match st.cnmi[3] {
            1 => out.push_str(&frame_line(
                &format!("+CDS: {}\r\n{hex}", tpdu.len()),
                huawei,
            )),
            2 => {
                if let Some(i) = store(&mut st, 0, &hex, tpdu.len()) {
                    out.push_str(&frame_line(&format!("+CDSI: \"SM\",{i}"), huawei));
                }
            }
            _ => {}
        }
    }
    drop(st);
    write_raw(shared, out.as_bytes());
}

/// Writes `lines` then the final result, framed, after the scripted delay.
fn reply(shared: &Shared, lines: &[String], last: &str) {
    let (delay, huawei, flood, rssi) = {
        let st = lock(&shared.state);
        (
            st.faults.delay,
            st.quirks.huawei,
            st.quirks.rssi_flood,
            st.rssi,
        )
    };
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    let mut out = String::new();
    if flood {
        out.push_str(&frame_line(&format!("^RSSI:{rssi}"), huawei));
    }
    for l in lines {
        out.push_str(&frame_line(l, huawei));
    }
    if !last.is_empty() {
        out.push_str(&frame_line(last, huawei));
    }
    write_raw(shared, out.as_bytes());
}

fn error(st: &ModemState, cme: bool, code: u16) -> String {
    match (st.cmee, cme) {
        (0, _) => "ERROR".into(),
        (_, true) => format!("+CME ERROR: {code}"),
        (_, false) => format!("+CMS ERROR: {code}"),
    }
}

/// One command line; returns the next input state when it changes.
fn command(shared: &Shared, line: &str) -> Option<Input> {
    let mut st = lock(&shared.state);
    st.commands.push(line.to_string());
    if st.faults.silent {
        return None;
    }
    if st.faults.garbage {
        drop(st);
        write_raw(
            shared,
            &[0x00, 0xFF, 0x13, 0x00, 0x07, b'\r', 0x00, 0xFE, 0x01, b'\r'],
        );
        return None;
    }
    if st.echo {
        let echo = format!("{line}\r");
        drop(st);
        write_raw(shared, echo.as_bytes());
        st = lock(&shared.state);
    }
    let upper = line.to_ascii_uppercase();
    let Some(cmd) = upper.strip_prefix("AT") else {
        drop(st);
        reply(shared, &[], "ERROR");
        return None;
    };
    let raw_arg = |prefix: &str| {
        line.get(2 + prefix.len()..)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut lines: Vec<String> = Vec::new();
    let mut result = "OK".to_string();
    let sim_locked = st.sim_pin.is_some() && !st.pin_entered;
    let needs_sim = cmd.starts_with("+CM")
        || cmd.starts_with("+CPMS")
        || cmd.starts_with("+CSCA")
        || cmd == "+CIMI";
    if !st.sim_present && needs_sim {
        result = error(&st, !cmd.starts_with("+CM"), 310);
    } else if sim_locked && needs_sim {
        result = error(
            &st,
            !cmd.starts_with("+CM"),
            if cmd.starts_with("+CM") { 311 } else { 11 },
        );
    } else {
        match cmd {
            "" => {}
            "E0" => st.echo = false,
            "E1" | "E" => st.echo = true,
            "Z" | "&F" => st.echo = true,
            "I" | "I0" | "I1" | "I2" | "I3" | "I4" => {
                lines = vec!["Fakecom".into(), "FM-900".into(), "Revision: 1.0".into()]
            }
            "+CGMI" | "+GMI" => lines = vec!["Fakecom".into()],
            "+CGMM" | "+GMM" => lines = vec!["FM-900".into()],
            "+CGMR" | "+GMR" => lines = vec!["1.0.0-fake".into()],
            "+CGSN" | "+GSN" => lines = vec!["356938035643809".into()],
            "+CIMI" => lines = vec!["748010123456789".into()],
            "+CNUM" => lines = vec!["+CNUM: \"\",\"+59899100200\",145".into()],
            "+CMEE?" => lines = vec![format!("+CMEE: {}", st.cmee)],
            "+CMEE=?" => lines = vec!["+CMEE: (0-2)".into()],
            c if c.starts_with("+CMEE=") => match c[6..].parse::<u8>() {
                Ok(n) if n <= 2 => st.cmee = n,
                _ => result = "ERROR".into(),
            },
            "+CPIN?" => {
                if !st.sim_present {
                    result = error(&st, true, 10);
                } else {
                    lines = vec![if sim_locked {
                        "+CPIN: SIM PIN".into()
                    } else {
                        "+CPIN: READY".into()
                    }];
                    if st.quirks.cpin_no_ok {
                        result = String::new();
                    }
                }
            }
            c if c.starts_with("+CPIN=") => {
                let given = raw_arg("+CPIN=").trim_matches('"').to_string();
                st.pin_attempts += 1;
                if !sim_locked {
                    // Sending a PIN to a ready SIM is an error and, on real
                    // SIMs, may count as a wrong try (TinyGSM #189).
                    result = error(&st, true, 3);
                } else if st.sim_pin.as_deref() == Some(given.as_str()) {
                    st.pin_entered = true;
                } else {
                    result = error(&st, true, 16);
                }
            }
            "+CREG?" => lines = vec![format!("+CREG: 0,{}", st.registration)],
            "+CGREG?" => lines = vec![format!("+CGREG: 0,{}", st.registration)],
            c if c.starts_with("+CREG=") || c.starts_with("+CGREG=") => {}
            "+CSQ" => lines = vec![format!("+CSQ: {},99", st.rssi)],
            "+COPS?" => lines = vec![format!("+COPS: 0,0,\"{}\",2", st.operator)],
            c if c.starts_with("+COPS=") => {}
            "+CFUN?" => lines = vec!["+CFUN: 1".into()],
            c if c.starts_with("+CFUN=") => {}
            "+CMGF?" => lines = vec![format!("+CMGF: {}", u8::from(!st.pdu_mode))],
            "+CMGF=?" => lines = vec!["+CMGF: (0,1)".into()],
            "+CMGF=0" => st.pdu_mode = true,
            "+CMGF=1" => st.pdu_mode = false,
            "+CSCS?" => lines = vec!["+CSCS: \"GSM\"".into()],
            "+CSCS=?" => lines = vec!["+CSCS: (\"GSM\",\"IRA\",\"UCS2\")".into()],
            c if c.starts_with("+CSCS=") => {}
            "+CSMS?" => lines = vec!["+CSMS: 0,1,1,1".into()],
            "+CSMS=?" => lines = vec!["+CSMS: (0,1)".into()],
            c if c.starts_with("+CSMS=") => lines = vec!["+CSMS: 1,1,1".into()],
            "+CPMS=?" => {
                lines = vec!["+CPMS: (\"SM\",\"ME\"),(\"SM\",\"ME\"),(\"SM\",\"ME\")".into()]
            }
            "+CPMS?" => {
                let (u, c) = (st.storage.len(), st.capacity);
                lines = vec![format!(
                    "+CPMS: \"SM\",{u},{c},\"SM\",{u},{c},\"SM\",{u},{c}"
                )];
            }
            c if c.starts_with("+CPMS=") => {
                let ok = c[6..]
                    .split(',')
                    .all(|m| matches!(m.trim_matches('"'), "SM" | "ME" | "MT" | "SR"));
                if ok {
                    st.mem = c[6..]
                        .split(',')
                        .next()
                        .unwrap_or("SM")
                        .trim_matches('"')
                        .to_string();
                    let (u, c) = (st.storage.len(), st.capacity);
                    lines = vec![format!("+CPMS: {u},{c},{u},{c},{u},{c}")];
                } else {
                    result = error(&st, false, 302);
                }
            }
            "+CNMI?" => {
                let n = st.cnmi;
                lines = vec![format!(
                    "+CNMI: {},{},{},{},{}",
                    n[0], n[1], n[2], n[3], n[4]
                )];
            }
            "+CNMI=?" => lines = vec!["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)".into()],
            c if c.starts_with("+CNMI=") => {
                let mut v = [0u8; 5];
                let mut ok = true;
                for (i, p) in c[6..].split(',').enumerate() {
                    match (i < 5, p.trim().parse::<u8>()) {
                        (true, Ok(n)) => v[i] = n,
                        _ => ok = false,
                    }
                }
                if ok && !(st.quirks.no_cnmi_ds1 && v[3] == 1) {
                    st.cnmi = v;
                } else {
                    result = error(&st, false, 303);
                }
            }
            "+CSCA?" => lines = vec![format!("+CSCA: \"{}\",145", st.smsc)],
            c if c.starts_with("+CSCA=") => {
                let arg = raw_arg("+CSCA=");
                st.smsc = arg
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim_matches('"')
                    .to_string();
            }
            c if c.starts_with("+CMGS=") => {
                let arg = raw_arg("+CMGS=");
                return cmgs(shared, st, &arg);
            }
            c if c.starts_with("+CMGR=") && st.mem == "ME" => result = error(&st, false, 321),
            c if c.starts_with("+CMGL") && c != "+CMGL=?" && st.mem == "ME" => {}
            c if c.starts_with("+CMGD=") && c != "+CMGD=?" && st.mem == "ME" => {}
            c if c.starts_with("+CMGR=") => match c[6..].trim().parse::<u32>() {
                Ok(i) => {
                    let pdu_mode = st.pdu_mode;
                    match st.storage.get_mut(&i) {
                        Some(m) => {
                            let stat = m.stat;
                            if m.stat == 0 {
                                m.stat = 1;
                            }
                            if pdu_mode {
                                lines = vec![format!("+CMGR: {stat},,{}", m.length), m.hex.clone()];
                            } else {
                                result = error(&st, false, 302);
                            }
                        }
                        None => result = error(&st, false, 321),
                    }
                }
                Err(_) => result = error(&st, false, 321),
            },
            "+CMGL=?" => lines = vec!["+CMGL: (0-4)".into()],
            c if c.starts_with("+CMGL") => {
                let want = c
                    .trim_start_matches("+CMGL")
                    .trim_start_matches('=')
                    .trim_matches('"');
                let filter: Option<u8> = match want {
                    "" | "4" | "ALL" => None,
                    n => n.parse().ok().or(Some(9)),
                };
                if !st.pdu_mode {
                    result = error(&st, false, 302);
                } else {
                    for (i, m) in st.storage.iter_mut() {
                        if filter.is_none_or(|f| f == m.stat) {
                            lines.push(format!("+CMGL: {i},{},,{}", m.stat, m.length));
                            lines.push(m.hex.clone());
                            if m.stat == 0 {
                                m.stat = 1;
                            }
                        }
                    }
                }
            }
            "+CMGD=?" => lines = vec![format!("+CMGD: (1-{}),(0-4)", st.capacity)],
            c if c.starts_with("+CMGD=") => {
                let mut args = c[6..].split(',');
                let index = args.next().and_then(|i| i.trim().parse::<u32>().ok());
                let flag = args
                    .next()
                    .and_then(|f| f.trim().parse::<u8>().ok())
                    .unwrap_or(0);
                match (index, flag) {
                    (Some(i), 0) => {
                        st.storage.remove(&i);
                    }
                    (_, 4) => st.storage.clear(),
                    (_, f @ 1..=3) => st.storage.retain(|_, m| m.stat > f),
                    _ => result = error(&st, false, 321),
                }
            }
            _ => {
                result = if st.quirks.huawei {
                    "COMMAND NOT SUPPORT".into()
                } else {
                    "ERROR".into()
                }
            }
        }
    }
    drop(st);
    reply(shared, &lines, &result);
    None
}

fn cmgs(shared: &Shared, mut st: MutexGuard<'_, ModemState>, arg: &str) -> Option<Input> {
    if let Some(n) = st.faults.unplug_on_cmgs.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.faults.unplug_on_cmgs = None;
            let after = st.faults.replug_after;
            drop(st);
            unplug(shared, Some(after));
            return Some(Input::Command);
        }
    }
    let text_mode = !st.pdu_mode;
    let length = if text_mode {
        0
    } else {
        match arg.parse::<usize>() {
            Ok(n) if (7..=176).contains(&n) => n,
            _ => {
                let e = error(&st, false, 304);
                drop(st);
                reply(shared, &[], &e);
                return None;
            }
        }
    };
    if st.faults.stuck_prompts > 0 {
        st.faults.stuck_prompts -= 1;
        // No prompt; the PDU state still waits for Ctrl-Z or ESC.
        return Some(Input::Pdu { length, text_mode });
    }
    let before = st.faults.urc_before_prompt.take();
    let huawei = st.quirks.huawei;
    if st.faults.silent_after_prompt > 0 {
        st.faults.silent_after_prompt -= 1;
        st.faults.silent = true;
    }
    drop(st);
    let mut out = String::new();
    if let Some(u) = before {
        out.push_str(&frame_line(&u, huawei));
    }
    out.push_str("\r\n> ");
    write_raw(shared, out.as_bytes());
    Some(Input::Pdu { length, text_mode })
}

fn pdu(shared: &Shared, text: &str, length: usize, text_mode: bool) {
    let mut st = lock(&shared.state);
    if st.faults.silent {
        return;
    }
    if let Some(n) = st.faults.unplug_on_pdu.as_mut() {
        *n = n.saturating_sub(1);
        if *n == 0 {
            st.faults.unplug_on_pdu = None;
            // Recorded: from the client's side this PDU may have left.
            let mr = st.next_mr;
            st.next_mr = st.next_mr.wrapping_add(1).max(1);
            let submit = decode_submit(text);
            st.sent.push(SentPdu {
                at: Instant::now(),
                hex: text.to_string(),
                length,
                mr,
                submit,
            });
            let after = st.faults.replug_after;
            drop(st);
            unplug(shared, Some(after));
            return;
        }
    }
    if text_mode {
        let mr = st.next_mr;
        st.next_mr = st.next_mr.wrapping_add(1).max(1);
        st.sent.push(SentPdu {
            at: Instant::now(),
            hex: text.to_string(),
            length: 0,
            mr,
            submit: None,
        });
        drop(st);
        reply(shared, &[format!("+CMGS: {mr}")], "OK");
        return;
    }
    // <length> counts the TPDU: the PDU minus the SCA field (27.005).
    let bytes = sms::pdu::parse_hex(text).unwrap_or_default();
    let sca = bytes.first().map_or(0, |n| usize::from(*n) + 1);
    let submit = decode_submit(text);
    if bytes.len() != sca + length || submit.is_none() {
        let e = error(&st, false, 304);
        drop(st);
        reply(shared, &[], &e);
        return;
    }
    let mr = st.next_mr;
    st.next_mr = st.next_mr.wrapping_add(1).max(1);
    st.sent.push(SentPdu {
        at: Instant::now(),
        hex: text.to_string(),
        length,
        mr,
        submit: submit.clone(),
    });
    if st.faults.silent_after_pdu > 0 {
        st.faults.silent_after_pdu -= 1;
        st.faults.silent = true;
        return;
    }
    let skip = st.faults.cmgs_skip > 0;
    if skip {
        st.faults.cmgs_skip -= 1;
    }
    if let Some(code) = (!skip).then(|| st.faults.cmgs_errors.pop_front()).flatten() {
        let e = error(&st, false, code);
        drop(st);
        reply(shared, &[], &e);
        return;
    }
    let scripted = submit
        .as_ref()
        .filter(|s| s.status_report_request)
        .and_then(|_| st.report_script.pop_front());
    if let (Some(status), Some(s)) = (scripted.or(st.auto_report), submit.as_ref())
        && s.status_report_request
    {
        let at = Instant::now() + st.report_delay;
        st.pending_reports.push((
            at,
            SmsStatusReport {
                more_messages_waiting: false,
                loop_prevention: false,
                status_report_qualifier: false,
                message_reference: mr,
                recipient: s.destination.clone(),
                sc_timestamp: Some(now_stamp()),
                discharge_time: Some(now_stamp()),
                status,
                protocol_id: None,
                data_coding: None,
                user_data: None,
            },
        ));
    }
    let urc = st.faults.urc_in_cmgs.take();
    let huawei = st.quirks.huawei;
    drop(st);
    if let Some(u) = urc {
        write_raw(shared, frame_line(&u, huawei).as_bytes());
    }
    reply(shared, &[format!("+CMGS: {mr}")], "OK");
}

fn decode_submit(hex: &str) -> Option<sms::SmsSubmit> {
    match sms::decode_hex(hex, None).ok()?.tpdu {
        Tpdu::Submit(s) => Some(s),
        _ => None,
    }
}
