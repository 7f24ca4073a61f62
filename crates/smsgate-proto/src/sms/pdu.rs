//! SMS TPDUs (TS 23.040 §9.2): SMS-DELIVER, SMS-SUBMIT and
//! SMS-STATUS-REPORT, decoded from what `+CMGR`/`+CMT`/`+CDS` hand over and
//! encoded for `AT+CMGS`.

use std::fmt;

use serde::Serialize;

use super::address::Address;
use super::dcs::{Alphabet, DataCoding};
use super::reader::Reader;
use super::segment::{self, RefWidth};
use super::timestamp::ScTimestamp;
use super::udh::{Concat, UserDataHeader};
use super::{PduError, gsm7, ucs2};

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

/// Decodes hex from `+CMGR`, `+CMGL`, `+CMT` or `+CDS`. `tpdu_length` is the
/// `<length>` of those lines (TPDU octets, service centre address excluded);
/// it tells whether the hex starts with a service centre address. Without
/// it, or when it fits neither reading, both readings are tried.
pub fn decode_hex(hex: &str, tpdu_length: Option<usize>) -> Result<DecodedPdu, PduError> {
    decode_bytes(&parse_hex(hex)?, tpdu_length)
}

struct Attempt {
    result: Result<DecodedPdu, PduError>,
    /// How far the attempt got, to pick the more telling error.
    progress: usize,
}

fn attempt_with_sca(bytes: &[u8]) -> Attempt {
    let mut r = Reader::new(bytes);
    let smsc = match Address::read_service_centre(&mut r) {
        Ok(smsc) => smsc,
        Err(e) => {
            return Attempt {
                result: Err(e),
                progress: r.position(),
            };
        }
    };
    let offset = r.position();
    let bare = attempt_bare(&bytes[offset..]);
    Attempt {
        result: bare.result.map(|d| DecodedPdu {
            has_sca: true,
            smsc,
            ..d
        }),
        progress: offset + bare.progress,
    }
}

fn attempt_bare(bytes: &[u8]) -> Attempt {
    let mut r = Reader::new(bytes);
    let mut warnings = Vec::new();
    let result = read_tpdu(&mut r, &mut warnings).map(|tpdu| {
        if r.remaining() > 0 {
            warnings.push(DecodeWarning::TrailingBytes {
                count: r.remaining(),
            });
        }
        DecodedPdu {
            has_sca: false,
            smsc: None,
            tpdu_length: bytes.len(),
            tpdu,
            warnings,
        }
    });
    Attempt {
        result,
        progress: r.position(),
    }
}

fn has_trailing_bytes(d: &DecodedPdu) -> bool {
    d.warnings
        .iter()
        .any(|w| matches!(w, DecodeWarning::TrailingBytes { .. }))
}

/// Decodes bytes; see [`decode_hex`].
pub fn decode_bytes(bytes: &[u8], tpdu_length: Option<usize>) -> Result<DecodedPdu, PduError> {
    if bytes.is_empty() {
        return Err(PduError::Empty);
    }
    if bytes.len() > MAX_INPUT_OCTETS {
        return Err(PduError::InputTooLong {
            octets: bytes.len(),
            max: MAX_INPUT_OCTETS,
        });
    }
    let with_sca = attempt_with_sca(bytes);
    let bare = attempt_bare(bytes);
    let hint_says_bare = match tpdu_length {
        Some(n) if n == bytes.len() => Some(true),
        Some(n) if usize::from(bytes[0]) + 1 + n == bytes.len() => Some(false),
        _ => None,
    };
    let (first, second) = match hint_says_bare {
        Some(true) => (bare, with_sca),
        Some(false) => (with_sca, bare),
        None => {
            // No usable hint: the reading that accounts for every byte wins,
            // and a service centre address (what +CMGR/+CMT send) breaks ties.
            let bare_is_exact = bare.result.as_ref().is_ok_and(|d| !has_trailing_bytes(d));
            let sca_is_exact = with_sca
                .result
                .as_ref()
                .is_ok_and(|d| !has_trailing_bytes(d));
            if bare_is_exact && !sca_is_exact {
                (bare, with_sca)
            } else {
                (with_sca, bare)
            }
        }
    };
    let hint_missed = match (tpdu_length, hint_says_bare) {
        (Some(hint), None) => Some(hint),
        _ => None,
    };
    let (chosen, missed) = match (first.result, second.result) {
        (Ok(d), _) => (Ok(d), hint_missed),
        // The announced length pointed at a reading that does not parse.
        (Err(_), Ok(d)) => (Ok(d), tpdu_length),
        // Both fail: the preferred reading's error, unless the other reading
        // got well into the message, which says it was the right one.
        (Err(a), Err(b)) => (
            Err(if second.progress >= first.progress + 8 {
                b
            } else {
                a
            }),
            None,
        ),
    };
    chosen.map(|mut d| {
        if let Some(hint) = missed {
            d.warnings.insert(
                0,
                DecodeWarning::LengthHintIgnored {
                    hint,
                    octets: bytes.len(),
                },
            );
        }
        d
    })
}

