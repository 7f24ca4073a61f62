//! What the gateway answers: the typed contents of each endpoint's reply
//! (send, results, delivery reports, received messages, port info, USSD),
//! read leniently from the envelope. Its own file because these are the
//! per-endpoint readers, on top of the shared field access in `mod.rs`;
//! pushes reuse their item readers.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{
    Envelope, field_str, field_text, field_time, field_u8, field_u32, field_u64, items, value_str,
};

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

pub(super) fn sms_result_item(o: &Map<String, Value>) -> SmsResult {
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

pub(super) fn deliver_status_item(o: &Map<String, Value>) -> DeliverStatus {
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

pub(super) fn incoming_item(o: &Map<String, Value>) -> IncomingSms {
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

pub(super) fn ussd_item(o: &Map<String, Value>) -> UssdReply {
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
