//! Decoding: hex or bytes from `+CMGR`/`+CMGL`/`+CMT`/`+CDS` into a
//! [`Tpdu`], with or without a service centre address in front, and
//! lenient where modems are known to be sloppy (warnings, not errors). Its
//! own file because it reads untrusted input and must never panic, which
//! is easier to check apart from the encoder.

use super::{
    Body, DecodeWarning, DecodedPdu, MAX_INPUT_OCTETS, MAX_OCTETS, MAX_SEPTETS, SmsDeliver,
    SmsStatusReport, SmsSubmit, Tpdu, UserData, Validity, parse_hex,
};
use crate::sms::address::Address;
use crate::sms::dcs::{Alphabet, DataCoding};
use crate::sms::reader::Reader;
use crate::sms::timestamp::ScTimestamp;
use crate::sms::udh::UserDataHeader;
use crate::sms::{PduError, gsm7, ucs2};

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
        // The length comes from the modem: checked, so a huge one (up to
        // usize::MAX on `+CMT: ,18446744073709551615`) is a hint that fits
        // nothing rather than an overflow.
        Some(n) if n.checked_add(usize::from(bytes[0]) + 1) == Some(bytes.len()) => Some(false),
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
