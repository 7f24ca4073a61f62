//! The simulated gateway's state and its `/api/*` logic, without I/O.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value, json};

use smsgate_proto::dinstar::wire::{self, Encoding};

/// State of one simulated port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPort {
    pub sim_present: bool,
    /// `reg` as the gateway spells it (`REGISTER_OK`, `NO_SIM`, ...).
    pub reg: String,
    pub signal: u8,
    pub imsi: String,
    pub iccid: String,
    pub imei: String,
    /// The SIM's own number (often empty on real boxes).
    pub number: String,
    pub module_type: String,
}

impl SimPort {
    pub(crate) fn new(port: u8) -> SimPort {
        SimPort {
            sim_present: true,
            reg: "REGISTER_OK".into(),
            signal: 23,
            imsi: format!("7480100000000{port:02}"),
            iccid: format!("8959801000000000{port:03}"),
            imei: format!("8600000000{port:05}"),
            number: String::new(),
            module_type: "LTE".into(),
        }
    }

    /// Whether an SMS can go out on this port.
    pub fn usable(&self) -> bool {
        self.sim_present && self.reg == "REGISTER_OK"
    }
}

/// One SMS accepted by `send_sms` (one per recipient).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    pub at: Instant,
    pub wall: SystemTime,
    pub task_id: u64,
    /// `None` when the request had no (numeric) user_id.
    pub user_id: Option<u64>,
    pub port: u8,
    pub number: String,
    /// The text as received in the request (after `#param#` substitution).
    pub text: String,
    /// `"unicode"` or `"gsm-7bit"` (what the request said, normalised).
    pub encoding: Encoding,
    /// What the handset would show: with gsm-7bit, characters outside the
    /// GSM 03.38 alphabet become `?` (as one deployment saw).
    pub handset_text: String,
    /// Segments.
    pub count: u32,
    pub request_status_report: bool,
}

/// Status of a simulated outgoing SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutStatus {
    Sending,
    SentOk,
    Failed,
    Delivered,
}

