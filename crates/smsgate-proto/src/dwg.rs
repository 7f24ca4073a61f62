//! The DWG SMS API wire format (Dinstar's older binary TCP protocol), pure:
//! no I/O, no clock, no panics on any input.
//!
//! A frame is a 24-byte header and a body. Header, all big-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | body length |
//! | 8 | MAC (6 bytes, then 2 unused) |
//! | 4 | time (the sender's clock, Unix seconds) |
//! | 4 | serial number |
//! | 2 | type |
//! | 2 | flag (unused; echoed in replies) |
//!
//! MAC + time + serial form the message ID; a reply carries the ID of the
//! request it answers. Body layouts follow `shared/reference/dinstar-api.md`
//! §4.2 and the public clients listed there (S14); where they disagree the
//! choice is explained on the type.

use std::fmt;

use bytes::{Buf, BufMut, BytesMut};

/// Bytes of the header.
pub const HEADER_LEN: usize = 24;
/// Largest body accepted or written. The biggest legitimate body is a send
/// request to many numbers: 4 + 255 × 24 + 2 + 1340 bytes of text ≈ 7.5 KiB.
/// A larger length field means a broken or hostile peer: the stream cannot
/// be trusted to be in step any more, so decoding stops there.
pub const MAX_BODY: usize = 16 * 1024;
/// Fixed width of a phone number field, NUL padded.
pub const NUMBER_LEN: usize = 24;
/// Fixed width of the user and the password in the authentication message.
pub const CRED_LEN: usize = 16;
/// Fixed width of the timestamp of a received SMS ("yyyyMMddHHmmss" + NUL).
pub const TIMESTAMP_LEN: usize = 15;
/// Most bytes of text in one send request. The vendor's limit is not known;
/// one public client refuses UCS-2 texts over 1340 bytes (670 characters,
/// the limit the HTTP API documents for a message), so we do the same.
pub const MAX_TEXT_BYTES: usize = 1340;

/// Message types (the header's `type`).
pub mod kind {
    pub const KEEP_ALIVE: u16 = 0x00;
    pub const SEND_SMS: u16 = 0x01;
    pub const SEND_SMS_RESPONSE: u16 = 0x02;
    pub const SEND_SMS_RESULT: u16 = 0x03;
    pub const SEND_SMS_RESULT_ACK: u16 = 0x04;
    pub const RECEIVE_SMS: u16 = 0x05;
    pub const RECEIVE_SMS_ACK: u16 = 0x06;
    pub const PORT_STATUS: u16 = 0x07;
    pub const PORT_STATUS_ACK: u16 = 0x08;
    pub const SEND_USSD: u16 = 0x09;
    pub const SEND_USSD_RESPONSE: u16 = 0x0a;
    pub const RECEIVE_USSD: u16 = 0x0b;
    pub const RECEIVE_USSD_ACK: u16 = 0x0c;
    pub const CSQ_RSSI: u16 = 0x0d;
    pub const CSQ_RSSI_ACK: u16 = 0x0e;
    pub const AUTH: u16 = 0x0f;
    pub const AUTH_RESPONSE: u16 = 0x10;
    pub const SMS_RECEIPT: u16 = 0x11;
    pub const SMS_RECEIPT_ACK: u16 = 0x12;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("frame body of {len} bytes is over the {MAX_BODY}-byte limit")]
    BodyTooLong { len: usize },
    #[error("{field} does not fit: {len} bytes, at most {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("connection error: {0}")]
    Io(String),
}

impl From<std::io::Error> for CodecError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// The message ID: who sent it (MAC), when and which one (serial).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgId {
    /// 6 bytes of MAC and 2 unused bytes, kept as received so a reply
    /// echoes the ID exactly.
    pub mac: [u8; 8],
    pub time: u32,
    pub serial: u32,
}