/// Decodes a bare TPDU (no service centre address in front).
pub fn decode_tpdu(bytes: &[u8]) -> Result<(Tpdu, Vec<DecodeWarning>), PduError> {
    if bytes.len() > MAX_INPUT_OCTETS {
        return Err(PduError::InputTooLong {
            octets: bytes.len(),
            max: MAX_INPUT_OCTETS,
        });
    }
    let d = attempt_bare(bytes).result?;
    Ok((d.tpdu, d.warnings))
}

fn read_tpdu(r: &mut Reader<'_>, warnings: &mut Vec<DecodeWarning>) -> Result<Tpdu, PduError> {
    let first = r.u8("first octet")?;
    match first & 0x03 {
        0b00 => read_deliver(first, r, warnings).map(Tpdu::Deliver),
        0b01 => read_submit(first, r, warnings).map(Tpdu::Submit),
        // MTI 10 is SMS-COMMAND from a phone, SMS-STATUS-REPORT towards one;
        // a modem only ever hands us the latter.
        0b10 => read_status_report(first, r, warnings).map(Tpdu::StatusReport),
        _ => Err(PduError::ReservedMessageType { first_octet: first }),
    }
}

fn read_timestamp(
    r: &mut Reader<'_>,
    field: &'static str,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<Option<ScTimestamp>, PduError> {
    let stamp = ScTimestamp::from_octets(r.array7(field)?);
    if stamp.is_none() {
        warnings.push(DecodeWarning::UnreadableTimestamp { field });
    }
    Ok(stamp)
}

fn read_coding(
    r: &mut Reader<'_>,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<DataCoding, PduError> {
    let coding = DataCoding::from_octet(r.u8("data coding scheme")?);
    if coding.compressed {
        return Err(PduError::CompressedText { dcs: coding.raw });
    }
    if coding.reserved {
        warnings.push(DecodeWarning::ReservedDataCoding { dcs: coding.raw });
    }
    Ok(coding)
}

