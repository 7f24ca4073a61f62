//! The Dinstar JSON wire format: request bodies we send and lenient parsers
//! for everything the gateway sends back (replies and pushes).
//!
//! Everything here is pure: no I/O, no panics, whatever the bytes. Parsers
//! work on `serde_json::Value` and pick fields by hand so that the quirks
//! listed in `shared/reference/dinstar-api.md` are accepted: numbers written
//! as strings, the literal `"<NULL>"`, stray spaces (`" 10086"`), a time with
//! its middle space missing (`"2016-07-1215:46:53"`), an object where an
//! array was expected and the other way round, and unknown fields.
//!
//! This file holds the constants, the shared lenient field access and the
//! reply envelope; `request` (what we send), `reply` (each endpoint's
//! answer) and `push` (what the gateway sends unasked) build on it, and
//! everything is re-exported here.

use serde_json::{Map, Value};

mod push;
mod reply;
mod request;

pub use push::{
    DeviceEvent, ExceptionInfo, PushError, PushEvent, PushEventKind, RegisterEvent, RegisterState,
    parse_push,
};
pub use reply::{
    DeliverStatus, DeliveryOutcome, IncomingBatch, IncomingSms, PortInfo, RegStatus, SendAccepted,
    SmsResult, SmsStatus, UssdPortStatus, UssdReply, deliver_statuses, incoming_batch, port_infos,
    send_accepted, sms_results, ussd_replies, ussd_statuses,
};
pub use request::{
    DeliverStatusQuery, PortInfoType, bool_field_or, deliver_status_body, int_list, parse_int_list,
    percent_encode, query_list, query_sms_result_body, send_sms_body, send_ussd_body,
};

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

#[cfg(test)]
mod tests;