impl MsgId {
    pub fn mac_string(&self) -> String {
        self.mac[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// One frame: ID, flag and a decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: MsgId,
    pub flag: u16,
    pub body: Body,
}

impl Frame {
    pub fn new(id: MsgId, body: Body) -> Self {
        Self { id, flag: 0, body }
    }

    /// A reply to `self`: same ID and flag, as the protocol asks.
    pub fn reply(&self, body: Body) -> Self {
        Self {
            id: self.id,
            flag: self.flag,
            body,
        }
    }
}

/// Result byte of the one-byte acknowledgements (types 4, 6, 8, 12, 14, 16,
/// 0x12): 0 means success, anything else failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack(pub u8);

impl Ack {
    pub const OK: Ack = Ack(0);
    pub const FAIL: Ack = Ack(1);
    pub fn ok(self) -> bool {
        self.0 == 0
    }
}

/// The protocol's encoding byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    /// 0: one byte per character. The v1.x documents called it GSM 7-bit,
    /// later ones ASCII (S14: caruizdiaz dwg.h). We decode it as ASCII with
    /// Latin-1 for the high half, and only send it for characters that read
    /// the same under both interpretations (see [`choose_encoding`]).
    Ascii,
    /// 1: UCS-2 big-endian (UTF-16BE in practice: emoji travel as
    /// surrogate pairs).
    Ucs2,
    /// Any other byte, kept so a reply can say what was not understood.
    Other(u8),
}

impl TextEncoding {
    pub fn byte(self) -> u8 {
        match self {
            Self::Ascii => 0,
            Self::Ucs2 => 1,
            Self::Other(b) => b,
        }
    }
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Ascii,
            1 => Self::Ucs2,
            b => Self::Other(b),
        }
    }
}

/// Whether `c` reads the same as an ASCII byte and as an unpacked GSM 03.38
/// default-alphabet code: then encoding 0 is safe whichever way the
/// gateway's firmware reads it.
fn same_in_ascii_and_gsm7(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            ' ' | '\n'
                | '\r'
                | '!'
                | '"'
                | '#'
                | '%'
                | '&'
                | '\''
                | '('
                | ')'
                | '*'
                | '+'
                | ','
                | '-'
                | '.'
                | '/'
                | ':'
                | ';'
                | '<'
                | '='
                | '>'
                | '?'
        )
}

/// The encoding a text is sent with: 0 only when every character is safe in
/// it, UCS-2 otherwise (accents, `ñ`, `@`, `$`, emoji...).
pub fn choose_encoding(text: &str) -> TextEncoding {
    if text.chars().all(same_in_ascii_and_gsm7) {
        TextEncoding::Ascii
    } else {
        TextEncoding::Ucs2
    }
}

/// Text to content bytes. Encoding 0 with a character outside one byte
/// gives `?` for it (callers pick the encoding with [`choose_encoding`]).
pub fn encode_text(text: &str, enc: TextEncoding) -> Vec<u8> {
    match enc {
        TextEncoding::Ucs2 => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
        TextEncoding::Ascii | TextEncoding::Other(_) => text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect(),
    }
}

/// Content bytes to text, never failing: unpaired surrogates and an odd
/// trailing byte become U+FFFD.
pub fn decode_text(bytes: &[u8], enc: TextEncoding) -> String {
    match enc {
        TextEncoding::Ucs2 => {
            let units = bytes
                .chunks(2)
                .map(|c| match c {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => 0xfffd,
                })
                .collect::<Vec<_>>();
            char::decode_utf16(units)
                .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        TextEncoding::Ascii | TextEncoding::Other(_) => bytes.iter().map(|&b| b as char).collect(),
    }
}

/// Send SMS request (type 1), server to gateway.
///
/// Layout: port (1), encoding (1), message type (1; 0 = SMS, as in the
/// manual's example frame), count of numbers (1), numbers (24 each),
/// content length (2), content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSms {
    pub port: u8,
    pub encoding: TextEncoding,
    pub msg_type: u8,
    pub numbers: Vec<String>,
    pub text: String,
}

/// Send SMS response (type 2) and send SMS result (type 3) result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendCode {
    Succeed,
    Fail,
    Timeout,
    BadRequest,
    PortUnavailable,
    PartialSucceed,
    Other(u8),
}