impl OutStatus {
    pub(crate) fn wire(self) -> &'static str {
        match self {
            OutStatus::Sending => "SENDING",
            OutStatus::SentOk => "SENT_OK",
            OutStatus::Failed => "FAILED",
            OutStatus::Delivered => "DELIVERED",
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct OutSms {
    pub sent: SentSms,
    pub time: String,
    pub status: OutStatus,
    pub ref_id: u8,
    pub imsi: String,
    pub sent_due: Instant,
    pub deliver_due: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub port: u8,
    pub number: String,
    pub time: String,
    pub ref_id: u8,
    pub status_code: u8,
    pub imsi: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub id: u64,
    pub port: u8,
    pub number: String,
    pub smsc: String,
    pub timestamp: String,
    pub text: String,
    pub imsi: String,
    pub read: bool,
}

/// Settings that shape the gateway's behaviour.
#[derive(Debug, Clone)]
pub(crate) struct Behaviour {
    pub sn: String,
    pub fail_rate: f64,
    pub result_delay: Duration,
    pub deliver_delay: Option<Duration>,
    pub ussd_delay: Duration,
    /// Pushed `sms_result` items carry `user_id` (the manual's example has none).
    pub push_user_id: bool,
    /// Write times and numbers with the manual's typos in pushes.
    pub manual_typos: bool,
}

/// All mutable state of the simulated gateway.
#[derive(Debug)]
pub(crate) struct SimState {
    pub b: Behaviour,
    pub ports: Vec<SimPort>,
    pub out: Vec<OutSms>,
    pub reports: Vec<Report>,
    pub incoming: Vec<Incoming>,
    pub next_incoming_id: u64,
    pub next_task_id: u64,
    pub ref_ids: HashMap<u8, u8>,
    pub script: HashMap<u8, VecDeque<u16>>,
    pub script_any: VecDeque<u16>,
    pub fail_next_on_network: HashMap<u8, u32>,
    pub ussd: HashMap<u8, (Instant, String)>,
    pub ussd_replies: HashMap<u8, String>,
    pub rr: usize,
    pub rng: u64,
    /// Events to push, drained by the pusher task.
    pub pushes: Vec<Value>,
    pub push_enabled: bool,
}

/// Current wall time as the gateway writes it.
pub(crate) fn now_str() -> String {
    jiff::ZonedDateTime::now()
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn typo_time(t: &str) -> String {
    // "2016-07-12 15:46:53" -> "2016-07-1215:46:53", as in the manual.
    t.replacen(' ', "", 1)
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXT: &str = "\u{c}^{}\\[~]|€";

/// Septets a character takes in GSM 7-bit, or `None` if it has none.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXT.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// What a handset shows and how many segments a text costs.
pub(crate) fn on_air(text: &str, enc: Encoding) -> (String, u32) {
    match enc {
        Encoding::Gsm7Bit => {
            let mut septets = 0usize;
            let shown: String = text
                .chars()
                .map(|c| match gsm7_septets(c) {
                    Some(n) => {
                        septets += n;
                        c
                    }
                    None => {
                        septets += 1;
                        '?'
                    }
                })
                .collect();
            let count = if septets <= 160 {
                1
            } else {
                septets.div_ceil(153)
            };
            (shown, count as u32)
        }
        Encoding::Unicode => {
            let units = text.encode_utf16().count();
            let count = if units <= 70 { 1 } else { units.div_ceil(67) };
            (text.to_string(), count as u32)
        }
    }
}

fn reply(code: u16, sn: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("error_code".into(), json!(code));
    m.insert("sn".into(), json!(sn));
    m
}

/// Parameters of an endpoint: the JSON body for POST, the query string for
/// GET (either is accepted for every endpoint, as clients use both).
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    pub json: Map<String, Value>,
    pub query: HashMap<String, String>,
}

impl Params {
    fn list(&self, key: &str) -> Vec<u64> {
        if let Some(v) = self.json.get(key) {
            return wire::int_list(Some(v));
        }
        self.query
            .get(key)
            .map(|s| wire::parse_int_list(s))
            .unwrap_or_default()
    }

    fn str(&self, key: &str) -> Option<String> {
        wire::field_str(&self.json, key).or_else(|| {
            self.query
                .get(key)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
    }

    fn strings(&self, key: &str) -> Vec<String> {
        match self.json.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
            _ => self
                .query
                .get(key)
                .map(|s| s.split(',').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
        }
    }
}

impl SimState {
    pub fn new(nports: u8, b: Behaviour, seed: u64) -> SimState {
        SimState {
            b,
            ports: (0..nports).map(SimPort::new).collect(),
            out: Vec::new(),
            reports: Vec::new(),
            incoming: Vec::new(),
            next_incoming_id: 1,
            next_task_id: 1,
            ref_ids: HashMap::new(),
            script: HashMap::new(),
            script_any: VecDeque::new(),
            fail_next_on_network: HashMap::new(),
            ussd: HashMap::new(),
            ussd_replies: HashMap::new(),
            rr: 0,
            rng: seed | 1,
            pushes: Vec::new(),
            push_enabled: false,
        }
    }

    fn random(&mut self) -> f64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn push(&mut self, key: &str, item: Value) {
        if self.push_enabled {
            let mut m = Map::new();
            m.insert("sn".into(), json!(self.b.sn));
            m.insert(key.into(), item);
            self.pushes.push(Value::Object(m));
        }
    }

    /// Moves outgoing SMS along in time: results, delivery reports, USSD.
    pub fn tick(&mut self, now: Instant) {
        let mut events = Vec::new();
        for i in 0..self.out.len() {
            if self.out[i].status == OutStatus::Sending && now >= self.out[i].sent_due {
                let port = self.out[i].sent.port;
                let failing = self
                    .fail_next_on_network
                    .get_mut(&port)
                    .filter(|n| **n > 0)
                    .map(|n| *n -= 1)
                    .is_some();
                let usable = self.ports.get(port as usize).is_some_and(SimPort::usable);
                let o = &mut self.out[i];
                if failing || !usable {
                    o.status = OutStatus::Failed;
                } else {
                    o.status = OutStatus::SentOk;
                    if o.sent.request_status_report {
                        o.deliver_due = self.b.deliver_delay.map(|d| now + d);
                    }
                }
                events.push(("sms_result", i));
            }
            let o = &mut self.out[i];
            if o.status == OutStatus::SentOk && o.deliver_due.is_some_and(|d| now >= d) {
                o.deliver_due = None;
                events.push(("report", i));
            }
        }
        for (kind, i) in events {
            if kind == "sms_result" {
                let item = self.result_item(i, self.b.push_user_id, self.b.manual_typos);
                self.push("sms_result", json!([item]));
            } else {
                self.add_report(i, 0);
            }
        }
        let ready: Vec<u8> = self
            .ussd
            .iter()
            .filter(|(_, (due, _))| now >= *due)
            .map(|(p, _)| *p)
            .collect();
        for p in ready {
            if let Some((_, text)) = self.ussd.remove(&p) {
                self.ussd_replies.insert(p, text.clone());
                self.push("ussd", json!([{"port": p, "text": text}]));
            }
        }
    }

    fn add_report(&mut self, i: usize, status_code: u8) {
        let o = &mut self.out[i];
        if status_code == 0 {
            o.status = OutStatus::Delivered;
        }
        let r = Report {
            port: o.sent.port,
            number: o.sent.number.clone(),
            time: now_str(),
            ref_id: o.ref_id,
            status_code,
            imsi: o.imsi.clone(),
        };
        let item = report_item(&r, self.b.manual_typos);
        self.reports.push(r);
        self.push("sms_deliver_status", json!([item]));
    }

    /// A delivery report for `user_id` now (marking it sent first if it was
    /// still sending). False if no SMS has that user id.
    pub fn deliver(&mut self, user_id: u64, status_code: u8) -> bool {
        let Some(i) = self
            .out
            .iter()
            .rposition(|o| o.sent.user_id == Some(user_id))
        else {
            return false;
        };
        if self.out[i].status == OutStatus::Sending {
            self.out[i].status = OutStatus::SentOk;
            let item = self.result_item(i, self.b.push_user_id, self.b.manual_typos);
            self.push("sms_result", json!([item]));
        }
        self.out[i].deliver_due = None;
        self.add_report(i, status_code);
        true
    }

    fn result_item(&self, i: usize, with_user_id: bool, typos: bool) -> Value {
        let o = &self.out[i];
        let succ = match o.status {
            OutStatus::SentOk | OutStatus::Delivered => o.sent.count,
            _ => 0,
        };
        let mut m = Map::new();
        m.insert("port".into(), json!(o.sent.port));
        if with_user_id && let Some(u) = o.sent.user_id {
            m.insert("user_id".into(), json!(u));
        }
        m.insert(
            "number".into(),
            json!(if typos {
                format!(" {}", o.sent.number)
            } else {
                o.sent.number.clone()
            }),
        );
        m.insert(
            "time".into(),
            json!(if typos {
                typo_time(&o.time)
            } else {
                o.time.clone()
            }),
        );
        m.insert("status".into(), json!(o.status.wire()));
        m.insert("count".into(), json!(o.sent.count));
        m.insert("succ_count".into(), json!(succ));
        m.insert("ref_id".into(), json!(o.ref_id));
        m.insert(
            "imsi".into(),
            json!(if typos {
                format!("{} ", o.imsi)
            } else {
                o.imsi.clone()
            }),
        );
        Value::Object(m)
    }

    fn pick_port(&mut self, wanted: &[u64]) -> Option<u8> {
        let candidates: Vec<u8> = if wanted.is_empty() {
            (0..self.ports.len() as u8).collect()
        } else {
            wanted
                .iter()
                .filter_map(|p| u8::try_from(*p).ok())
                .filter(|p| (*p as usize) < self.ports.len())
                .collect()
        };
        let n = candidates.len();
        for k in 0..n {
            let p = candidates[(self.rr + k) % n];
            if self.ports[p as usize].usable() {
                self.rr = self.rr.wrapping_add(k + 1);
                return Some(p);
            }
        }
        None
    }

    /// `POST /api/send_sms`.
    pub fn send_sms(&mut self, p: &Params, now: Instant) -> Value {
        let sn = self.b.sn.clone();
        let err = |c: u16| Value::Object(reply(c, &sn));
        let Some(text) = p.json.get("text").and_then(Value::as_str) else {
            return err(400);
        };
        let params: Vec<&Map<String, Value>> = match p.json.get("param") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).collect(),
            _ => return err(400),
        };
        if params.is_empty() {
            return err(400);
        }
        if params.len() > 128 || text.len() > 1500 {
            return err(413);
        }
        // Unknown to the manual (§8 Q7); the simulator refuses like a limit.
        if wire::text_length(text) > wire::MAX_TEXT_CHARS {
            return err(413);
        }
        let encoding = match p.json.get("encoding") {
            None | Some(Value::Null) => Encoding::Unicode,
            Some(Value::String(s)) => match Encoding::from_wire(s) {
                Some(e) => e,
                None => return err(400),
            },
            Some(_) => return err(400),
        };
        let request_status_report = wire::bool_field_or(&p.json, "request_status_report", true);
        let mut numbers = Vec::new();
        for prm in &params {
            let Some(number) = wire::field_str(prm, "number") else {
                return err(400);
            };
            let digits = number.strip_prefix('+').unwrap_or(&number);
            if number.len() > 24 || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return err(400);
            }
            numbers.push(number);
        }
        let wanted = p.list("port");
        if wanted.iter().any(|&x| x > 31) {
            return err(400);
        }
        // Scripted answers come first: per port, then for any send.
        let first_port = wanted.first().and_then(|&x| u8::try_from(x).ok());
        let scripted = first_port
            .and_then(|fp| self.script.get_mut(&fp).and_then(VecDeque::pop_front))
            .or_else(|| self.script_any.pop_front());
        if let Some(code) = scripted {
            return err(code);
        }
        if self.b.fail_rate > 0.0 && self.random() < self.b.fail_rate {
            return err(500);
        }
        let task_id = self.next_task_id;
        self.next_task_id += 1;
        let time = now_str();
        let wall = SystemTime::now();
        for (prm, number) in params.iter().zip(numbers) {
            let Some(port) = self.pick_port(&wanted) else {
                return err(550);
            };
            let mut body = text.to_string();
            if let Some(Value::Array(tp)) = prm.get("text_param") {
                for v in tp {
                    let s = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    body = body.replacen("#param#", &s, 1);
                }
            }
            let (handset_text, count) = on_air(&body, encoding);
            let ref_id = {
                let r = self.ref_ids.entry(port).or_insert(0);
                let v = *r;
                *r = r.wrapping_add(count as u8);
                v
            };
            let user_id = wire::field_u64(prm, "user_id");
            self.out.push(OutSms {
                sent: SentSms {
                    at: now,
                    wall,
                    task_id,
                    user_id,
                    port,
                    number,
                    text: body,
                    encoding,
                    handset_text,
                    count,
                    request_status_report,
                },
                time: time.clone(),
                status: OutStatus::Sending,
                ref_id,
                imsi: self.ports[port as usize].imsi.clone(),
                sent_due: now + self.b.result_delay,
                deliver_due: None,
            });
        }
        let in_queue = self
            .out
            .iter()
            .filter(|o| o.status == OutStatus::Sending)
            .count();
        let mut m = reply(202, &sn);
        m.insert("sms_in_queue".into(), json!(in_queue));
        m.insert("task_id".into(), json!(task_id));
        Value::Object(m)
    }

    /// `POST /api/query_sms_result`.
    pub fn query_sms_result(&self, p: &Params) -> Value {
        let user_ids = p.list("user_id");
        let numbers = p.strings("number");
        let ports = p.list("port");
        if user_ids.len() > wire::MAX_QUERY_IDS || numbers.len() > wire::MAX_QUERY_IDS {
            return Value::Object(reply(413, &self.b.sn));
        }
        let after = p.str("time_after");
        let before = p.str("time_before");
        let result: Vec<Value> = (0..self.out.len())
            .filter(|&i| {
                let o = &self.out[i];
                (user_ids.is_empty() || o.sent.user_id.is_some_and(|u| user_ids.contains(&u)))
                    && (numbers.is_empty() || numbers.contains(&o.sent.number))
                    && (ports.is_empty() || ports.contains(&u64::from(o.sent.port)))
                    && after.as_ref().is_none_or(|a| o.time >= *a)
                    && before.as_ref().is_none_or(|b| o.time <= *b)
            })
            .map(|i| self.result_item(i, true, false))
            .collect();
        let mut m = reply(200, &self.b.sn);
        m.insert("result".into(), Value::Array(result));
        Value::Object(m)
    }

    /// `POST /api/query_sms_deliver_status`.
    pub fn query_deliver_status(&self, p: &Params) -> Value {
        let numbers = p.strings("number");
        let ports = p.list("port");
        if numbers.len() > wire::MAX_QUERY_IDS {
            return Value::Object(reply(413, &self.b.sn));
        }
        let after = p.str("time_after");
        let before = p.str("time_before");
        let result: Vec<Value> = self
            .reports
            .iter()
            .filter(|r| {
                (numbers.is_empty() || numbers.contains(&r.number))
                    && (ports.is_empty() || ports.contains(&u64::from(r.port)))
                    && after.as_ref().is_none_or(|a| r.time >= *a)
                    && before.as_ref().is_none_or(|b| r.time <= *b)
            })
            .map(|r| report_item(r, false))
            .collect();
        let mut m = reply(200, &self.b.sn);
        m.insert("result".into(), Value::Array(result));
        Value::Object(m)
    }

    /// `GET /api/query_incoming_sms`.
    pub fn query_incoming(&mut self, p: &Params) -> Value {
        let after = p.list("incoming_sms_id").first().copied().unwrap_or(0);
        let flag = p
            .str("flag")
            .unwrap_or_else(|| "unread".into())
            .to_ascii_lowercase();
        if !matches!(flag.as_str(), "unread" | "read" | "all") {
            return Value::Object(reply(400, &self.b.sn));
        }
        let ports = p.list("port");
        let mut sms = Vec::new();
        for m in self.incoming.iter_mut() {
            let flag_ok = match flag.as_str() {
                "unread" => !m.read,
                "read" => m.read,
                _ => true,
            };
            if m.id > after && flag_ok && (ports.is_empty() || ports.contains(&u64::from(m.port))) {
                sms.push(json!({
                    "incoming_sms_id": m.id, "port": m.port, "number": m.number,
                    "smsc": m.smsc, "timestamp": m.timestamp, "text": m.text, "imsi": m.imsi,
                }));
                if flag == "unread" {
                    m.read = true;
                }
            }
        }
        let read = self.incoming.iter().filter(|m| m.read).count();
        let mut m = reply(200, &self.b.sn);
        m.insert("sms".into(), Value::Array(sms));
        m.insert("read".into(), json!(read));
        m.insert("unread".into(), json!(self.incoming.len() - read));
        Value::Object(m)
    }

    /// The port whose SIM has `number` as its own number (compared by
    /// digits: `+598 2900 1000` is `59829001000`); the first if several do.
    pub fn port_for_number(&self, number: &str) -> Option<u8> {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        let want = digits(number);
        if want.is_empty() {
            return None;
        }
        self.ports
            .iter()
            .position(|p| p.sim_present && digits(&p.number) == want)
            .and_then(|i| u8::try_from(i).ok())
    }

    /// A received SMS appears on `port`; returns its id.
    pub fn inject_incoming(&mut self, port: u8, from: &str, text: &str) -> u64 {
        let id = self.next_incoming_id;
        self.next_incoming_id += 1;
        let imsi = self
            .ports
            .get(port as usize)
            .map(|p| p.imsi.clone())
            .unwrap_or_default();
        let m = Incoming {
            id,
            port,
            number: from.to_string(),
            smsc: "+59899000000".into(),
            timestamp: now_str(),
            text: text.to_string(),
            imsi,
            read: false,
        };
        let item = json!([{
            "incoming_sms_id": m.id, "port": m.port, "number": m.number, "smsc": m.smsc,
            "timestamp": m.timestamp, "text": m.text, "imsi": m.imsi,
        }]);
        self.incoming.push(m);
        self.push("sms", item);
        id
    }

    /// `GET /api/get_port_info`.
    pub fn get_port_info(&self, p: &Params) -> Value {
        let types = p.strings("info_type");
        if types.is_empty() || types.iter().all(|t| t.is_empty()) {
            return Value::Object(reply(400, &self.b.sn));
        }
        let wanted = p.list("port");
        let ports: Vec<u8> = if wanted.is_empty() {
            (0..self.ports.len() as u8).collect()
        } else {
            wanted
                .iter()
                .filter_map(|x| u8::try_from(*x).ok())
                .filter(|x| (*x as usize) < self.ports.len())
                .collect()
        };
        let info: Vec<Value> = ports
            .iter()
            .map(|&n| {
                let sp = &self.ports[n as usize];
                let mut m = Map::new();
                m.insert("port".into(), json!(n));
                for t in &types {
                    let (k, v) = match t.as_str() {
                        "type" => ("type", json!(sp.module_type)),
                        "imei" => ("imei", json!(sp.imei)),
                        "imsi" => ("imsi", json!(if sp.sim_present { &sp.imsi } else { "" })),
                        "iccid" => ("iccid", json!(if sp.sim_present { &sp.iccid } else { "" })),
                        "number" => (
                            "number",
                            json!(if sp.sim_present { &sp.number } else { "" }),
                        ),
                        "reg" => ("reg", json!(sp.reg)),
                        "slot" => ("slot", json!(255)),
                        "callstate" => ("callstate", json!("Idle")),
                        "signal" => ("signal", json!(if sp.sim_present { sp.signal } else { 0 })),
                        "gprs" => ("gprs", json!("detached")),
                        t if t.starts_with("remain_") => (t, json!("")),
                        _ => continue,
                    };
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            })
            .collect();
        let mut m = reply(200, &self.b.sn);
        m.insert("info".into(), Value::Array(info));
        Value::Object(m)
    }

    /// Puts a SIM in or takes it out; pushes a `register` event.
    pub fn set_port_sim(&mut self, port: u8, present: bool) {
        let Some(sp) = self.ports.get_mut(port as usize) else {
            return;
        };
        if sp.sim_present == present {
            return;
        }
        sp.sim_present = present;
        sp.reg = if present { "REGISTER_OK" } else { "NO_SIM" }.into();
        let (iccid, imsi) = if present {
            (sp.iccid.clone(), sp.imsi.clone())
        } else {
            ("<NULL>".into(), "<NULL>".into())
        };
        let item = json!([{
            "port": port, "iccid": iccid, "imsi": imsi, "number": sp.number,
            "status": if present { "up" } else { "down" }, "sequence": 1,
        }]);
        self.push("register", item);
    }

    /// `POST /api/send_ussd`.
    pub fn send_ussd(&mut self, p: &Params, now: Instant) -> Value {
        let text = p.str("text").unwrap_or_default();
        let command = p.str("command").unwrap_or_else(|| "send".into());
        let ports = p.list("port");
        if ports.is_empty() || (command == "send" && (text.is_empty() || text.len() > 60)) {
            return Value::Object(reply(400, &self.b.sn));
        }
        let mut result = Vec::new();
        for port in ports {
            let Some(n) = u8::try_from(port)
                .ok()
                .filter(|n| (*n as usize) < self.ports.len())
            else {
                result.push(json!({"port": port, "status": 503}));
                continue;
            };
            if !self.ports[n as usize].usable() {
                result.push(json!({"port": n, "status": 503}));
                continue;
            }
            if command == "cancel" {
                self.ussd.remove(&n);
                result.push(json!({"port": n, "status": 200}));
                continue;
            }
            if self.ussd.contains_key(&n)
                || self
                    .out
                    .iter()
                    .any(|o| o.sent.port == n && o.status == OutStatus::Sending)
            {
                result.push(json!({"port": n, "status": 486}));
                continue;
            }
            self.ussd_replies.remove(&n);
            let answer = format!("Su saldo es $100.00 ({text})");
            self.ussd.insert(n, (now + self.b.ussd_delay, answer));
            result.push(json!({"port": n, "status": 200}));
        }
        let mut m = reply(202, &self.b.sn);
        m.insert("result".into(), Value::Array(result));
        Value::Object(m)
    }

    /// `GET /api/query_ussd_reply`.
    pub fn query_ussd_reply(&self, p: &Params) -> Value {
        let ports = p.list("port");
        let reply_items: Vec<Value> = ports
            .iter()
            .filter_map(|x| u8::try_from(*x).ok())
            .map(|n| {
                json!({"port": n, "text": self.ussd_replies.get(&n).cloned().unwrap_or_else(|| " ".into())})
            })
            .collect();
        let mut m = reply(200, &self.b.sn);
        m.insert("reply".into(), Value::Array(reply_items));
        Value::Object(m)
    }

    /// `GET /api/stop_sms`.
    pub fn stop_sms(&mut self, p: &Params) -> Value {
        let Some(task) = p.list("task_id").first().copied() else {
            return Value::Object(reply(400, &self.b.sn));
        };
        let mut found = false;
        for o in self.out.iter_mut().filter(|o| o.sent.task_id == task) {
            found = true;
            if o.status == OutStatus::Sending {
                o.status = OutStatus::Failed;
            }
        }
        Value::Object(reply(if found { 200 } else { 404 }, &self.b.sn))
    }

    /// `GET /api/query_sms_in_queue`.
    pub fn in_queue(&self) -> Value {
        let mut m = reply(200, &self.b.sn);
        let n = self
            .out
            .iter()
            .filter(|o| o.status == OutStatus::Sending)
            .count();
        m.insert("in_queue".into(), json!(n));
        Value::Object(m)
    }
}

fn report_item(r: &Report, typos: bool) -> Value {
    json!({
        "port": r.port,
        "number": r.number,
        "time": if typos { typo_time(&r.time) } else { r.time.clone() },
        "ref_id": r.ref_id,
        "status_code": r.status_code,
        "imsi": r.imsi,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_air_encodings() {
        assert_eq!(
            on_air("canción ñ", Encoding::Gsm7Bit).0,
            "canci?n ñ",
            "ó is not GSM 7-bit, ñ is"
        );
        assert_eq!(on_air("hola 😀", Encoding::Unicode), ("hola 😀".into(), 1));
        assert_eq!(on_air(&"a".repeat(161), Encoding::Gsm7Bit).1, 2);
        assert_eq!(on_air(&"a".repeat(71), Encoding::Unicode).1, 2);
        assert_eq!(on_air("€", Encoding::Gsm7Bit), ("€".into(), 1));
    }
}
