//! What we send: request bodies and query-string lists, and the helpers the
//! simulator reads them back with. Its own file because it is the strict
//! side of the format (we write exactly what the manual says), apart from
//! the lenient parsing of what gateways send.

use serde_json::{Map, Value, json};

use super::{Encoding, field_bool, value_u64};

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
// Reading request bodies back (the simulator)
// ---------------------------------------------------------------------------

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