impl SendCode {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Succeed,
            1 => Self::Fail,
            2 => Self::Timeout,
            3 => Self::BadRequest,
            4 => Self::PortUnavailable,
            5 => Self::PartialSucceed,
            b => Self::Other(b),
        }
    }
    pub fn byte(self) -> u8 {
        match self {
            Self::Succeed => 0,
            Self::Fail => 1,
            Self::Timeout => 2,
            Self::BadRequest => 3,
            Self::PortUnavailable => 4,
            Self::PartialSucceed => 5,
            Self::Other(b) => b,
        }
    }
    pub fn describe(self) -> String {
        match self {
            Self::Succeed => "succeeded".into(),
            Self::Fail => "failed (code 1)".into(),
            Self::Timeout => "timed out in the gateway (code 2)".into(),
            Self::BadRequest => "bad request (code 3)".into(),
            Self::PortUnavailable => "port unavailable (code 4)".into(),
            Self::PartialSucceed => "partly sent (code 5)".into(),
            Self::Other(b) => format!("other error (code {b})"),
        }
    }
}

/// Send SMS result (type 3), gateway to server: the network's word on one
/// number of a send request.
///
/// Layout: count of numbers (1), number (24), port (1), result (1), count of
/// slices (1), succeeded slices (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsResult {
    pub count: u8,
    pub number: String,
    pub port: u8,
    pub code: SendCode,
    pub slices: u8,
    pub succeeded: u8,
}

/// Received SMS (type 5), gateway to server.
///
/// Layout: number (24), type (1), port (1), timestamp (15, text
/// "yyyyMMddHHmmss"), timezone (1, signed), encoding (1), content length
/// (2), content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSms {
    pub number: String,
    pub msg_type: u8,
    pub port: u8,
    pub timestamp: String,
    pub timezone: i8,
    pub encoding: TextEncoding,
    /// The content bytes as received: the dedupe key hashes these, not the
    /// decoded text, so a lossy decode cannot merge two messages.
    pub content: Vec<u8>,
}

impl ReceivedSms {
    pub fn text(&self) -> String {
        decode_text(&self.content, self.encoding)
    }
}

/// SIM state of one port in a status report (type 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    Works,
    NoSim,
    NotRegistered,
    Unavailable,
    Other(u8),
}

impl PortState {
    pub fn from_byte(b: u8) -> Self {
        match b {
            0 => Self::Works,
            1 => Self::NoSim,
            2 => Self::NotRegistered,
            3 => Self::Unavailable,
            b => Self::Other(b),
        }
    }
    pub fn byte(self) -> u8 {
        match self {
            Self::Works => 0,
            Self::NoSim => 1,
            Self::NotRegistered => 2,
            Self::Unavailable => 3,
            Self::Other(b) => b,
        }
    }
}

/// Send USSD request (type 9): port (1), type (1: 1 send, 2 end session),
/// length (2), content (ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendUssd {
    pub port: u8,
    pub ussd_type: u8,
    pub content: Vec<u8>,
}

/// Received USSD (type 11): port (1), status (1), length (2), encoding (1),
/// content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedUssd {
    pub port: u8,
    pub status: u8,
    pub encoding: TextEncoding,
    pub content: Vec<u8>,
}

/// SMS delivery receipt (type 0x11, added in v2.1).
///
/// Layout after the only public client that parses it (igofed
/// DwgSmsServer.Net): port (1), number (23), receipt id (1), timestamp (15),
/// timezone (1), state (1) = 42 bytes. A 43-byte body is read with a
/// 24-byte number, the width every other number field has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsReceipt {
    pub port: u8,
    pub number: String,
    pub receipt_id: u8,
    pub timestamp: String,
    pub timezone: i8,
    /// GSM TP-Status: 0–31 delivered, 32–63 still trying, 64+ failed.
    pub state: u8,
}

