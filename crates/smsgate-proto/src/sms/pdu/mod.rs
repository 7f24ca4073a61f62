//! SMS TPDUs (TS 23.040 §9.2): SMS-DELIVER, SMS-SUBMIT and
//! SMS-STATUS-REPORT, decoded from what `+CMGR`/`+CMT`/`+CDS` hand over and
//! encoded for `AT+CMGS`.
//!
//! This file holds the TPDU types and the hex helpers; `decode` and
//! `encode` are the two directions, each using only these, and are
//! re-exported here.

use std::fmt;

use serde::Serialize;

use super::address::Address;
use super::dcs::{Alphabet, DataCoding};
use super::timestamp::ScTimestamp;
use super::udh::{Concat, UserDataHeader};
use super::{PduError, ucs2};

mod decode;
mod encode;

pub use decode::{decode_bytes, decode_hex, decode_tpdu};
pub use encode::{ServiceCentre, SubmitOptions, SubmitPdu, encode_submit, encode_tpdu};

/// The longest input accepted, in octets. An SMS is at most 12 octets of
/// service centre address and 164 of TPDU; the slack lets through the
/// padding some modems append (gammu `at-sms/32`), and the cap keeps a
/// hostile line from costing more than a few hundred bytes.
pub const MAX_INPUT_OCTETS: usize = 256;

const MAX_SEPTETS: usize = 160;
const MAX_OCTETS: usize = 140;

/// Something odd that did not stop decoding, worth showing a technician.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DecodeWarning {
    /// The length the modem announced matched neither reading of the hex.
    LengthHintIgnored { hint: usize, octets: usize },
    /// Bytes after the end of the TPDU, ignored (the length fields win).
    TrailingBytes { count: usize },
    /// A user data length no SMS can have; the data present was used.
    ImpossibleUserDataLength { udl: usize, used: usize },
    /// The data coding uses a reserved value or bit.
    ReservedDataCoding { dcs: u8 },
    /// UCS-2 user data with an odd number of bytes; the last was dropped.
    OddUcs2Length,
    /// A timestamp whose digits are not decimal.
    UnreadableTimestamp { field: &'static str },
    /// A concatenation element with a zero or out-of-range part number.
    UnusableConcat,
    /// The optional status-report parameters were malformed.
    StatusReportParametersIgnored,
}

impl fmt::Display for DecodeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeWarning::LengthHintIgnored { hint, octets } => write!(
                f,
                "the announced length {hint} fits neither a bare TPDU nor one after a service centre address in {octets} bytes; detected instead"
            ),
            DecodeWarning::TrailingBytes { count } => {
                write!(f, "{count} bytes after the end of the message were ignored")
            }
            DecodeWarning::ImpossibleUserDataLength { udl, used } => write!(
                f,
                "user data length {udl} is impossible for an SMS; used the {used} present instead"
            ),
            DecodeWarning::ReservedDataCoding { dcs } => write!(
                f,
                "data coding 0x{dcs:02X} uses a reserved value; decoded by the standard's rule"
            ),
            DecodeWarning::OddUcs2Length => {
                write!(
                    f,
                    "UCS-2 text with an odd number of bytes; the last byte was dropped"
                )
            }
            DecodeWarning::UnreadableTimestamp { field } => {
                write!(f, "the {field} has digits that are not decimal")
            }
            DecodeWarning::UnusableConcat => write!(
                f,
                "the concatenation header has a part number of 0 or past the total; treated as a single message"
            ),
            DecodeWarning::StatusReportParametersIgnored => write!(
                f,
                "the optional fields after the status were malformed and were ignored"
            ),
        }
    }
}

/// The payload of a message, kept in the form it travelled in so that parts
/// of a concatenated message can be joined before they are turned into text
/// (a sender may cut a UCS-2 surrogate pair between two parts).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "alphabet", content = "content", rename_all = "lowercase")]
pub enum Body {
    Gsm7(String),
    Ucs2(Vec<u16>),
    #[serde(rename = "8bit")]
    Data(Vec<u8>),
}