fn read_deliver(
    first: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<SmsDeliver, PduError> {
    let originator = Address::read(r, "originator address")?;
    let protocol_id = r.u8("protocol identifier")?;
    let data_coding = read_coding(r, warnings)?;
    let sc_timestamp = read_timestamp(r, "service centre timestamp", warnings)?;
    let user_data = read_user_data(r, first & 0x40 != 0, data_coding.alphabet, warnings)?;
    Ok(SmsDeliver {
        more_messages_waiting: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        status_report_indication: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        originator,
        protocol_id,
        data_coding,
        sc_timestamp,
        user_data,
    })
}

fn read_submit(
    first: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<SmsSubmit, PduError> {
    let message_reference = r.u8("message reference")?;
    let destination = Address::read(r, "destination address")?;
    let protocol_id = r.u8("protocol identifier")?;
    let data_coding = read_coding(r, warnings)?;
    let validity = match (first >> 3) & 0x03 {
        0b00 => None,
        0b10 => Some(Validity::relative_from_octet(r.u8("validity period")?)),
        0b01 => Some(Validity::Enhanced {
            octets: r.array7("validity period")?,
        }),
        _ => {
            let octets = r.array7("validity period")?;
            Some(match ScTimestamp::from_octets(octets) {
                Some(t) => Validity::Absolute(t),
                None => {
                    warnings.push(DecodeWarning::UnreadableTimestamp {
                        field: "validity period",
                    });
                    Validity::Unreadable { octets }
                }
            })
        }
    };
    let user_data = read_user_data(r, first & 0x40 != 0, data_coding.alphabet, warnings)?;
    Ok(SmsSubmit {
        reject_duplicates: first & 0x04 != 0,
        status_report_request: first & 0x20 != 0,
        reply_path: first & 0x80 != 0,
        message_reference,
        destination,
        protocol_id,
        data_coding,
        validity,
        user_data,
    })
}

fn read_status_report(
    first: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<SmsStatusReport, PduError> {
    let message_reference = r.u8("message reference")?;
    let recipient = Address::read(r, "recipient address")?;
    let sc_timestamp = read_timestamp(r, "service centre timestamp", warnings)?;
    let discharge_time = read_timestamp(r, "discharge time", warnings)?;
    let status = r.u8("status")?;
    let mut report = SmsStatusReport {
        more_messages_waiting: first & 0x04 == 0,
        loop_prevention: first & 0x08 != 0,
        status_report_qualifier: first & 0x20 != 0,
        message_reference,
        recipient,
        sc_timestamp,
        discharge_time,
        status,
        protocol_id: None,
        data_coding: None,
        user_data: None,
    };
    if r.remaining() == 0 {
        return Ok(report);
    }
    // The parameters after TP-ST are optional and often padding (0xFF...):
    // the report's purpose is served by then, so a malformed tail is noted
    // and dropped instead of losing the delivery status.
    let mut tail_warnings = Vec::new();
    match read_status_report_parameters(first, r, &mut tail_warnings) {
        Ok((pid, dcs, ud)) => {
            report.protocol_id = pid;
            report.data_coding = dcs;
            report.user_data = ud;
            warnings.extend(tail_warnings);
        }
        Err(_) => {
            warnings.push(DecodeWarning::StatusReportParametersIgnored);
            let _ = r.take(r.remaining(), "status report parameters");
        }
    }
    Ok(report)
}

type ReportParameters = (Option<u8>, Option<DataCoding>, Option<UserData>);

fn read_status_report_parameters(
    first: u8,
    r: &mut Reader<'_>,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<ReportParameters, PduError> {
    let indicator = r.u8("parameter indicator")?;
    let mut extension = indicator;
    while extension & 0x80 != 0 {
        extension = r.u8("parameter indicator")?;
    }
    let protocol_id = if indicator & 0x01 != 0 {
        Some(r.u8("protocol identifier")?)
    } else {
        None
    };
    let data_coding = if indicator & 0x02 != 0 {
        Some(read_coding(r, warnings)?)
    } else {
        None
    };
    let user_data = if indicator & 0x04 != 0 {
        let alphabet = data_coding.map_or(Alphabet::Gsm7, |d| d.alphabet);
        Some(read_user_data(r, first & 0x40 != 0, alphabet, warnings)?)
    } else {
        None
    };
    Ok((protocol_id, data_coding, user_data))
}

fn read_user_data(
    r: &mut Reader<'_>,
    has_header: bool,
    alphabet: Alphabet,
    warnings: &mut Vec<DecodeWarning>,
) -> Result<UserData, PduError> {
    let udl = usize::from(r.u8("user data length")?);
    let septets = alphabet == Alphabet::Gsm7;
    let (max, unit) = if septets {
        (MAX_SEPTETS, "septets")
    } else {
        (MAX_OCTETS, "bytes")
    };
    let octets_for = |units: usize| {
        if septets {
            (units * 7).div_ceil(8)
        } else {
            units
        }
    };
    let available = r.remaining();
    let udl = if udl > max {
        // A length no SMS can have says the field is garbage, not that the
        // PDU was cut short, so the data that is there is the message.
        let present = if septets {
            available * 8 / 7
        } else {
            available
        };
        let used = udl.min(present);
        warnings.push(DecodeWarning::ImpossibleUserDataLength { udl, used });
        used
    } else {
        if octets_for(udl) > available {
            return Err(PduError::UserDataTruncated {
                udl,
                unit,
                needed: octets_for(udl),
                available,
            });
        }
        udl
    };
    let ud = r.take(octets_for(udl), "user data")?;

    let (header, body_start) = if has_header {
        if udl == 0 {
            return Err(PduError::HeaderWithoutUserData);
        }
        let header_len = usize::from(ud[0]) + 1;
        if header_len > ud.len() {
            return Err(PduError::HeaderTooLong {
                header: header_len,
                available: ud.len(),
            });
        }
        let header = UserDataHeader::parse(&ud[1..header_len])?;
        if header.has_unusable_concat() {
            warnings.push(DecodeWarning::UnusableConcat);
        }
        (Some(header), header_len)
    } else {
        (None, 0)
    };

    let body = match alphabet {
        Alphabet::Gsm7 => {
            // The header takes whole septets; the text starts after them,
            // which puts the fill bits between header and text.
            let header_septets = (body_start * 8).div_ceil(7);
            if header_septets > udl {
                return Err(PduError::HeaderTooLong {
                    header: body_start,
                    available: octets_for(udl),
                });
            }
            let text = gsm7::unpack(ud, header_septets * 7, udl - header_septets);
            Body::Gsm7(gsm7::from_septets(&text))
        }
        Alphabet::Ucs2 => {
            let bytes = &ud[body_start..];
            if bytes.len() % 2 != 0 {
                warnings.push(DecodeWarning::OddUcs2Length);
            }
            Body::Ucs2(ucs2::bytes_to_units(bytes))
        }
        Alphabet::EightBit => Body::Data(ud[body_start..].to_vec()),
    };
    Ok(UserData { header, body })
}

fn write_user_data(
    user_data: &UserData,
    coding: &DataCoding,
    out: &mut Vec<u8>,
) -> Result<(), PduError> {
    if user_data.body.alphabet() != coding.alphabet {
        return Err(PduError::BodyDoesNotMatchCoding {
            dcs: coding.raw,
            coding: coding.alphabet.name(),
            body: user_data.body.alphabet().name(),
        });
    }
    let mut ud = user_data
        .header
        .as_ref()
        .map(UserDataHeader::to_bytes)
        .unwrap_or_default();
    let udl = match &user_data.body {
        Body::Gsm7(text) => {
            let septets = gsm7::to_septets(text)?;
            let header_septets = (ud.len() * 8).div_ceil(7);
            let udl = header_septets + septets.len();
            if udl > MAX_SEPTETS {
                return Err(PduError::UserDataTooLong {
                    length: udl,
                    max: MAX_SEPTETS,
                    unit: "septets",
                });
            }
            gsm7::pack_into(&mut ud, header_septets * 7, &septets);
            udl
        }
        Body::Ucs2(units) => {
            ud.extend(ucs2::units_to_bytes(units));
            ud.len()
        }
        Body::Data(bytes) => {
            ud.extend_from_slice(bytes);
            ud.len()
        }
    };
    if coding.alphabet != Alphabet::Gsm7 && udl > MAX_OCTETS {
        return Err(PduError::UserDataTooLong {
            length: udl,
            max: MAX_OCTETS,
            unit: "bytes",
        });
    }
    out.push(udl as u8);
    out.extend_from_slice(&ud);
    Ok(())
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

/// Encodes a TPDU (no service centre address).
pub fn encode_tpdu(tpdu: &Tpdu) -> Result<Vec<u8>, PduError> {
    let mut out = Vec::with_capacity(MAX_OCTETS + 24);
    match tpdu {
        Tpdu::Deliver(d) => {
            out.push(
                flag(!d.more_messages_waiting, 0x04)
                    | flag(d.loop_prevention, 0x08)
                    | flag(d.status_report_indication, 0x20)
                    | flag(d.user_data.header.is_some(), 0x40)
                    | flag(d.reply_path, 0x80),
            );
            d.originator.write(&mut out)?;
            out.push(d.protocol_id);
            out.push(d.data_coding.raw);
            out.extend(d.sc_timestamp.map_or([0; 7], |t| t.to_octets()));
            write_user_data(&d.user_data, &d.data_coding, &mut out)?;
        }
        Tpdu::Submit(s) => {
            out.push(
                0x01 | flag(s.reject_duplicates, 0x04)
                    | s.validity.map_or(0, |v| v.format_bits() << 3)
                    | flag(s.status_report_request, 0x20)
                    | flag(s.user_data.header.is_some(), 0x40)
                    | flag(s.reply_path, 0x80),
            );
            out.push(s.message_reference);
            s.destination.write(&mut out)?;
            out.push(s.protocol_id);
            out.push(s.data_coding.raw);
            match s.validity {
                None => {}
                Some(Validity::Relative { minutes }) => out.push(Validity::relative_octet(minutes)),
                Some(Validity::Absolute(t)) => out.extend(t.to_octets()),
                Some(Validity::Enhanced { octets } | Validity::Unreadable { octets }) => {
                    out.extend(octets)
                }
            }
            write_user_data(&s.user_data, &s.data_coding, &mut out)?;
        }
        Tpdu::StatusReport(s) => {
            let header = s.user_data.as_ref().is_some_and(|u| u.header.is_some());
            out.push(
                0x02 | flag(!s.more_messages_waiting, 0x04)
                    | flag(s.loop_prevention, 0x08)
                    | flag(s.status_report_qualifier, 0x20)
                    | flag(header, 0x40),
            );
            out.push(s.message_reference);
            s.recipient.write(&mut out)?;
            out.extend(s.sc_timestamp.map_or([0; 7], |t| t.to_octets()));
            out.extend(s.discharge_time.map_or([0; 7], |t| t.to_octets()));
            out.push(s.status);
            let indicator = flag(s.protocol_id.is_some(), 0x01)
                | flag(s.data_coding.is_some(), 0x02)
                | flag(s.user_data.is_some(), 0x04);
            if indicator != 0 {
                out.push(indicator);
                out.extend(s.protocol_id);
                out.extend(s.data_coding.map(|d| d.raw));
                if let Some(ud) = &s.user_data {
                    let coding = s
                        .data_coding
                        .unwrap_or_else(|| DataCoding::from_octet(0x00));
                    write_user_data(ud, &coding, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// What goes in front of the TPDU handed to `AT+CMGS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServiceCentre {
    /// Nothing: for modems set up to take a bare TPDU.
    #[default]
    Omit,
    /// `00`: "use the service centre set with AT+CSCA".
    ModemDefault,
    /// This service centre address.
    Address(Address),
}

/// How SMS-SUBMIT PDUs are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Ask for a delivery report (TP-SRR); on by default, since delivery
    /// reports are how a message reaches the DELIVERED state.
    pub status_report_request: bool,
    /// Defaults to 24 hours relative: a campaign text delivered days late
    /// does more harm than one that expires.
    pub validity: Option<Validity>,
    pub reject_duplicates: bool,
    /// TP-MR; 0 lets the modem put in its own.
    pub message_reference: u8,
    /// The concatenation reference shared by all parts of one message; with
    /// an 8-bit reference only the low byte is sent.
    pub concat_reference: u16,
    pub ref_width: RefWidth,
    pub service_centre: ServiceCentre,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            status_report_request: true,
            validity: Some(Validity::Relative { minutes: 24 * 60 }),
            reject_duplicates: false,
            message_reference: 0,
            concat_reference: 0,
            ref_width: RefWidth::Bits8,
            service_centre: ServiceCentre::Omit,
        }
    }
}

/// One PDU for `AT+CMGS=<tpdu_length>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubmitPdu {
    pub hex: String,
    pub tpdu_length: usize,
}

/// Builds the SMS-SUBMIT PDUs that send `text` to `destination`: one per
/// segment, each with a concatenation header when there is more than one.
pub fn encode_submit(
    destination: &Address,
    text: &str,
    options: &SubmitOptions,
) -> Result<Vec<SubmitPdu>, PduError> {
    let plan = segment::plan_with(text, options.ref_width);
    if plan.segments > 255 {
        return Err(PduError::TooManySegments {
            segments: plan.segments,
        });
    }
    let data_coding = DataCoding::for_encoding(plan.encoding);
    let sca_prefix = match &options.service_centre {
        ServiceCentre::Omit => Vec::new(),
        ServiceCentre::ModemDefault => vec![0],
        ServiceCentre::Address(a) => {
            let mut out = Vec::new();
            Address::write_service_centre(Some(a), &mut out)?;
            out
        }
    };
    let total = plan.segments as u8;
    plan.part_texts(text)
        .enumerate()
        .map(|(i, part)| {
            let header = (plan.segments > 1).then(|| {
                UserDataHeader::for_concat(Concat {
                    reference: match options.ref_width {
                        RefWidth::Bits8 => options.concat_reference & 0xFF,
                        RefWidth::Bits16 => options.concat_reference,
                    },
                    width: options.ref_width,
                    total,
                    sequence: i as u8 + 1,
                })
            });
            let body = match plan.encoding {
                segment::Encoding::Gsm7 => Body::Gsm7(part.to_owned()),
                segment::Encoding::Ucs2 => Body::Ucs2(ucs2::to_units(part)),
            };
            let tpdu = encode_tpdu(&Tpdu::Submit(SmsSubmit {
                reject_duplicates: options.reject_duplicates,
                status_report_request: options.status_report_request,
                reply_path: false,
                message_reference: options.message_reference,
                destination: destination.clone(),
                protocol_id: 0,
                data_coding,
                validity: options.validity,
                user_data: UserData { header, body },
            }))?;
            let mut bytes = sca_prefix.clone();
            bytes.extend_from_slice(&tpdu);
            Ok(SubmitPdu {
                hex: to_hex(&bytes),
                tpdu_length: tpdu.len(),
            })
        })
        .collect()
}
