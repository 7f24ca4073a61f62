//! Encoding: a [`Tpdu`] into bytes, and the SMS-SUBMIT PDUs for
//! `AT+CMGS` that send a text, one per segment with its concatenation
//! header. Its own file because sending only needs this half, and its
//! length checks mirror the decoder's from the other side.

use serde::Serialize;

use super::{Body, MAX_OCTETS, MAX_SEPTETS, SmsSubmit, Tpdu, UserData, Validity, to_hex};
use crate::sms::address::Address;
use crate::sms::dcs::{Alphabet, DataCoding};
use crate::sms::segment::{self, RefWidth};
use crate::sms::udh::{Concat, UserDataHeader};
use crate::sms::{PduError, gsm7, ucs2};

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

/// A timestamp that is not known (decoded as unreadable, `None`): digits
/// that are not decimal, so it reads back as unknown. Zeros would read back
/// as 2000-00-00 00:00:00.
const UNKNOWN_TIME: [u8; 7] = [0xFF; 7];

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
            out.extend(d.sc_timestamp.map_or(UNKNOWN_TIME, |t| t.to_octets()));
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
            out.extend(s.sc_timestamp.map_or(UNKNOWN_TIME, |t| t.to_octets()));
            out.extend(s.discharge_time.map_or(UNKNOWN_TIME, |t| t.to_octets()));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::decode_hex;

    /// Found by the `pdu_roundtrip` fuzz target: a status report whose
    /// timestamps are unreadable (the hex digit A) decodes with them
    /// unknown; re-encoded as zeros they read back as 2000-00-00 00:00:00.
    #[test]
    fn an_unknown_timestamp_stays_unknown() {
        let decoded = decode_hex("0606098121436587F9019012413064A0019012413045A000", None).unwrap();
        let Tpdu::StatusReport(r) = &decoded.tpdu else {
            panic!("{:?}", decoded.tpdu)
        };
        assert_eq!((r.sc_timestamp, r.discharge_time), (None, None));
        let bytes = encode_tpdu(&decoded.tpdu).unwrap();
        let (again, _) = crate::sms::decode_tpdu(&bytes).unwrap();
        assert_eq!(again, decoded.tpdu);
    }
}
