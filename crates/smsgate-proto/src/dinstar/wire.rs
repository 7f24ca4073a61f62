//! The Dinstar JSON wire format: request bodies we send and lenient parsers
//! for everything the gateway sends back (replies and pushes).
//!
//! Everything here is pure: no I/O, no panics, whatever the bytes. Parsers
//! work on `serde_json::Value` and pick fields by hand so that the quirks
//! listed in `shared/reference/dinstar-api.md` are accepted: numbers written
//! as strings, the literal `"<NULL>"`, stray spaces (`" 10086"`), a time with
//! its middle space missing (`"2016-07-1215:46:53"`), an object where an
//! array was expected and the other way round, and unknown fields.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// Highest port number the API accepts (ports are 0-based, 0..=31).
pub const MAX_PORT: u8 = 31;
/// Longest message the gateway takes, in characters (10 UCS-2 segments of 67).
pub const MAX_TEXT_CHARS: usize = 670;
/// Most numbers or user ids the query endpoints take in one call.
pub const MAX_QUERY_IDS: usize = 32;
/// Longest destination number the gateway takes, in bytes.
pub const MAX_NUMBER_BYTES: usize = 24;

/// The `encoding` of a `send_sms` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `"gsm-7bit"`: 160 characters per single SMS, GSM 03.38 alphabet only.
    Gsm7Bit,
    /// `"unicode"` (UCS-2): 70 characters per single SMS, any text, emoji.
    Unicode,
}

impl Encoding {
    /// The value the manual documents (what we send).
    pub fn as_wire(self) -> &'static str {
        match self {
            Encoding::Gsm7Bit => "gsm-7bit",
            Encoding::Unicode => "unicode",
        }
    }

    /// Accepts the documented values and the variants seen in clients
    /// (`GSM7BIT`, `gsm7`, `UCS2`, ...). `None` for anything else.
    pub fn from_wire(s: &str) -> Option<Encoding> {
        let k: String = s
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match k.as_str() {
            "gsm7bit" | "gsm7" | "gsm" | "7bit" => Some(Encoding::Gsm7Bit),
            "unicode" | "ucs2" | "utf16" => Some(Encoding::Unicode),
            _ => None,
        }
    }
}

/// How long a text is for the gateway's 670-character limit: UTF-16 code
/// units, since the gateway sends in UCS-2 and an emoji takes two of them.
pub fn text_length(text: &str) -> usize {
    text.encode_utf16().count()
}

// ---------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------

/// Body of `POST /api/send_sms` for one recipient on one port.
pub fn send_sms_body(port: u8, user_id: u32, to: &str, text: &str, encoding: Encoding) -> Value {
    json!({
        "text": text,
        "port": [port],
        "encoding": encoding.as_wire(),
        "request_status_report": true,
        "param": [{"number": to, "user_id": user_id}],
    })
}

/// Body of `POST /api/query_sms_result` for up to 32 user ids.
pub fn query_sms_result_body(user_ids: &[u32]) -> Value {
    json!({ "user_id": user_ids })
}

/// Filter of `POST /api/query_sms_deliver_status`; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliverStatusQuery {
    /// Destination numbers (the client sends at most 32 per call, chunking).
    pub numbers: Vec<String>,
    /// Ports to include.
    pub ports: Vec<u8>,
    /// `"YYYY-MM-DD HH:MM:SS"` in the gateway's clock.
    pub time_after: Option<String>,
    /// `"YYYY-MM-DD HH:MM:SS"` in the gateway's clock.
    pub time_before: Option<String>,
}

/// Body of `POST /api/query_sms_deliver_status`.
pub fn deliver_status_body(q: &DeliverStatusQuery) -> Value {
    let mut m = Map::new();
    if !q.numbers.is_empty() {
        m.insert("number".into(), json!(q.numbers));
    }
    if !q.ports.is_empty() {
        m.insert("port".into(), json!(q.ports));
    }
    if let Some(t) = &q.time_after {
        m.insert("time_after".into(), json!(t));
    }
    if let Some(t) = &q.time_before {
        m.insert("time_before".into(), json!(t));
    }
    Value::Object(m)
}

/// Body of `POST /api/send_ussd`.
pub fn send_ussd_body(port: u8, text: &str) -> Value {
    json!({ "port": [port], "command": "send", "text": text })
}

