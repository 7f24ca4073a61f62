//! The AT byte stream cut into frames: final results, information lines,
//! the `> ` prompt, unsolicited codes (URCs) and command echoes.
//!
//! Pure and total: any bytes give frames (at worst [`Frame::Garbage`]),
//! never an error or a panic, so it can be fuzzed and fed real modem dumps.
//! What the decoder cannot know (whether `+CREG: 1` answers our `AT+CREG?`
//! or is unsolicited) it leaves to the session as [`Frame::Line`]; what is
//! never a reply to anything we send (`+CMTI`, `+CMT`, `+CDS`, `RING`,
//! vendor codes) it marks as [`Frame::Urc`] so a URC in the middle of a
//! command's reply cannot be mistaken for it (at-modems.md §1.5).

use bytes::{Buf, BytesMut};

/// A line longer than this with no line end is noise: the longest real line
/// is a PDU (at most 176 octets, 352 hex digits) or a capability list.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The end of a command's reply.
    Final(FinalResult),
    /// An information line: the reply to the command in flight, or an
    /// unsolicited code only the session can tell (`+CREG:`, `+CPIN:`).
    Line(String),
    /// `+CMGR:` / `+CMGL:` header with the PDU line that follows it (None
    /// when the slot was empty and the final result came instead).
    Record {
        header: String,
        pdu: Option<String>,
    },
    /// The `> ` that asks for the PDU after `AT+CMGS=<n>`.
    Prompt,
    Urc(Urc),
    /// Our own command echoed back (echo is on until `ATE0`).
    Echo(String),
    /// Bytes that cannot be a line: too long, or binary noise.
    Garbage(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    Ok,
    /// Bare `ERROR` (or a vendor form such as Huawei's
    /// `COMMAND NOT SUPPORT`).
    Error(String),
    /// `+CME ERROR: <n|text>`: a mobile equipment error.
    Cme(ErrorCode),
    /// `+CMS ERROR: <n|text>`: a message service error.
    Cms(ErrorCode),
}

/// A numeric error code, or the words a modem in `+CMEE=2` prints (mapped
/// back to the number when it is one of the standard texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: Option<u16>,
    pub text: String,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(c) if self.text.is_empty() || self.text == c.to_string() => write!(f, "{c}"),
            Some(c) => write!(f, "{c} ({})", self.text),
            None => f.write_str(&self.text),
        }
    }
}

impl std::fmt::Display for FinalResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FinalResult::Ok => f.write_str("OK"),
            FinalResult::Error(t) => f.write_str(t),
            FinalResult::Cme(c) => write!(f, "+CME ERROR: {c}"),
            FinalResult::Cms(c) => write!(f, "+CMS ERROR: {c}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Urc {
    /// `+CMTI: <mem>,<index>`: a message was stored.
    Cmti { mem: String, index: u32 },
    /// `+CDSI: <mem>,<index>`: a status report was stored.
    Cdsi { mem: String, index: u32 },
    /// `+CMT: [<alpha>],<length>` and the PDU on the next line.
    Cmt { length: Option<usize>, pdu: String },
    /// `+CDS: <length>` and the PDU on the next line.
    Cds { length: Option<usize>, pdu: String },
    /// `RING`, `+CRING`, `+CLIP`, `NO CARRIER`...: calls, which we ignore
    /// (we never dial, so `NO CARRIER` is never our final result).
    Call(String),
    /// Boot codes (`RDY`, `SMS Ready`, `+CFUN: 1`...): after an unexpected
    /// modem reset its settings (echo, CNMI, PDU mode) are gone.
    Boot(String),
    /// `^RSSI`, `^BOOT`, `+ZDONR`, `+WIND`, `+QIND`...: vendor noise.
    Vendor(String),
}

/// The AT stream decoder. It keeps one piece of state: after a header that
/// announces a PDU (`+CMT:`, `+CDS:`, `+CMGR:`, `+CMGL:`) the next line is
/// that PDU, whatever it looks like.
#[derive(Debug, Default)]
pub struct AtCodec {
    pending: Option<Pending>,
    /// A final result that came where a record's PDU was due; handed out
    /// right after the (empty) record.
    stash_final: Option<FinalResult>,
}

#[derive(Debug)]
enum Pending {
    Cmt(Option<usize>),
    Cds(Option<usize>),
    Record(String),
}

impl AtCodec {
    pub fn new() -> Self {
        Self::default()
    }