/// The authentication request (type 15): user and password, 16 bytes each,
/// NUL padded. Kept as the raw fields so they are compared in constant
/// time; the password never appears in Debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub user: [u8; CRED_LEN],
    pub password: [u8; CRED_LEN],
}

impl AuthRequest {
    /// Builds the request; None when a value does not fit its field (15
    /// bytes and a NUL).
    pub fn new(user: &str, password: &str) -> Option<Self> {
        Some(Self {
            user: pad_cred(user)?,
            password: pad_cred(password)?,
        })
    }
    /// The user, for the journal.
    pub fn user_lossy(&self) -> String {
        trim_nul_lossy(&self.user)
    }
}

impl fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthRequest")
            .field("user", &self.user_lossy())
            .field("password", &"***")
            .finish()
    }
}

/// A credential in its 16-byte field; None when longer than 15 bytes (the
/// field keeps room for a terminating NUL, as the public clients do).
pub fn pad_cred(s: &str) -> Option<[u8; CRED_LEN]> {
    let b = s.as_bytes();
    if b.len() >= CRED_LEN {
        return None;
    }
    let mut out = [0u8; CRED_LEN];
    out[..b.len()].copy_from_slice(b);
    Some(out)
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    KeepAlive,
    SendSms(SendSms),
    SendSmsResponse(SendCode),
    SendSmsResult(SmsResult),
    SendSmsResultAck(Ack),
    ReceiveSms(ReceivedSms),
    ReceiveSmsAck(Ack),
    /// One state per port, port 0 first.
    PortStatus(Vec<PortState>),
    PortStatusAck(Ack),
    SendUssd(SendUssd),
    SendUssdResponse(SendCode),
    ReceiveUssd(ReceivedUssd),
    ReceiveUssdAck(Ack),
    /// One CSQ RSSI value per port (0–31, 99 unknown), port 0 first.
    CsqRssi(Vec<u8>),
    CsqRssiAck(Ack),
    Auth(AuthRequest),
    AuthResponse(Ack),
    SmsReceipt(SmsReceipt),
    SmsReceiptAck(Ack),
    /// A type this code does not know, body kept.
    Unknown {
        kind: u16,
        body: Vec<u8>,
    },
    /// A known type whose body does not parse. Framing is intact (the
    /// length field said where it ends), so the stream goes on.
    Malformed {
        kind: u16,
        reason: String,
    },
}

impl Body {
    pub fn kind(&self) -> u16 {
        use kind::*;
        match self {
            Self::KeepAlive => KEEP_ALIVE,
            Self::SendSms(_) => SEND_SMS,
            Self::SendSmsResponse(_) => SEND_SMS_RESPONSE,
            Self::SendSmsResult(_) => SEND_SMS_RESULT,
            Self::SendSmsResultAck(_) => SEND_SMS_RESULT_ACK,
            Self::ReceiveSms(_) => RECEIVE_SMS,
            Self::ReceiveSmsAck(_) => RECEIVE_SMS_ACK,
            Self::PortStatus(_) => PORT_STATUS,
            Self::PortStatusAck(_) => PORT_STATUS_ACK,
            Self::SendUssd(_) => SEND_USSD,
            Self::SendUssdResponse(_) => SEND_USSD_RESPONSE,
            Self::ReceiveUssd(_) => RECEIVE_USSD,
            Self::ReceiveUssdAck(_) => RECEIVE_USSD_ACK,
            Self::CsqRssi(_) => CSQ_RSSI,
            Self::CsqRssiAck(_) => CSQ_RSSI_ACK,
            Self::Auth(_) => AUTH,
            Self::AuthResponse(_) => AUTH_RESPONSE,
            Self::SmsReceipt(_) => SMS_RECEIPT,
            Self::SmsReceiptAck(_) => SMS_RECEIPT_ACK,
            Self::Unknown { kind, .. } | Self::Malformed { kind, .. } => *kind,
        }
    }
}