/// A comma-separated list for a GET query string, commas encoded as `%2C`
/// (a raw comma made one gateway answer "401 Wrong Password").
pub fn query_list<I, T>(items: I) -> String
where
    I: IntoIterator<Item = T>,
    T: std::fmt::Display,
{
    items
        .into_iter()
        .map(|i| percent_encode(&i.to_string()))
        .collect::<Vec<_>>()
        .join("%2C")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `info_type` values of `get_port_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortInfoType {
    Type,
    Imei,
    Imsi,
    Iccid,
    Number,
    Reg,
    Slot,
    CallState,
    Signal,
    Gprs,
    RemainCredit,
}

impl PortInfoType {
    /// The manual's spelling.
    pub fn as_wire(self) -> &'static str {
        match self {
            PortInfoType::Type => "type",
            PortInfoType::Imei => "imei",
            PortInfoType::Imsi => "imsi",
            PortInfoType::Iccid => "iccid",
            PortInfoType::Number => "number",
            PortInfoType::Reg => "reg",
            PortInfoType::Slot => "slot",
            PortInfoType::CallState => "callstate",
            PortInfoType::Signal => "signal",
            PortInfoType::Gprs => "gprs",
            PortInfoType::RemainCredit => "remain_credit",
        }
    }

    /// What a channel health check needs.
    pub const HEALTH: &'static [PortInfoType] = &[
        PortInfoType::Type,
        PortInfoType::Imsi,
        PortInfoType::Iccid,
        PortInfoType::Number,
        PortInfoType::Reg,
        PortInfoType::Signal,
    ];
}

// ---------------------------------------------------------------------------
// Lenient field access
// ---------------------------------------------------------------------------

/// A string field: trimmed; `""`, `"<NULL>"` and `null` are `None`; numbers
/// are turned into their decimal text.
pub fn field_str(obj: &Map<String, Value>, key: &str) -> Option<String> {
    value_str(obj.get(key)?)
}

fn value_str(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    if s.is_empty() || s.eq_ignore_ascii_case("<null>") || s.eq_ignore_ascii_case("null") {
        None
    } else {
        Some(s)
    }
}

/// A string field where the empty string is a value (e.g. a message text).
/// Only `null` and `"<NULL>"` are `None`; the text is kept untrimmed.
fn field_text(obj: &Map<String, Value>, key: &str) -> Option<String> {
    match obj.get(key)? {
        Value::String(s) if s.trim().eq_ignore_ascii_case("<null>") => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An unsigned integer field: a JSON number or a string holding one
/// (`"23"`, `" 23 "`, `"23.0"`). Negative, fractional or huge values are `None`.
pub fn field_u64(obj: &Map<String, Value>, key: &str) -> Option<u64> {
    value_u64(obj.get(key)?)
}

fn value_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            let f = n.as_f64()?;
            (f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u64)
        }),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<u64>().ok().or_else(|| {
                let f = t.parse::<f64>().ok()?;
                (f >= 0.0 && f.fract() == 0.0 && f <= u32::MAX as f64).then_some(f as u64)
            })
        }
        _ => None,
    }
}

fn field_u8(obj: &Map<String, Value>, key: &str) -> Option<u8> {
    field_u64(obj, key).and_then(|n| u8::try_from(n).ok())
}

fn field_u32(obj: &Map<String, Value>, key: &str) -> Option<u32> {
    field_u64(obj, key).and_then(|n| u32::try_from(n).ok())
}

/// A boolean written as `true`, `"true"`, `1`, `"yes"`...
fn field_bool(obj: &Map<String, Value>, key: &str) -> Option<bool> {
    match obj.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_u64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" | "on" => Some(true),
            "false" | "no" | "0" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A gateway time `"YYYY-MM-DD HH:MM:SS"`, trimmed, with the manual's typo
/// (no space between date and time) repaired. Other shapes are kept as sent.
pub fn normalize_time(s: &str) -> String {
    let t = s.trim();
    let b = t.as_bytes();
    if b.len() == 18
        && b[4] == b'-'
        && b[7] == b'-'
        && b[12] == b':'
        && b[15] == b':'
        && t.is_ascii()
    {
        return format!("{} {}", &t[..10], &t[10..]);
    }
    // Collapse runs of spaces ("2016-07-12  15:46:18").
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn field_time(obj: &Map<String, Value>, key: &str) -> Option<String> {
    field_str(obj, key).map(|s| normalize_time(&s))
}

/// The items of a list field: an array of objects, or one object standing
/// alone (the `device` / `exception_info` pushes are objects). Non-object
/// items are skipped.
fn items(v: Option<&Value>) -> Vec<&Map<String, Value>> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(o)) => vec![o],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Reply envelope
// ---------------------------------------------------------------------------

/// Why a reply body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply is not JSON ({0})")]
    NotJson(String),
    #[error("the reply is JSON but not an object")]
    NotObject,
    #[error("the reply has no error_code")]
    NoErrorCode,
}

/// The common part of every `/api/*` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `error_code` (200, 202, 400, 404, 413, 500, 550, ...).
    pub error_code: u16,
    /// The gateway's serial number.
    pub sn: Option<String>,
    /// Any words the gateway put next to the code (`reason`, `msg`,
    /// `message`, `error_msg`, `desc`); none are documented.
    pub reason: Option<String>,
    /// The whole reply object, for the endpoint-specific parsers.
    pub body: Map<String, Value>,
}

/// Parses the reply envelope. A body that is empty, not JSON, not an object
/// or lacks `error_code` is an error (the caller treats it as temporary).
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, ReplyError> {
    let v: Value = serde_json::from_slice(trim_bytes(body))
        .map_err(|e| ReplyError::NotJson(short_error(&e)))?;
    let Value::Object(obj) = v else {
        return Err(ReplyError::NotObject);
    };
    let code = field_u64(&obj, "error_code")
        .and_then(|c| u16::try_from(c).ok())
        .ok_or(ReplyError::NoErrorCode)?;
    let reason = [
        "reason",
        "msg",
        "message",
        "error_msg",
        "desc",
        "description",
    ]
    .iter()
    .find_map(|k| field_str(&obj, k));
    Ok(Envelope {
        error_code: code,
        sn: field_str(&obj, "sn"),
        reason,
        body: obj,
    })
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    // Leading BOM and whitespace, trailing NULs/whitespace (embedded servers).
    let b = b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b);
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace() && *c != 0)
        .map_or(start, |e| e + 1);
    if start >= end { &[] } else { &b[start..end] }
}

fn short_error(e: &serde_json::Error) -> String {
    let s = e.to_string();
    s.chars().take(120).collect()
}

/// Meaning of an envelope `error_code`, in words.
pub fn error_code_words(code: u16) -> &'static str {
    match code {
        200 => "request processed",
        202 => "accepted, will be processed later",
        400 => "request format not valid",
        404 => "task not found",
        413 => "too many numbers or text too long",
        500 => "other error",
        550 => "no available port for sending SMS",
        _ => "undocumented error code",
    }
}

// ---------------------------------------------------------------------------
// send_sms reply
// ---------------------------------------------------------------------------

/// What `send_sms` answers when the gateway queued the message (`202`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAccepted {
    /// Id of the send task (for `stop_sms`).
    pub task_id: Option<u64>,
    /// SMS waiting in the gateway's queue.
    pub sms_in_queue: Option<u64>,
    /// Gateway serial number.
    pub sn: Option<String>,
}

/// Reads the accepted fields of a `send_sms` envelope.
pub fn send_accepted(env: &Envelope) -> SendAccepted {
    SendAccepted {
        task_id: field_u64(&env.body, "task_id"),
        sms_in_queue: field_u64(&env.body, "sms_in_queue"),
        sn: env.sn.clone(),
    }
}

// ---------------------------------------------------------------------------
// query_sms_result / sms_result push
// ---------------------------------------------------------------------------

/// `status` of a send result.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SmsStatus {
    Sending,
    SentOk,
    Failed,
    Delivered,
    /// Anything else, as sent (trimmed).
    Other(String),
}

impl SmsStatus {
    pub fn parse(s: &str) -> SmsStatus {
        let k: String = s
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        match k.as_str() {
            "SENDING" => SmsStatus::Sending,
            "SENTOK" | "SENT" | "SENDOK" => SmsStatus::SentOk,
            "FAILED" | "FAIL" | "SENDFAILED" => SmsStatus::Failed,
            "DELIVERED" => SmsStatus::Delivered,
            _ => SmsStatus::Other(s.trim().to_string()),
        }
    }

    pub fn as_wire(&self) -> &str {
        match self {
            SmsStatus::Sending => "SENDING",
            SmsStatus::SentOk => "SENT_OK",
            SmsStatus::Failed => "FAILED",
            SmsStatus::Delivered => "DELIVERED",
            SmsStatus::Other(s) => s,
        }
    }

    /// Still on its way (the caller should poll again).
    pub fn is_pending(&self) -> bool {
        matches!(self, SmsStatus::Sending)
    }
}

/// One per-recipient send result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsResult {
    pub port: Option<u8>,
    /// Our id from `send_sms` (absent in the manual's push example).
    pub user_id: Option<u32>,
    pub number: Option<String>,
    /// Send time, `"YYYY-MM-DD HH:MM:SS"` in the gateway's clock.
    pub time: Option<String>,
    pub status: SmsStatus,
    /// Segments the message was split into.
    pub count: Option<u32>,
    /// Segments sent successfully.
    pub succ_count: Option<u32>,
    /// Reference of the first segment (0-255), to match delivery reports.
    pub ref_id: Option<u8>,
    pub imsi: Option<String>,
}

fn sms_result_item(o: &Map<String, Value>) -> SmsResult {
    SmsResult {
        port: field_u8(o, "port"),
        user_id: field_u32(o, "user_id"),
        number: field_str(o, "number"),
        time: field_time(o, "time"),
        status: field_str(o, "status")
            .map(|s| SmsStatus::parse(&s))
            .unwrap_or(SmsStatus::Other(String::new())),
        count: field_u32(o, "count"),
        succ_count: field_u32(o, "succ_count").or_else(|| field_u32(o, "success_count")),
        ref_id: field_u8(o, "ref_id"),
        imsi: field_str(o, "imsi"),
    }
}

/// The `result` items of a `query_sms_result` reply.
pub fn sms_results(env: &Envelope) -> Vec<SmsResult> {
    items(env.body.get("result"))
        .into_iter()
        .map(sms_result_item)
        .collect()
}

// ---------------------------------------------------------------------------
// query_sms_deliver_status / sms_deliver_status push
// ---------------------------------------------------------------------------

/// What a delivery report says, from its TP-Status `status_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// 0: received by the handset.
    Delivered,
    /// 1-31: completed, but the handset's reception is not confirmed.
    CompletedUnconfirmed,
    /// 32-63: temporary error, the SMSC is still trying.
    Pending,
    /// 64-255: permanent error, or the SMSC stopped trying.
    Failed,
    /// No usable status code.
    Unknown,
}

impl DeliveryOutcome {
    pub fn from_status_code(code: Option<u8>) -> DeliveryOutcome {
        match code {
            Some(0) => DeliveryOutcome::Delivered,
            Some(1..=31) => DeliveryOutcome::CompletedUnconfirmed,
            Some(32..=63) => DeliveryOutcome::Pending,
            Some(_) => DeliveryOutcome::Failed,
            None => DeliveryOutcome::Unknown,
        }
    }
}

/// One delivery report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverStatus {
    pub port: Option<u8>,
    pub number: Option<String>,
    /// The manual says send time; some clients say report time.
    pub time: Option<String>,
    pub ref_id: Option<u8>,
    /// TP-Status (0 = delivered).
    pub status_code: Option<u8>,
    pub imsi: Option<String>,
}

impl DeliverStatus {
    pub fn outcome(&self) -> DeliveryOutcome {
        DeliveryOutcome::from_status_code(self.status_code)
    }
}

fn deliver_status_item(o: &Map<String, Value>) -> DeliverStatus {
    DeliverStatus {
        port: field_u8(o, "port"),
        number: field_str(o, "number"),
        time: field_time(o, "time"),
        ref_id: field_u8(o, "ref_id"),
        status_code: field_u8(o, "status_code").or_else(|| field_u8(o, "status")),
        imsi: field_str(o, "imsi"),
    }
}

/// The `result` items of a `query_sms_deliver_status` reply.
pub fn deliver_statuses(env: &Envelope) -> Vec<DeliverStatus> {
    items(env.body.get("result"))
        .into_iter()
        .map(deliver_status_item)
        .collect()
}

// ---------------------------------------------------------------------------
// query_incoming_sms / sms push
// ---------------------------------------------------------------------------

/// One received SMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingSms {
    /// The gateway's database id (monotonic); `None` only on broken replies.
    pub incoming_sms_id: Option<u64>,
    pub port: Option<u8>,
    /// The sender.
    pub number: Option<String>,
    pub smsc: Option<String>,
    /// Receive time, `"YYYY-MM-DD HH:MM:SS"` in the gateway's clock.
    pub timestamp: Option<String>,
    /// The text, as decoded by the gateway (kept untrimmed; may be empty).
    pub text: String,
    /// The receiving SIM (real boxes send it; the manual does not list it).
    pub imsi: Option<String>,
}

fn incoming_item(o: &Map<String, Value>) -> IncomingSms {
    IncomingSms {
        incoming_sms_id: field_u64(o, "incoming_sms_id").or_else(|| field_u64(o, "id")),
        port: field_u8(o, "port"),
        number: field_str(o, "number"),
        smsc: field_str(o, "smsc"),
        timestamp: field_time(o, "timestamp").or_else(|| field_time(o, "time")),
        text: field_text(o, "text").unwrap_or_default(),
        imsi: field_str(o, "imsi"),
    }
}

/// A `query_incoming_sms` reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncomingBatch {
    /// Messages in increasing `incoming_sms_id` order.
    pub sms: Vec<IncomingSms>,
    /// Count of read messages on the gateway.
    pub read: Option<u64>,
    /// Count of unread messages on the gateway.
    pub unread: Option<u64>,
    /// The gateway's serial number, from the reply envelope: with
    /// `incoming_sms_id` it is the identity a pushed copy also carries.
    pub sn: Option<String>,
}

/// Parses the `sms` list of a `query_incoming_sms` reply, sorted by id.
pub fn incoming_batch(env: &Envelope) -> IncomingBatch {
    let mut sms: Vec<IncomingSms> = items(env.body.get("sms"))
        .into_iter()
        .map(incoming_item)
        .collect();
    sms.sort_by_key(|m| m.incoming_sms_id);
    IncomingBatch {
        sms,
        read: field_u64(&env.body, "read"),
        unread: field_u64(&env.body, "unread"),
        sn: env.sn.clone(),
    }
}

// ---------------------------------------------------------------------------
// get_port_info
// ---------------------------------------------------------------------------

/// `reg` of a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegStatus {
    PowerOff,
    NoSim,
    PinRequired,
    PukRequired,
    Unregistered,
    Searching,
    RegisterOk,
    Unknown,
    /// Anything undocumented, as sent.
    Other(String),
}

impl RegStatus {
    pub fn parse(s: &str) -> RegStatus {
        let k: String = s
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        match k.as_str() {
            "POWEROFF" => RegStatus::PowerOff,
            "NOSIM" => RegStatus::NoSim,
            "PINREQUIRE" | "PINREQUIRED" => RegStatus::PinRequired,
            "PUKREQUIRE" | "PUKREQUIRED" => RegStatus::PukRequired,
            "UNREGISTER" | "UNREGISTERED" => RegStatus::Unregistered,
            "SEARCHINGNETWORK" | "SEARCHING" => RegStatus::Searching,
            "REGISTEROK" | "REGISTERED" => RegStatus::RegisterOk,
            "UNKNOWN" => RegStatus::Unknown,
            _ => RegStatus::Other(s.trim().to_string()),
        }
    }

    /// The manual's spelling.
    pub fn as_wire(&self) -> &str {
        match self {
            RegStatus::PowerOff => "POWER_OFF",
            RegStatus::NoSim => "NO_SIM",
            RegStatus::PinRequired => "PIN_REQUIRE",
            RegStatus::PukRequired => "PUK_REQUIRE",
            RegStatus::Unregistered => "UNREGISTER",
            RegStatus::Searching => "SEARCHING_NETWORK",
            RegStatus::RegisterOk => "REGISTER_OK",
            RegStatus::Unknown => "UNKNOWN",
            RegStatus::Other(s) => s,
        }
    }
}

/// State of one port, with only the fields that were asked for (and sent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortInfo {
    pub port: u8,
    /// `type`: GSM, CDMA, WCDMA, LTE, UNKNOWN.
    pub module_type: Option<String>,
    pub imei: Option<String>,
    pub imsi: Option<String>,
    pub iccid: Option<String>,
    /// The SIM's own number (often empty).
    pub number: Option<String>,
    pub reg: Option<RegStatus>,
    /// 0-3, or 255 on gateways without multi-SIM.
    pub slot: Option<u8>,
    pub callstate: Option<String>,
    /// 0-31 (CSQ-style).
    pub signal: Option<u8>,
    pub gprs: Option<String>,
    /// `remain_*` counters, under the manual's names (`remain_daily_calltime`,
    /// `remain_hourly_calltime`, `remain_daily_connect`, ...), whichever
    /// variant the gateway used.
    pub remain: BTreeMap<String, String>,
}

impl PortInfo {
    /// Whether the port can send as far as its info tells: a SIM is there
    /// and registered. Unknown fields do not count against it.
    pub fn looks_usable(&self) -> bool {
        match &self.reg {
            Some(r) => *r == RegStatus::RegisterOk,
            None => true,
        }
    }

    /// Whether the info says no SIM is present.
    pub fn sim_missing(&self) -> bool {
        self.reg == Some(RegStatus::NoSim)
    }
}

fn canonical_remain_key(k: &str) -> String {
    let k = k.trim().to_ascii_lowercase();
    k.replace("call_time", "calltime")
        .replace("daily_connected", "daily_connect")
}

fn port_info_item(o: &Map<String, Value>) -> Option<PortInfo> {
    let port = field_u8(o, "port")?;
    let mut remain = BTreeMap::new();
    for (k, v) in o {
        if k.trim().to_ascii_lowercase().starts_with("remain_")
            && let Some(s) = value_str(v)
        {
            remain.insert(canonical_remain_key(k), s);
        }
    }
    Some(PortInfo {
        port,
        module_type: field_str(o, "type"),
        imei: field_str(o, "imei"),
        imsi: field_str(o, "imsi"),
        iccid: field_str(o, "iccid"),
        number: field_str(o, "number"),
        reg: field_str(o, "reg").map(|s| RegStatus::parse(&s)),
        slot: field_u8(o, "slot"),
        callstate: field_str(o, "callstate"),
        signal: field_u8(o, "signal"),
        gprs: field_str(o, "gprs"),
        remain,
    })
}

/// The `info` items of a `get_port_info` reply (items without a port number
/// are dropped), sorted by port.
pub fn port_infos(env: &Envelope) -> Vec<PortInfo> {
    let mut v: Vec<PortInfo> = items(env.body.get("info"))
        .into_iter()
        .filter_map(port_info_item)
        .collect();
    v.sort_by_key(|p| p.port);
    v
}

// ---------------------------------------------------------------------------
// USSD
// ---------------------------------------------------------------------------

/// Per-port status of a `send_ussd` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UssdPortStatus {
    pub port: u8,
    /// 200 sent, 486 port busy, 503 port not registered.
    pub status: u16,
}

/// The `result` items of a `send_ussd` reply.
pub fn ussd_statuses(env: &Envelope) -> Vec<UssdPortStatus> {
    items(env.body.get("result"))
        .into_iter()
        .filter_map(|o| {
            Some(UssdPortStatus {
                port: field_u8(o, "port")?,
                status: field_u64(o, "status").and_then(|s| u16::try_from(s).ok())?,
            })
        })
        .collect()
}

/// A USSD reply for a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UssdReply {
    pub port: Option<u8>,
    /// `None` while no reply has arrived (the gateway sends `""` or `" "`).
    pub text: Option<String>,
}

fn ussd_item(o: &Map<String, Value>) -> UssdReply {
    UssdReply {
        port: field_u8(o, "port"),
        text: field_text(o, "text").filter(|t| !t.trim().is_empty()),
    }
}

/// The `reply` items of a `query_ussd_reply` reply.
pub fn ussd_replies(env: &Envelope) -> Vec<UssdReply> {
    items(env.body.get("reply"))
        .into_iter()
        .map(ussd_item)
        .collect()
}

// ---------------------------------------------------------------------------
// Pushes
// ---------------------------------------------------------------------------

/// `status` of a `register` push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterState {
    Up,
    Down,
    Other(String),
}

/// A SIM registration change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterEvent {
    pub port: Option<u8>,
    /// `None` when down (the gateway writes `"<NULL>"`).
    pub iccid: Option<String>,
    pub imsi: Option<String>,
    pub number: Option<String>,
    pub status: RegisterState,
    pub sequence: Option<u64>,
    /// Only on multi-SIM units.
    pub slot: Option<u8>,
}

/// A device event (`device` push), e.g. `power_off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    pub port_number: Option<u32>,
    pub ip: Option<String>,
    pub mac: Option<String>,
    pub status: Option<String>,
}

/// An `exception_info` push, e.g. `{port:0, type:"call_fail", action:"reset"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionInfo {
    pub port: Option<u8>,
    pub kind: Option<String>,
    pub action: Option<String>,
}

/// What one pushed item says.
#[derive(Debug, Clone, PartialEq)]
pub enum PushEventKind {
    /// A received SMS (`sms`).
    IncomingSms(IncomingSms),
    /// A send result (`sms_result`).
    SmsResult(SmsResult),
    /// A delivery report (`sms_deliver_status`).
    DeliverStatus(DeliverStatus),
    /// A USSD reply (`ussd`).
    Ussd(UssdReply),
    /// A SIM registration change (`register`).
    Register(RegisterEvent),
    /// A device event (`device`).
    Device(DeviceEvent),
    /// A port exception (`exception_info`).
    Exception(ExceptionInfo),
    /// A call record (`cdr`), kept raw: smsgate does not do voice.
    Cdr(Value),
}

/// One event of a push, with the serial number of the gateway that sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct PushEvent {
    pub sn: Option<String>,
    pub kind: PushEventKind,
}

/// Why a push body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the push is not JSON ({0})")]
    NotJson(String),
    #[error("the push is JSON but not an object")]
    NotObject,
    #[error("the push has no known event (keys: {0})")]
    NoEvent(String),
}

/// Parses a body the gateway pushed. One body normally holds one event key
/// with an array (or, for `device` / `exception_info`, an object); every known
/// key present is read, each item becomes one event. A known key with no
/// usable items yields no events but is not an error.
pub fn parse_push(body: &[u8]) -> Result<Vec<PushEvent>, PushError> {
    let v: Value = serde_json::from_slice(trim_bytes(body))
        .map_err(|e| PushError::NotJson(short_error(&e)))?;
    let Value::Object(obj) = v else {
        return Err(PushError::NotObject);
    };
    let sn = field_str(&obj, "sn");
    let mut out = Vec::new();
    let mut known = false;
    let mut push = |kind: PushEventKind| {
        out.push(PushEvent {
            sn: sn.clone(),
            kind,
        })
    };
    for (key, val) in &obj {
        let k = key.trim().to_ascii_lowercase();
        let list = items(Some(val));
        match k.as_str() {
            "sms" => {
                known = true;
                list.into_iter()
                    .for_each(|o| push(PushEventKind::IncomingSms(incoming_item(o))));
            }
            "sms_result" => {
                known = true;
                list.into_iter()
                    .for_each(|o| push(PushEventKind::SmsResult(sms_result_item(o))));
            }
            "sms_deliver_status" | "sms_delivery_status" => {
                known = true;
                list.into_iter()
                    .for_each(|o| push(PushEventKind::DeliverStatus(deliver_status_item(o))));
            }
            "ussd" => {
                known = true;
                list.into_iter()
                    .for_each(|o| push(PushEventKind::Ussd(ussd_item(o))));
            }
            "register" | "register_status" => {
                known = true;
                list.into_iter().for_each(|o| {
                    let status = match field_str(o, "status") {
                        Some(s) if s.eq_ignore_ascii_case("up") => RegisterState::Up,
                        Some(s) if s.eq_ignore_ascii_case("down") => RegisterState::Down,
                        Some(s) => RegisterState::Other(s),
                        None => RegisterState::Other(String::new()),
                    };
                    push(PushEventKind::Register(RegisterEvent {
                        port: field_u8(o, "port"),
                        iccid: field_str(o, "iccid"),
                        imsi: field_str(o, "imsi"),
                        number: field_str(o, "number"),
                        status,
                        sequence: field_u64(o, "sequence"),
                        slot: field_u8(o, "slot"),
                    }))
                });
            }
            "device" => {
                known = true;
                list.into_iter().for_each(|o| {
                    push(PushEventKind::Device(DeviceEvent {
                        port_number: field_u32(o, "port_number"),
                        ip: field_str(o, "IP").or_else(|| field_str(o, "ip")),
                        mac: field_str(o, "MAC").or_else(|| field_str(o, "mac")),
                        status: field_str(o, "status"),
                    }))
                });
            }
            "exception_info" | "exception" => {
                known = true;
                list.into_iter().for_each(|o| {
                    push(PushEventKind::Exception(ExceptionInfo {
                        port: field_u8(o, "port"),
                        kind: field_str(o, "type"),
                        action: field_str(o, "action"),
                    }))
                });
            }
            "cdr" => {
                known = true;
                list.into_iter()
                    .for_each(|o| push(PushEventKind::Cdr(Value::Object(o.clone()))));
            }
            _ => {}
        }
    }
    if !known {
        let keys: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
        return Err(PushError::NoEvent(keys.join(", ")));
    }
    Ok(out)
}

/// Whether a boolean-ish field is true (used by the simulator for
/// `request_status_report`, default true).
pub fn bool_field_or(obj: &Map<String, Value>, key: &str, default: bool) -> bool {
    field_bool(obj, key).unwrap_or(default)
}

/// Reads a list of small integers from a JSON body field: an array of
/// numbers or numeric strings, one number, or a comma-separated string.
pub fn int_list(v: Option<&Value>) -> Vec<u64> {
    match v {
        Some(Value::Array(a)) => a.iter().filter_map(value_u64).collect(),
        Some(Value::String(s)) => parse_int_list(s),
        Some(v @ Value::Number(_)) => value_u64(v).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Parses `"0,1,2"`, `"[0, 1]"`, `"3"` into numbers (query-string lists).
pub fn parse_int_list(s: &str) -> Vec<u64> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .filter_map(|p| p.trim().parse::<u64>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(s: &str) -> Envelope {
        parse_envelope(s.as_bytes()).expect("envelope")
    }

    #[test]
    fn envelope_accepts_string_codes_and_rejects_junk() {
        assert_eq!(env(r#"{"error_code":"202","sn":" a-b "}"#).error_code, 202);
        assert_eq!(env(r#"{"error_code":202}"#).sn, None);
        assert_eq!(
            env(r#"{"error_code":400,"reason":"bad number"}"#).reason,
            Some("bad number".into())
        );
        assert!(matches!(parse_envelope(b""), Err(ReplyError::NotJson(_))));
        assert!(matches!(
            parse_envelope(b"<html>"),
            Err(ReplyError::NotJson(_))
        ));
        assert_eq!(parse_envelope(b"[1]"), Err(ReplyError::NotObject));
        assert_eq!(parse_envelope(b"{\"sn\":1}"), Err(ReplyError::NoErrorCode));
        assert_eq!(
            parse_envelope(b"{\"error_code\":-5}"),
            Err(ReplyError::NoErrorCode)
        );
        assert_eq!(
            env("\u{feff}{\"error_code\":200}\r\n\0").error_code,
            200,
            "BOM and trailing NUL tolerated"
        );
    }

    #[test]
    fn send_accepted_fields() {
        let e = env(r#"{"error_code":202,"sn":"x","sms_in_queue":"2","task_id":1284}"#);
        let a = send_accepted(&e);
        assert_eq!(a.task_id, Some(1284));
        assert_eq!(a.sms_in_queue, Some(2));
    }

    #[test]
    fn results_with_typos() {
        let e = env(r#"{"error_code":200,"result":[
            {"port":"0","user_id":100001,"number":" 10086","time":"2016-07-1215:46:53",
             "status":"SENT_OK","count":1,"succ_count":"1","ref_id":37,"imsi":"460001234567890 "},
            {"port":1,"status":"sending"}, 5, "junk"]}"#);
        let r = sms_results(&e);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].port, Some(0));
        assert_eq!(r[0].number.as_deref(), Some("10086"));
        assert_eq!(r[0].time.as_deref(), Some("2016-07-12 15:46:53"));
        assert_eq!(r[0].imsi.as_deref(), Some("460001234567890"));
        assert_eq!(r[0].status, SmsStatus::SentOk);
        assert_eq!(r[0].succ_count, Some(1));
        assert_eq!(r[1].status, SmsStatus::Sending);
        assert!(r[1].status.is_pending());
    }

    #[test]
    fn delivery_outcomes() {
        assert_eq!(
            DeliveryOutcome::from_status_code(Some(0)),
            DeliveryOutcome::Delivered
        );
        assert_eq!(
            DeliveryOutcome::from_status_code(Some(5)),
            DeliveryOutcome::CompletedUnconfirmed
        );
        assert_eq!(
            DeliveryOutcome::from_status_code(Some(40)),
            DeliveryOutcome::Pending
        );
        assert_eq!(
            DeliveryOutcome::from_status_code(Some(64)),
            DeliveryOutcome::Failed
        );
        assert_eq!(
            DeliveryOutcome::from_status_code(None),
            DeliveryOutcome::Unknown
        );
    }

    #[test]
    fn port_info_variants() {
        let e = env(r#"{"error_code":200,"info":[
            {"port":1,"type":"LTE","imsi":"","number":"","reg":"NO_SIM","signal":"0"},
            {"port":0,"type":"LTE","imsi":"460001234567890","reg":"REGISTER_OK","signal":23,
             "remain_daily_call_time":"10","remain_daily_connected":""},
            {"type":"no port"}]}"#);
        let p = port_infos(&e);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].port, 0);
        assert!(p[0].looks_usable());
        assert_eq!(
            p[0].remain.get("remain_daily_calltime").map(String::as_str),
            Some("10")
        );
        assert!(!p[0].remain.contains_key("remain_daily_connect"));
        assert_eq!(p[1].reg, Some(RegStatus::NoSim));
        assert!(p[1].sim_missing());
        assert_eq!(p[1].imsi, None);
        assert_eq!(p[1].signal, Some(0));
    }

    #[test]
    fn incoming_sorted_and_text_kept() {
        let e = env(r#"{"error_code":200,"sms":[
            {"incoming_sms_id":43,"port":1,"number":"1","text":"  hola  "},
            {"incoming_sms_id":"42","port":0,"number":"2","text":""}],"read":"1","unread":0}"#);
        let b = incoming_batch(&e);
        assert_eq!(b.sms[0].incoming_sms_id, Some(42));
        assert_eq!(b.sms[1].text, "  hola  ");
        assert_eq!(b.read, Some(1));
    }

    #[test]
    fn push_every_kind() {
        let cases: &[(&str, usize)] = &[
            (
                r#"{"sn":"s","sms":[{"incoming_sms_id":7,"port":1,"number":"6717","smsc":"+8613800757511","timestamp":"2016-07-12 15:46:18","text":"test"}]}"#,
                1,
            ),
            (
                r#"{"sn":"s","sms_result":[{"port":1,"number":" 10086","time":"2016-07-12 01:46:02","status":"DELIVERED","count":1,"succ_count":1,"ref_id":215,"imsi":"460004642148063 "}]}"#,
                1,
            ),
            (
                r#"{"sn":"s","sms_deliver_status":[{"port":1,"number":"10086","time":"2016-07-1215:46:53","ref_id":215,"status_code":0,"imsi":"460004642148063"}]}"#,
                1,
            ),
            (
                r#"{"sn":"s","register":[{"port":8,"iccid":"<NULL>","imsi":"<NULL>","number":"13714637674","status":"down","sequence":1,"slot":2}]}"#,
                1,
            ),
            (
                r#"{"sn":"s","device":{"port_number":8,"IP":"10.0.0.2","MAC":"00:11","status":"power_off"}}"#,
                1,
            ),
            (
                r#"{"sn":"s","exception_info":{"port":0,"type":"call_fail","action":"reset"}}"#,
                1,
            ),
            (r#"{"sn":"s","ussd":[{"port":0,"text":"Saldo 10"}]}"#, 1),
            (r#"{"sn":"s","sms":[]}"#, 0),
        ];
        for (body, n) in cases {
            let ev = parse_push(body.as_bytes()).expect(body);
            assert_eq!(ev.len(), *n, "{body}");
            for e in &ev {
                assert_eq!(e.sn.as_deref(), Some("s"));
            }
        }
        let ev = parse_push(cases[3].0.as_bytes()).unwrap();
        let PushEventKind::Register(r) = &ev[0].kind else {
            panic!("not register")
        };
        assert_eq!(r.iccid, None);
        assert_eq!(r.status, RegisterState::Down);
        assert_eq!(r.port, Some(8));
        assert!(matches!(
            parse_push(br#"{"sn":"s","what":1}"#),
            Err(PushError::NoEvent(_))
        ));
        assert!(parse_push(b"[]").is_err());
        assert!(parse_push(b"").is_err());
    }

    #[test]
    fn query_lists_encode_commas() {
        assert_eq!(query_list([0u8, 1, 2]), "0%2C1%2C2");
        assert_eq!(query_list(["a b"]), "a%20b");
        assert_eq!(parse_int_list("0,1, 2"), vec![0, 1, 2]);
        assert_eq!(parse_int_list("[0]"), vec![0]);
    }

    #[test]
    fn encodings() {
        assert_eq!(Encoding::from_wire("gsm-7bit"), Some(Encoding::Gsm7Bit));
        assert_eq!(Encoding::from_wire("GSM7BIT"), Some(Encoding::Gsm7Bit));
        assert_eq!(Encoding::from_wire("UCS2"), Some(Encoding::Unicode));
        assert_eq!(Encoding::from_wire("latin1"), None);
        assert_eq!(text_length("😀"), 2);
        assert_eq!(text_length("ñandú"), 5);
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_push(&bytes);
            if let Ok(e) = parse_envelope(&bytes) {
                let _ = sms_results(&e);
                let _ = deliver_statuses(&e);
                let _ = incoming_batch(&e);
                let _ = port_infos(&e);
                let _ = ussd_replies(&e);
                let _ = ussd_statuses(&e);
            }
        }

        #[test]
        fn json_parsers_never_panic(s in "\\{\"(error_code|sn|result|info|sms)\":(\\[\\{\"[a-z_]{1,12}\":(\"[ -~]{0,10}\"|-?[0-9]{1,25}(\\.[0-9])?|null|true)\\}\\]|\"[0-9]{0,4}\"|[0-9]{1,4})\\}") {
            let _ = parse_push(s.as_bytes());
            if let Ok(e) = parse_envelope(s.as_bytes()) {
                let _ = sms_results(&e);
                let _ = deliver_statuses(&e);
                let _ = incoming_batch(&e);
                let _ = port_infos(&e);
            }
        }
    }
}