    fn line(&mut self, raw: &[u8]) -> Option<Frame> {
        // NUL and other control bytes come with resets and line noise; a
        // line that is mostly binary is garbage, not text.
        let printable = raw
            .iter()
            .filter(|b| (0x20..0x7F).contains(*b) || **b >= 0x80 || **b == b'\t')
            .count();
        let ctrl = raw.len() - printable;
        if ctrl > 0 && ctrl * 4 > raw.len() {
            return Some(Frame::Garbage(raw.len()));
        }
        let text: String = String::from_utf8_lossy(raw)
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if let Some(p) = self.pending.take() {
            // A final result instead of the announced PDU: the record was
            // empty (`+CMGR: 0,,0` then OK on some modems).
            if let Some(f) = final_result(text) {
                return Some(match p {
                    Pending::Record(header) => {
                        // The final result is not lost: the session sees it
                        // right after the empty record.
                        self.stash_final = Some(f);
                        Frame::Record { header, pdu: None }
                    }
                    _ => Frame::Final(f),
                });
            }
            return Some(match p {
                Pending::Cmt(length) => Frame::Urc(Urc::Cmt {
                    length,
                    pdu: text.to_string(),
                }),
                Pending::Cds(length) => Frame::Urc(Urc::Cds {
                    length,
                    pdu: text.to_string(),
                }),
                Pending::Record(header) => Frame::Record {
                    header,
                    pdu: Some(text.to_string()),
                },
            });
        }
        Some(self.classify(text))
    }

    fn classify(&mut self, text: &str) -> Frame {
        if text == ">" {
            return Frame::Prompt;
        }
        if let Some(f) = final_result(text) {
            return Frame::Final(f);
        }
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("AT") {
            return Frame::Echo(text.to_string());
        }
        if let Some(rest) = strip(text, "+CMTI:") {
            if let Some((mem, index)) = mem_index(rest) {
                return Frame::Urc(Urc::Cmti { mem, index });
            }
            return Frame::Urc(Urc::Vendor(text.to_string()));
        }
        if let Some(rest) = strip(text, "+CDSI:") {
            if let Some((mem, index)) = mem_index(rest) {
                return Frame::Urc(Urc::Cdsi { mem, index });
            }
            return Frame::Urc(Urc::Vendor(text.to_string()));
        }
        if let Some(rest) = strip(text, "+CMT:") {
            self.pending = Some(Pending::Cmt(last_int(rest)));
            return self.next_or_nothing();
        }
        if let Some(rest) = strip(text, "+CDS:") {
            // PDU mode: `+CDS: <length>`; text mode puts the whole report
            // on one line with many fields, and no PDU follows.
            if rest.split(',').count() == 1 {
                self.pending = Some(Pending::Cds(last_int(rest)));
                return self.next_or_nothing();
            }
            return Frame::Urc(Urc::Vendor(text.to_string()));
        }
        if strip(text, "+CMGR:").is_some() || strip(text, "+CMGL:").is_some() {
            self.pending = Some(Pending::Record(text.to_string()));
            return self.next_or_nothing();
        }
        const CALLS: &[&str] = &[
            "RING",
            "+CRING:",
            "+CLIP:",
            "NO CARRIER",
            "BUSY",
            "NO ANSWER",
            "NO DIALTONE",
            "CONNECT",
        ];
        if CALLS.iter().any(|p| upper.starts_with(p)) {
            return Frame::Urc(Urc::Call(text.to_string()));
        }
        const BOOT: &[&str] = &[
            "RDY",
            "CALL READY",
            "SMS READY",
            "SMS DONE",
            "PB DONE",
            "*ATREADY",
            "+CFUN:",
            "+QIND: PB DONE",
        ];
        if BOOT.iter().any(|p| upper.starts_with(p)) {
            return Frame::Urc(Urc::Boot(text.to_string()));
        }
        const VENDOR: &[&str] = &[
            "^", "+ZDONR", "+ZPASR", "+ZEND", "+WIND:", "+QIND:", "+CIEV:", "+PSUTTZ", "*PSUTTZ",
            "DST:", "+CTZV:", "+CBM:", "+CUSD:", "+STIN:",
        ];
        if VENDOR.iter().any(|p| upper.starts_with(p)) {
            return Frame::Urc(Urc::Vendor(text.to_string()));
        }
        Frame::Line(text.to_string())
    }