/// A bounds-checked reader over a body: every read says whether the bytes
/// were there, so no input can index out of range.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("{what}: needs {n} bytes, {} left", self.buf.len()));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// A fixed-width text field: up to the first NUL, lossy, trimmed.
fn trim_nul_lossy(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).trim().to_string()
}

fn put_fixed(
    out: &mut Vec<u8>,
    s: &str,
    width: usize,
    field: &'static str,
) -> Result<(), CodecError> {
    let b = s.as_bytes();
    // Keep one NUL at the end: readers stop at the first NUL.
    if b.len() >= width {
        return Err(CodecError::FieldTooLong {
            field,
            len: b.len(),
            max: width - 1,
        });
    }
    out.extend_from_slice(b);
    out.resize(out.len() + (width - b.len()), 0);
    Ok(())
}

fn len16(n: usize, field: &'static str) -> Result<u16, CodecError> {
    u16::try_from(n).map_err(|_| CodecError::FieldTooLong {
        field,
        len: n,
        max: u16::MAX as usize,
    })
}

fn parse_body(kind: u16, body: &[u8]) -> Result<Body, String> {
    use kind::*;
    let mut r = Reader { buf: body };
    let ack = |r: &mut Reader<'_>| -> Result<Ack, String> { Ok(Ack(r.u8("result")?)) };
    Ok(match kind {
        KEEP_ALIVE => Body::KeepAlive,
        SEND_SMS => {
            let port = r.u8("port")?;
            let encoding = TextEncoding::from_byte(r.u8("encoding")?);
            let msg_type = r.u8("type")?;
            let count = r.u8("count of numbers")?;
            let mut numbers = Vec::with_capacity(count as usize);
            for _ in 0..count {
                numbers.push(trim_nul_lossy(r.take(NUMBER_LEN, "number")?));
            }
            let len = r.u16("content length")? as usize;
            let content = r.take(len, "content")?;
            Body::SendSms(SendSms {
                port,
                encoding,
                msg_type,
                numbers,
                text: decode_text(content, encoding),
            })
        }
        SEND_SMS_RESPONSE => Body::SendSmsResponse(SendCode::from_byte(r.u8("result")?)),
        SEND_SMS_RESULT => Body::SendSmsResult(SmsResult {
            count: r.u8("count of numbers")?,
            number: trim_nul_lossy(r.take(NUMBER_LEN, "number")?),
            port: r.u8("port")?,
            code: SendCode::from_byte(r.u8("result")?),
            slices: r.u8("count of slices")?,
            succeeded: r.u8("succeeded slices")?,
        }),
        SEND_SMS_RESULT_ACK => Body::SendSmsResultAck(ack(&mut r)?),
        RECEIVE_SMS => {
            let number = trim_nul_lossy(r.take(NUMBER_LEN, "number")?);
            let msg_type = r.u8("type")?;
            let port = r.u8("port")?;
            let timestamp = trim_nul_lossy(r.take(TIMESTAMP_LEN, "timestamp")?);
            let timezone = r.u8("timezone")? as i8;
            let encoding = TextEncoding::from_byte(r.u8("encoding")?);
            let len = r.u16("content length")? as usize;
            let content = r.take(len, "content")?.to_vec();
            Body::ReceiveSms(ReceivedSms {
                number,
                msg_type,
                port,
                timestamp,
                timezone,
                encoding,
                content,
            })
        }
        RECEIVE_SMS_ACK => Body::ReceiveSmsAck(ack(&mut r)?),
        PORT_STATUS | CSQ_RSSI => {
            let count = r.u8("count of ports")? as usize;
            let rest = r.rest();
            // Lenient: a report shorter than its count gives the ports it
            // has; the missing ones keep their last known state.
            let vals = &rest[..count.min(rest.len())];
            if kind == PORT_STATUS {
                Body::PortStatus(vals.iter().map(|&b| PortState::from_byte(b)).collect())
            } else {
                Body::CsqRssi(vals.to_vec())
            }
        }
        PORT_STATUS_ACK => Body::PortStatusAck(ack(&mut r)?),
        SEND_USSD => {
            let port = r.u8("port")?;
            let ussd_type = r.u8("type")?;
            let len = r.u16("content length")? as usize;
            Body::SendUssd(SendUssd {
                port,
                ussd_type,
                content: r.take(len, "content")?.to_vec(),
            })
        }
        SEND_USSD_RESPONSE => Body::SendUssdResponse(SendCode::from_byte(r.u8("result")?)),
        RECEIVE_USSD => {
            let port = r.u8("port")?;
            let status = r.u8("status")?;
            let len = r.u16("content length")? as usize;
            let encoding = TextEncoding::from_byte(r.u8("encoding")?);
            Body::ReceiveUssd(ReceivedUssd {
                port,
                status,
                encoding,
                content: r.take(len, "content")?.to_vec(),
            })
        }
        RECEIVE_USSD_ACK => Body::ReceiveUssdAck(ack(&mut r)?),
        CSQ_RSSI_ACK => Body::CsqRssiAck(ack(&mut r)?),
        AUTH => {
            let mut user = [0u8; CRED_LEN];
            let mut password = [0u8; CRED_LEN];
            user.copy_from_slice(r.take(CRED_LEN, "user")?);
            password.copy_from_slice(r.take(CRED_LEN, "password")?);
            Body::Auth(AuthRequest { user, password })
        }
        AUTH_RESPONSE => Body::AuthResponse(ack(&mut r)?),
        SMS_RECEIPT => {
            let number_len = if body.len() >= 43 { NUMBER_LEN } else { 23 };
            Body::SmsReceipt(SmsReceipt {
                port: r.u8("port")?,
                number: trim_nul_lossy(r.take(number_len, "number")?),
                receipt_id: r.u8("receipt id")?,
                timestamp: trim_nul_lossy(r.take(TIMESTAMP_LEN, "timestamp")?),
                timezone: r.u8("timezone")? as i8,
                state: r.u8("state")?,
            })
        }
        SMS_RECEIPT_ACK => Body::SmsReceiptAck(ack(&mut r)?),
        other => Body::Unknown {
            kind: other,
            body: body.to_vec(),
        },
    })
}

