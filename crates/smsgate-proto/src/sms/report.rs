//! What `smsgate pdu decode` and `smsgate pdu encode` print: flat, stable
//! JSON a technician can read and a script can parse.

use serde::Serialize;

use super::PduError;
use super::address::{Address, AddressKind};
use super::pdu::{
    self, DecodedPdu, DeliveryOutcome, SubmitOptions, Tpdu, UserData, Validity, status_description,
};
use super::segment::{self, Encoding};
use super::timestamp::ScTimestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConcatReport {
    #[serde(rename = "ref")]
    pub reference: u16,
    pub total: u8,
    pub seq: u8,
    /// 8 or 16: the width of the reference.
    pub ref_bits: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub code: u8,
    pub outcome: DeliveryOutcome,
    pub meaning: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecodeReport {
    /// "deliver", "submit" or "status-report".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Sender (deliver), destination (submit) or recipient (status report).
    pub number: String,
    pub number_type: AddressKind,
    /// `None` for 8-bit data (see `data_hex`) and for reports without text.
    pub text: Option<String>,
    /// "gsm7", "8bit" or "ucs2"; `None` when there is no user data.
    pub encoding: Option<&'static str>,
    /// Service centre time stamp, RFC 3339 with the sender's offset.
    pub timestamp: Option<String>,
    pub concat: Option<ConcatReport>,
    pub smsc: Option<String>,
    pub tpdu_length: usize,
    pub message_reference: Option<u8>,
    pub status: Option<StatusReport>,
    pub discharge_time: Option<String>,
    pub validity: Option<Validity>,
    pub data_coding: Option<u8>,
    pub message_class: Option<u8>,
    pub protocol_id: Option<u8>,
    pub data_hex: Option<String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodeReport {
    pub encoding: Encoding,
    pub segments: usize,
    /// Hex for `AT+CMGS`, one per segment.
    pub pdus: Vec<String>,
    /// The `<length>` for `AT+CMGS=<length>` of each PDU.
    pub tpdu_lengths: Vec<usize>,
    pub destination: String,
    /// Septets or UTF-16 code units of the text.
    pub units: usize,
}

fn rfc3339(stamp: Option<ScTimestamp>) -> Option<String> {
    stamp.and_then(|t| t.to_rfc3339())
}

fn payload(user_data: Option<&UserData>) -> (Option<String>, Option<String>) {
    match user_data {
        None => (None, None),
        Some(ud) => match &ud.body {
            pdu::Body::Data(bytes) => (None, Some(pdu::to_hex(bytes))),
            body => (body.text(), None),
        },
    }
}

/// Builds the report for a decoded PDU.
pub fn describe(decoded: &DecodedPdu) -> DecodeReport {
    let user_data = decoded.tpdu.user_data();
    let (text, data_hex) = payload(user_data);
    let concat = user_data.and_then(UserData::concat).map(|c| ConcatReport {
        reference: c.reference,
        total: c.total,
        seq: c.sequence,
        ref_bits: match c.width {
            segment::RefWidth::Bits8 => 8,
            segment::RefWidth::Bits16 => 16,
        },
    });
    let base = |kind, address: &Address| DecodeReport {
        kind,
        number: address.to_string(),
        number_type: address.kind,
        text: text.clone(),
        encoding: user_data.map(|u| u.body.alphabet().name()),
        timestamp: None,
        concat: concat.clone(),
        smsc: decoded.smsc.as_ref().map(Address::to_string),
        tpdu_length: decoded.tpdu_length,
        message_reference: None,
        status: None,
        discharge_time: None,
        validity: None,
        data_coding: None,
        message_class: None,
        protocol_id: None,
        data_hex: data_hex.clone(),
        warnings: decoded.warnings.iter().map(ToString::to_string).collect(),
    };
    match &decoded.tpdu {
        Tpdu::Deliver(d) => DecodeReport {
            timestamp: rfc3339(d.sc_timestamp),
            data_coding: Some(d.data_coding.raw),
            message_class: d.data_coding.class,
            protocol_id: Some(d.protocol_id),
            ..base("deliver", &d.originator)
        },
        Tpdu::Submit(s) => DecodeReport {
            message_reference: Some(s.message_reference),
            validity: s.validity,
            data_coding: Some(s.data_coding.raw),
            message_class: s.data_coding.class,
            protocol_id: Some(s.protocol_id),
            ..base("submit", &s.destination)
        },
        Tpdu::StatusReport(r) => DecodeReport {
            timestamp: rfc3339(r.sc_timestamp),
            message_reference: Some(r.message_reference),
            status: Some(StatusReport {
                code: r.status,
                outcome: r.outcome(),
                meaning: status_description(r.status),
            }),
            discharge_time: rfc3339(r.discharge_time),
            data_coding: r.data_coding.map(|d| d.raw),
            message_class: r.data_coding.and_then(|d| d.class),
            protocol_id: r.protocol_id,
            ..base("status-report", &r.recipient)
        },
    }
}

/// Decodes hex as a modem prints it (with or without a service centre
/// address) into a report.
pub fn decode_report(hex: &str) -> Result<DecodeReport, PduError> {
    decode_report_with_length(hex, None)
}

/// As [`decode_report`], with the `<length>` the modem announced.
pub fn decode_report_with_length(
    hex: &str,
    tpdu_length: Option<usize>,
) -> Result<DecodeReport, PduError> {
    Ok(describe(&pdu::decode_hex(hex, tpdu_length)?))
}

/// Encodes `text` to `to` with the default options (delivery report asked,
/// 24 h validity, 8-bit concatenation reference 0, no service centre prefix).
pub fn encode_report(to: &str, text: &str) -> Result<EncodeReport, PduError> {
    encode_report_with(to, text, &SubmitOptions::default())
}

/// As [`encode_report`], with explicit options.
pub fn encode_report_with(
    to: &str,
    text: &str,
    options: &SubmitOptions,
) -> Result<EncodeReport, PduError> {
    let destination = Address::parse(to)?;
    let plan = segment::plan_with(text, options.ref_width);
    let pdus = pdu::encode_submit(&destination, text, options)?;
    Ok(EncodeReport {
        encoding: plan.encoding,
        segments: plan.segments,
        tpdu_lengths: pdus.iter().map(|p| p.tpdu_length).collect(),
        pdus: pdus.into_iter().map(|p| p.hex).collect(),
        destination: destination.to_string(),
        units: plan.units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_report_has_the_promised_fields() {
        let r = decode_report(
            "07911326040000F0040B911346610089F60000208062917314480CC8F71D14969741F977FD07",
        )
        .unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["type"], "deliver");
        assert_eq!(json["number"], "+31641600986");
        assert_eq!(json["text"], "How are you?");
        assert_eq!(json["encoding"], "gsm7");
        assert_eq!(json["timestamp"], "2002-08-26T19:37:41-01:00");
        assert!(json["concat"].is_null());
    }

    #[test]
    fn status_reports_say_what_happened() {
        let r = decode_report("06040D91945152991136F00160124130340A0160124130940A00").unwrap();
        assert_eq!(r.kind, "status-report");
        assert_eq!(r.number, "+4915259911630");
        assert_eq!(
            r.status.as_ref().map(|s| s.outcome),
            Some(DeliveryOutcome::Delivered)
        );
        assert_eq!(r.message_reference, Some(4));
        assert!(r.encoding.is_none());
    }

    #[test]
    fn encode_report_has_the_promised_fields() {
        let r = encode_report("+27820001111", "Hello World!").unwrap();
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["encoding"], "gsm7");
        assert_eq!(json["segments"], 1);
        assert_eq!(
            json["pdus"][0],
            "31000B917228001011F10000A70CC8329BFD065DDF72363904"
        );
        let long = encode_report("+27820001111", &"😀".repeat(40)).unwrap();
        assert_eq!((long.encoding, long.segments), (Encoding::Ucs2, 2));
        assert!(encode_report("not a number at all", "x").is_err());
    }
}
