//! What the gateway pushes unasked: the event kinds and the parser of a
//! push body. Its own file because a push is a different entry point from
//! a reply (no envelope, several event keys per body) though it reuses the
//! reply item readers.

use serde_json::Value;

use super::reply::{
    DeliverStatus, IncomingSms, SmsResult, UssdReply, deliver_status_item, incoming_item,
    sms_result_item, ussd_item,
};
use super::{field_str, field_u8, field_u32, field_u64, items, short_error, trim_bytes};

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