fn body_bytes(body: &Body) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    match body {
        Body::KeepAlive => {}
        Body::SendSms(s) => {
            let count = u8::try_from(s.numbers.len()).map_err(|_| CodecError::FieldTooLong {
                field: "numbers",
                len: s.numbers.len(),
                max: 255,
            })?;
            out.extend_from_slice(&[s.port, s.encoding.byte(), s.msg_type, count]);
            for n in &s.numbers {
                put_fixed(&mut out, n, NUMBER_LEN, "number")?;
            }
            let content = encode_text(&s.text, s.encoding);
            if content.len() > MAX_TEXT_BYTES {
                return Err(CodecError::FieldTooLong {
                    field: "text",
                    len: content.len(),
                    max: MAX_TEXT_BYTES,
                });
            }
            out.put_u16(len16(content.len(), "text")?);
            out.extend_from_slice(&content);
        }
        Body::SendSmsResponse(c) | Body::SendUssdResponse(c) => out.push(c.byte()),
        Body::SendSmsResult(r) => {
            out.push(r.count);
            put_fixed(&mut out, &r.number, NUMBER_LEN, "number")?;
            out.extend_from_slice(&[r.port, r.code.byte(), r.slices, r.succeeded]);
        }
        Body::SendSmsResultAck(a)
        | Body::ReceiveSmsAck(a)
        | Body::PortStatusAck(a)
        | Body::ReceiveUssdAck(a)
        | Body::CsqRssiAck(a)
        | Body::AuthResponse(a)
        | Body::SmsReceiptAck(a) => out.push(a.0),
        Body::ReceiveSms(m) => {
            put_fixed(&mut out, &m.number, NUMBER_LEN, "number")?;
            out.extend_from_slice(&[m.msg_type, m.port]);
            put_fixed(&mut out, &m.timestamp, TIMESTAMP_LEN, "timestamp")?;
            out.extend_from_slice(&[m.timezone as u8, m.encoding.byte()]);
            out.put_u16(len16(m.content.len(), "content")?);
            out.extend_from_slice(&m.content);
        }
        Body::PortStatus(states) => {
            let count = u8::try_from(states.len()).map_err(|_| CodecError::FieldTooLong {
                field: "ports",
                len: states.len(),
                max: 255,
            })?;
            out.push(count);
            out.extend(states.iter().map(|s| s.byte()));
        }
        Body::CsqRssi(values) => {
            let count = u8::try_from(values.len()).map_err(|_| CodecError::FieldTooLong {
                field: "ports",
                len: values.len(),
                max: 255,
            })?;
            out.push(count);
            out.extend_from_slice(values);
        }
        Body::SendUssd(u) => {
            out.extend_from_slice(&[u.port, u.ussd_type]);
            out.put_u16(len16(u.content.len(), "content")?);
            out.extend_from_slice(&u.content);
        }
        Body::ReceiveUssd(u) => {
            out.extend_from_slice(&[u.port, u.status]);
            out.put_u16(len16(u.content.len(), "content")?);
            out.push(u.encoding.byte());
            out.extend_from_slice(&u.content);
        }
        Body::Auth(a) => {
            out.extend_from_slice(&a.user);
            out.extend_from_slice(&a.password);
        }
        Body::SmsReceipt(r) => {
            out.push(r.port);
            put_fixed(&mut out, &r.number, 23, "number")?;
            out.push(r.receipt_id);
            put_fixed(&mut out, &r.timestamp, TIMESTAMP_LEN, "timestamp")?;
            out.extend_from_slice(&[r.timezone as u8, r.state]);
        }
        Body::Unknown { body, .. } => out.extend_from_slice(body),
        // Nothing sensible to write for a body we could not read.
        Body::Malformed { .. } => {}
    }
    if out.len() > MAX_BODY {
        return Err(CodecError::BodyTooLong { len: out.len() });
    }
    Ok(out)
}