    /// Header lines that announce a PDU produce their frame with the next
    /// line; `Garbage(0)` is never produced, so this placeholder is replaced
    /// by the decode loop ("no frame yet").
    fn next_or_nothing(&self) -> Frame {
        Frame::Garbage(0)
    }
}

fn strip<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text[prefix.len()..].trim())
}

/// `"SM",3` → ("SM", 3). The memory may be unquoted.
fn mem_index(rest: &str) -> Option<(String, u32)> {
    let (mem, index) = rest.rsplit_once(',')?;
    let index = index.trim().parse().ok()?;
    Some((mem.trim().trim_matches('"').to_string(), index))
}

/// The last integer of a comma list: the length in `+CMT: ,24`,
/// `+CMGR: 0,,24`, `+CMGL: 1,0,,24` (at-modems.md §1.7: "the length is
/// the *last* integer").
pub fn last_int(rest: &str) -> Option<usize> {
    rest.rsplit(',').next()?.trim().parse().ok()
}

/// Final result codes (ModemManager's mm-serial-parsers.c list, and the
/// vendor forms at-modems.md §1.1 names).
pub fn final_result(text: &str) -> Option<FinalResult> {
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "OK" | "0" => return Some(FinalResult::Ok),
        "ERROR" | "4" | "COMMAND NOT SUPPORT" | "NA" | "TOO MANY PARAMETERS" => {
            return Some(FinalResult::Error(text.to_string()));
        }
        _ => {}
    }
    if let Some(rest) = strip(text, "+CME ERROR:") {
        return Some(FinalResult::Cme(error_code(rest, cme_text_code)));
    }
    if let Some(rest) = strip(text, "+CMS ERROR:") {
        return Some(FinalResult::Cms(error_code(rest, cms_text_code)));
    }
    if strip(text, "MODEM ERROR:").is_some() || strip(text, "+EXT ERROR:").is_some() {
        return Some(FinalResult::Error(text.to_string()));
    }
    None
}

fn error_code(rest: &str, by_text: fn(&str) -> Option<u16>) -> ErrorCode {
    let rest = rest.trim().trim_matches('"');
    match rest.parse::<u16>() {
        Ok(code) => ErrorCode {
            code: Some(code),
            text: String::new(),
        },
        Err(_) => ErrorCode {
            code: by_text(&rest.to_ascii_lowercase()),
            text: rest.to_string(),
        },
    }
}

/// `+CMEE=2` words for the CMS codes we act on (TS 27.005 §3.2.5).
fn cms_text_code(t: &str) -> Option<u16> {
    let t = t.replace("(u)", "");
    Some(match t.trim() {
        "me failure" => 300,
        "sms service of me reserved" => 301,
        "operation not allowed" => 302,
        "operation not supported" => 303,
        "invalid pdu mode parameter" => 304,
        "invalid text mode parameter" => 305,
        "sim not inserted" => 310,
        "sim pin required" => 311,
        "ph-sim pin required" => 312,
        "sim failure" => 313,
        "sim busy" => 314,
        "sim wrong" => 315,
        "sim puk required" => 316,
        "sim pin2 required" => 317,
        "sim puk2 required" => 318,
        "memory failure" => 320,
        "invalid memory index" => 321,
        "memory full" => 322,
        "smsc address unknown" => 330,
        "no network service" => 331,
        "network timeout" => 332,
        "no +cnma acknowledgement expected" => 340,
        "unknown error" => 500,
        _ => return None,
    })
}

/// `+CMEE=2` words for CME codes (TS 27.007 §9.2).
fn cme_text_code(t: &str) -> Option<u16> {
    Some(match t.trim() {
        "phone failure" => 0,
        "operation not allowed" => 3,
        "operation not supported" => 4,
        "sim not inserted" => 10,
        "sim pin required" => 11,
        "sim puk required" => 12,
        "sim failure" => 13,
        "sim busy" => 14,
        "sim wrong" => 15,
        "incorrect password" => 16,
        "sim pin2 required" => 17,
        "sim puk2 required" => 18,
        "memory full" => 20,
        "invalid index" => 21,
        "not found" => 22,
        "no network service" => 30,
        "network timeout" => 31,
        "unknown" => 100,
        _ => return None,
    })
}