impl Body {
    /// The text, or `None` for 8-bit data, which is not text.
    pub fn text(&self) -> Option<String> {
        match self {
            Body::Gsm7(text) => Some(text.clone()),
            Body::Ucs2(units) => Some(ucs2::units_to_string(units)),
            Body::Data(_) => None,
        }
    }

    pub fn alphabet(&self) -> Alphabet {
        match self {
            Body::Gsm7(_) => Alphabet::Gsm7,
            Body::Ucs2(_) => Alphabet::Ucs2,
            Body::Data(_) => Alphabet::EightBit,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UserData {
    pub header: Option<UserDataHeader>,
    pub body: Body,
}

impl UserData {
    pub fn concat(&self) -> Option<Concat> {
        self.header.as_ref().and_then(UserDataHeader::concat)
    }
}

/// TP-VP of an SMS-SUBMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    /// Relative to submission. Encoding rounds up to the next period the
    /// one-octet format can express (5 min steps to 12 h, 30 min to 24 h,
    /// days to 30, then weeks to 63).
    Relative {
        minutes: u32,
    },
    Absolute(ScTimestamp),
    /// The enhanced format, kept as received.
    Enhanced {
        octets: [u8; 7],
    },
    /// An absolute period whose digits are not decimal, kept as received.
    Unreadable {
        octets: [u8; 7],
    },
}

impl Validity {
    pub fn relative_from_octet(vp: u8) -> Validity {
        let vp = u32::from(vp);
        let minutes = match vp {
            0..=143 => (vp + 1) * 5,
            144..=167 => 720 + (vp - 143) * 30,
            168..=196 => (vp - 166) * 1440,
            _ => (vp - 192) * 10080,
        };
        Validity::Relative { minutes }
    }

    pub fn relative_octet(minutes: u32) -> u8 {
        let octet = match minutes {
            0..=720 => minutes.div_ceil(5).saturating_sub(1),
            721..=1440 => 143 + (minutes - 720).div_ceil(30),
            1441..=43200 => 166 + minutes.div_ceil(1440),
            _ => 192 + minutes.div_ceil(10080),
        };
        octet.min(255) as u8
    }

    fn format_bits(&self) -> u8 {
        match self {
            Validity::Relative { .. } => 0b10,
            Validity::Enhanced { .. } => 0b01,
            Validity::Absolute(_) | Validity::Unreadable { .. } => 0b11,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SmsDeliver {
    /// TP-MMS clear: the service centre has more messages for this phone.
    pub more_messages_waiting: bool,
    pub loop_prevention: bool,
    pub status_report_indication: bool,
    pub reply_path: bool,
    pub originator: Address,
    pub protocol_id: u8,
    pub data_coding: DataCoding,
    pub sc_timestamp: Option<ScTimestamp>,
    pub user_data: UserData,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SmsSubmit {
    pub reject_duplicates: bool,
    pub status_report_request: bool,
    pub reply_path: bool,
    /// TP-MR; 0 lets the modem fill in its own.
    pub message_reference: u8,
    pub destination: Address,
    pub protocol_id: u8,
    pub data_coding: DataCoding,
    pub validity: Option<Validity>,
    pub user_data: UserData,
}

/// What TP-ST says about the message (TS 23.040 §9.2.3.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOutcome {
    /// 0x00-0x1F: the message reached the phone (or was replaced/forwarded).
    Delivered,
    /// 0x20-0x3F: a temporary error; the service centre is still trying, so
    /// another report will follow.
    Temporary,
    /// 0x40 and up: a permanent error, or a temporary one after which the
    /// service centre gave up. The message will not be delivered.
    Permanent,
}

impl DeliveryOutcome {
    pub fn from_status(status: u8) -> DeliveryOutcome {
        match status {
            0x00..=0x1F => DeliveryOutcome::Delivered,
            0x20..=0x3F => DeliveryOutcome::Temporary,
            _ => DeliveryOutcome::Permanent,
        }
    }
}

/// The meaning of a TP-ST value in words.
pub fn status_description(status: u8) -> &'static str {
    match status {
        0x00 => "received by the recipient",
        0x01 => "forwarded to the recipient, delivery not confirmed",
        0x02 => "replaced by the service centre",
        0x03..=0x0F => "delivered (reserved code)",
        0x10..=0x1F => "delivered (service-centre-specific code)",
        0x20 => "congestion; still trying",
        0x21 => "recipient busy; still trying",
        0x22 => "no response from recipient; still trying",
        0x23 => "service rejected; still trying",
        0x24 => "quality of service not available; still trying",
        0x25 => "error in recipient; still trying",
        0x26..=0x3F => "temporary error; still trying",
        0x40 => "remote procedure error",
        0x41 => "incompatible destination",
        0x42 => "connection rejected by recipient",
        0x43 => "not obtainable",
        0x44 => "quality of service not available",
        0x45 => "no interworking available",
        0x46 => "validity period expired",
        0x47 => "deleted by the sender",
        0x48 => "deleted by the service centre administration",
        0x49 => "message does not exist",
        0x4A..=0x5F => "permanent error",
        0x60 => "congestion; gave up",
        0x61 => "recipient busy; gave up",
        0x62 => "no response from recipient; gave up",
        0x63 => "service rejected; gave up",
        0x64 => "quality of service not available; gave up",
        0x65 => "error in recipient; gave up",
        0x66..=0x7F => "temporary error; gave up",
        _ => "reserved status; treated as failed",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SmsStatusReport {
    pub more_messages_waiting: bool,
    pub loop_prevention: bool,
    /// TP-SRQ: set when this reports on an SMS-COMMAND, not a SUBMIT.
    pub status_report_qualifier: bool,
    /// The TP-MR that `+CMGS` returned for the message reported on.
    pub message_reference: u8,
    pub recipient: Address,
    pub sc_timestamp: Option<ScTimestamp>,
    pub discharge_time: Option<ScTimestamp>,
    pub status: u8,
    pub protocol_id: Option<u8>,
    pub data_coding: Option<DataCoding>,
    pub user_data: Option<UserData>,
}

impl SmsStatusReport {
    pub fn outcome(&self) -> DeliveryOutcome {
        DeliveryOutcome::from_status(self.status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Tpdu {
    Deliver(SmsDeliver),
    Submit(SmsSubmit),
    StatusReport(SmsStatusReport),
}

impl Tpdu {
    pub fn user_data(&self) -> Option<&UserData> {
        match self {
            Tpdu::Deliver(d) => Some(&d.user_data),
            Tpdu::Submit(s) => Some(&s.user_data),
            Tpdu::StatusReport(r) => r.user_data.as_ref(),
        }
    }
}

/// A decoded PDU with its service centre address, if the input had one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodedPdu {
    /// Whether the input began with a service centre address field.
    pub has_sca: bool,
    /// The service centre; `None` when absent or `00` (the modem default).
    pub smsc: Option<Address>,
    /// Octets after the service centre address: what `+CMGR` announces.
    pub tpdu_length: usize,
    pub tpdu: Tpdu,
    pub warnings: Vec<DecodeWarning>,
}

/// Bytes from hex as modems print it: either case, surrounding whitespace
/// and stray quotes (gammu `at-sms/04` ends in `"`) ignored.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, PduError> {
    let text = text.trim().trim_matches('"').trim();
    if text.is_empty() {
        return Err(PduError::Empty);
    }
    if text.len() / 2 > MAX_INPUT_OCTETS {
        return Err(PduError::InputTooLong {
            octets: text.len() / 2,
            max: MAX_INPUT_OCTETS,
        });
    }
    if let Some((position, character)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(PduError::InvalidHex {
            position,
            character,
        });
    }
    if text.len() % 2 != 0 {
        return Err(PduError::OddHexLength { digits: text.len() });
    }
    let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
    Ok(text
        .as_bytes()
        .chunks_exact(2)
        .map(|p| digit(p[0]) << 4 | digit(p[1]))
        .collect())
}

/// Upper-case hex, as `AT+CMGS` takes it.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    out
}