/// Serialises a frame.
pub fn encode_frame(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    let body = body_bytes(&frame.body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    // body_bytes bounds the body to MAX_BODY, so it fits in u32.
    out.put_u32(body.len() as u32);
    out.extend_from_slice(&frame.id.mac);
    out.put_u32(frame.id.time);
    out.put_u32(frame.id.serial);
    out.put_u16(frame.body.kind());
    out.put_u16(frame.flag);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads one frame from the front of `buf`: `Ok(None)` when more bytes are
/// needed, `Ok(Some((frame, used)))` otherwise. An error means the stream
/// is out of step for good (the length field is over the limit).
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, CodecError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len > MAX_BODY {
        return Err(CodecError::BodyTooLong { len });
    }
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&header[4..12]);
    let id = MsgId {
        mac,
        time: u32::from_be_bytes([header[12], header[13], header[14], header[15]]),
        serial: u32::from_be_bytes([header[16], header[17], header[18], header[19]]),
    };
    let kind = u16::from_be_bytes([header[20], header[21]]);
    let flag = u16::from_be_bytes([header[22], header[23]]);
    let body = parse_body(kind, body).unwrap_or_else(|reason| Body::Malformed { kind, reason });
    Ok(Some((Frame { id, flag, body }, HEADER_LEN + len)))
}

/// A stream decoder over [`decode_frame`] and [`encode_frame`], with the
/// shape of `tokio_util`'s codec traits (the daemon and the simulator wrap it
/// in them; this crate has no tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct DwgCodec;

impl DwgCodec {
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        match decode_frame(src)? {
            Some((frame, used)) => {
                src.advance(used);
                Ok(Some(frame))
            }
            None => {
                // Reserve what the announced frame needs (bounded by
                // MAX_BODY above) so a big body is read in few syscalls.
                if src.len() >= HEADER_LEN {
                    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
                    src.reserve((HEADER_LEN + len).saturating_sub(src.len()));
                }
                Ok(None)
            }
        }
    }

    pub fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&encode_frame(&frame)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