// The decoder's two entry points have `tokio_util::codec::Decoder`'s shape
// (the daemon's serial reader wraps them in that trait; this crate has no
// tokio), and never return an error: any bytes give frames.
impl AtCodec {
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        loop {
            if let Some(f) = self.stash_final.take() {
                return Ok(Some(Frame::Final(f)));
            }
            // Line ends: CR, LF, or both in any number (Huawei sends
            // `\r\r\n`); empty lines between them are skipped.
            match buf.iter().position(|b| *b == b'\r' || *b == b'\n') {
                Some(end) => {
                    let raw = buf.split_to(end);
                    buf.advance(1);
                    if raw.len() > MAX_LINE {
                        return Ok(Some(Frame::Garbage(raw.len())));
                    }
                    match self.line(&raw) {
                        None | Some(Frame::Garbage(0)) => continue,
                        Some(f) => return Ok(Some(f)),
                    }
                }
                None => {
                    // The prompt has no line end: `\r\n> ` (a trailing space
                    // is usual but not certain), and nothing follows it until
                    // we send the PDU.
                    let rest = &buf[..];
                    let trimmed_start = rest.iter().take_while(|b| **b == b' ').count();
                    let body = &rest[trimmed_start..];
                    if body.first() == Some(&b'>')
                        && body[1..].iter().all(|b| *b == b' ')
                        && self.pending.is_none()
                    {
                        buf.clear();
                        return Ok(Some(Frame::Prompt));
                    }
                    if buf.len() > MAX_LINE {
                        let n = buf.len();
                        buf.clear();
                        self.pending = None;
                        return Ok(Some(Frame::Garbage(n)));
                    }
                    return Ok(None);
                }
            }
        }
    }

    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, std::io::Error> {
        match self.decode(buf)? {
            Some(f) => Ok(Some(f)),
            None if buf.is_empty() => Ok(None),
            None => {
                // A last line without its end (the modem went away while
                // writing it): decode it as a line rather than lose it.
                let raw = buf.split();
                Ok(self.line(&raw).filter(|f| *f != Frame::Garbage(0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in the given chunk sizes (cycled).
    pub(super) fn frames(input: &[u8], chunks: &[usize]) -> Vec<Frame> {
        let mut codec = AtCodec::new();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let n = chunks[i % chunks.len()].max(1).min(input.len() - at);
            buf.extend_from_slice(&input[at..at + n]);
            at += n;
            i += 1;
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        while let Some(f) = codec.decode_eof(&mut buf).unwrap() {
            out.push(f);
        }
        out
    }

    fn cms(code: u16) -> Frame {
        Frame::Final(FinalResult::Cms(ErrorCode {
            code: Some(code),
            text: String::new(),
        }))
    }

    #[test]
    fn prompt_without_line_end() {
        assert_eq!(frames(b"\r\n> ", &[100]), vec![Frame::Prompt]);
        assert_eq!(frames(b"\r\n>", &[100]), vec![Frame::Prompt]);
        // Fed byte by byte, the CR LF come first, then the prompt.
        assert_eq!(frames(b"\r\n> ", &[1]), vec![Frame::Prompt]);
        // python-gsmmodem's fakes end the prompt with a line end.
        assert_eq!(frames(b"> \r\n", &[100]), vec![Frame::Prompt]);
    }

    #[test]
    fn urcs_inside_a_cmgs_reply() {
        let input = b"\r\n+ZDONR: \"01\",\"01\"\r\n\r\n> \r\n+CMTI: \"SM\",3\r\n+CMGS: 17\r\n\r\n+ZPASR: \"UMTS\"\r\nOK\r\n";
        let want = vec![
            Frame::Urc(Urc::Vendor("+ZDONR: \"01\",\"01\"".into())),
            Frame::Prompt,
            Frame::Urc(Urc::Cmti {
                mem: "SM".into(),
                index: 3,
            }),
            Frame::Line("+CMGS: 17".into()),
            Frame::Urc(Urc::Vendor("+ZPASR: \"UMTS\"".into())),
            Frame::Final(FinalResult::Ok),
        ];
        for chunk in 1..12 {
            assert_eq!(frames(input, &[chunk]), want, "chunk {chunk}");
        }
    }

    #[test]
    fn two_line_urcs_and_records() {
        let pdu = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
        let input = format!(
            "+CMT: ,24\r\n{pdu}\r\n+CDS: 26\r\n{pdu}\r\n+CMGL: 1,0,,24\r\n{pdu}\r\n+CMGR: 0,,0\r\nOK\r\n"
        );
        assert_eq!(
            frames(input.as_bytes(), &[7]),
            vec![
                Frame::Urc(Urc::Cmt {
                    length: Some(24),
                    pdu: pdu.into()
                }),
                Frame::Urc(Urc::Cds {
                    length: Some(26),
                    pdu: pdu.into()
                }),
                Frame::Record {
                    header: "+CMGL: 1,0,,24".into(),
                    pdu: Some(pdu.into())
                },
                Frame::Record {
                    header: "+CMGR: 0,,0".into(),
                    pdu: None
                },
                Frame::Final(FinalResult::Ok),
            ]
        );
    }

    #[test]
    fn telit_blank_line_before_the_pdu_and_crcrlf() {
        assert_eq!(
            frames(b"+CMGR: 0,\"\",50\r\n\r\n0791AB\r\r\nOK\r\r\n", &[3]),
            vec![
                Frame::Record {
                    header: "+CMGR: 0,\"\",50".into(),
                    pdu: Some("0791AB".into())
                },
                Frame::Final(FinalResult::Ok)
            ]
        );
    }

    #[test]
    fn errors_numeric_and_verbose() {
        assert_eq!(frames(b"\r\n+CMS ERROR: 500\r\n", &[64]), vec![cms(500)]);
        assert_eq!(
            frames(b"+CMS ERROR: SMSC address unknown\r\n", &[64]),
            vec![Frame::Final(FinalResult::Cms(ErrorCode {
                code: Some(330),
                text: "SMSC address unknown".into()
            }))]
        );
        assert_eq!(
            frames(b"+CME ERROR: SIM busy\r\n", &[64]),
            vec![Frame::Final(FinalResult::Cme(ErrorCode {
                code: Some(14),
                text: "SIM busy".into()
            }))]
        );
        assert_eq!(
            frames(b"COMMAND NOT SUPPORT\r\n", &[64]),
            vec![Frame::Final(FinalResult::Error(
                "COMMAND NOT SUPPORT".into()
            ))]
        );
    }

    #[test]
    fn echo_boot_calls_and_garbage() {
        let mut input = b"AT+CSQ\r\r\n+CSQ: 20,99\r\nRDY\r\nRING\r\n^RSSI:12\r\n".to_vec();
        input.extend_from_slice(&[0, 1, 2, 3, 0xff, 0, 0, b'\r']);
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend_from_slice(b"\r\nOK\r\n");
        let got = frames(&input, &[5000]);
        assert_eq!(got[0], Frame::Echo("AT+CSQ".into()));
        assert_eq!(got[1], Frame::Line("+CSQ: 20,99".into()));
        assert_eq!(got[2], Frame::Urc(Urc::Boot("RDY".into())));
        assert_eq!(got[3], Frame::Urc(Urc::Call("RING".into())));
        assert_eq!(got[4], Frame::Urc(Urc::Vendor("^RSSI:12".into())));
        assert!(matches!(got[5], Frame::Garbage(_)));
        assert!(matches!(got[6], Frame::Garbage(_)));
        assert_eq!(got[7], Frame::Final(FinalResult::Ok));
        assert_eq!(got.len(), 8);
    }

    proptest::proptest! {
        /// Any bytes, in any chunks: no panic, no error, and the buffer
        /// never grows past a line's worth.
        #[test]
        fn any_bytes_are_safe(input in proptest::collection::vec(proptest::num::u8::ANY, 0..3000), chunk in 1usize..64) {
            let mut codec = AtCodec::new();
            let mut buf = BytesMut::new();
            for piece in input.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(_f) = codec.decode(&mut buf).unwrap() {}
                proptest::prop_assert!(buf.len() <= MAX_LINE + chunk);
            }
            while codec.decode_eof(&mut buf).unwrap().is_some() {}
        }

        /// How the bytes are cut into reads does not change the frames.
        #[test]
        fn chunking_does_not_matter(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                "OK", "ERROR", "+CMS ERROR: 304", "+CMTI: \"SM\",1", "+CSQ: 9,99", "RING", "^RSSI:3",
                "+CMT: ,5\r\n0011223344", "+CMGL: 2,1,,5\r\n0011223344", "+CREG: 0,1", "AT+CMGS=5",
            ]), 0..20),
            chunk in 1usize..40,
        ) {
            let input: String = lines.iter().map(|l| format!("\r\n{l}\r\n")).collect();
            let whole = frames(input.as_bytes(), &[input.len().max(1)]);
            let cut = frames(input.as_bytes(), &[chunk]);
            proptest::prop_assert_eq!(whole, cut);
        }
    }
}
