//! The PDU codec both ways.
//!
//! Encode then decode: any text to any address that parses, with any
//! submit options, gives PDUs that decode to the same destination, the same
//! service centre, the same flags and validity, concatenation headers that
//! number the parts 1..=n of n under one reference, and part texts that
//! join to the text.
//!
//! Decode then encode: any bytes that decode as a PDU re-encode, and what
//! is re-encoded decodes to the same TPDU (no field is lost or changed on
//! the way through our own encoder).
//!
//! Input: a flags byte (width, service centre, validity, report and
//! duplicate flags), then `number` LF `text` for the encoder; the same bytes
//! after the flags, as raw octets and as hex, for the decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms::{self, Address, RefWidth, ServiceCentre, SubmitOptions, Tpdu, Validity};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let (number, text) = text.split_once('\n').unwrap_or((text, ""));
        let reference = u16::from(flags).rotate_left(7) ^ 0xBEEF;
        let minutes = u32::from(flags) * 997;
        encode_then_decode(text, number, flags, reference, minutes);
    }
    decode_then_encode(rest);
    if let Ok(bytes) = sms::pdu::parse_hex(&String::from_utf8_lossy(rest)) {
        decode_then_encode(&bytes);
    }
});

fn encode_then_decode(text: &str, number: &str, flags: u8, reference: u16, minutes: u32) {
    let Ok(to) = Address::parse(number) else {
        return;
    };
    let width = if flags & 1 == 0 {
        RefWidth::Bits8
    } else {
        RefWidth::Bits16
    };
    let service_centre = match (flags >> 1) & 3 {
        0 => ServiceCentre::Omit,
        1 => ServiceCentre::ModemDefault,
        _ => ServiceCentre::Address(to.clone()),
    };
    let validity = (flags & 8 != 0).then_some(Validity::Relative { minutes });
    let options = SubmitOptions {
        status_report_request: flags & 16 != 0,
        validity,
        reject_duplicates: flags & 32 != 0,
        message_reference: flags,
        concat_reference: reference,
        ref_width: width,
        service_centre: service_centre.clone(),
    };
    let Ok(pdus) = sms::encode_submit(&to, text, &options) else {
        return;
    };
    let plan = sms::plan_with(text, width);
    assert_eq!(pdus.len(), plan.segments.max(1));
    let mut back = String::new();
    for (i, p) in pdus.iter().enumerate() {
        let decoded = sms::decode_hex(&p.hex, Some(p.tpdu_length)).expect("our own PDU decodes");
        assert_eq!(decoded.tpdu_length, p.tpdu_length);
        match &service_centre {
            ServiceCentre::Omit => assert!(!decoded.has_sca),
            ServiceCentre::ModemDefault => assert!(decoded.has_sca && decoded.smsc.is_none()),
            ServiceCentre::Address(a) => assert_eq!(decoded.smsc.as_ref(), Some(a)),
        }
        let Tpdu::Submit(s) = &decoded.tpdu else {
            panic!("an SMS-SUBMIT decodes as {:?}", decoded.tpdu)
        };
        assert_eq!(s.destination, to);
        assert_eq!(s.status_report_request, options.status_report_request);
        assert_eq!(s.reject_duplicates, options.reject_duplicates);
        assert_eq!(s.message_reference, options.message_reference);
        let expected_validity = validity.map(|v| match v {
            Validity::Relative { minutes } => {
                Validity::relative_from_octet(Validity::relative_octet(minutes))
            }
            other => other,
        });
        assert_eq!(s.validity, expected_validity);
        match (pdus.len(), s.user_data.concat()) {
            (1, None) => {}
            (n, Some(c)) if n > 1 => {
                assert_eq!(usize::from(c.total), n);
                assert_eq!(usize::from(c.sequence), i + 1);
                let want = match width {
                    RefWidth::Bits8 => reference & 0xFF,
                    RefWidth::Bits16 => reference,
                };
                assert_eq!(c.reference, want);
            }
            (n, c) => panic!("{n} parts, part {} has concat {c:?}", i + 1),
        }
        back.push_str(&s.user_data.body.text().expect("a text body"));
    }
    assert_eq!(back, text);
}

fn decode_then_encode(pdu: &[u8]) {
    let Ok(decoded) = sms::decode_bytes(pdu, None) else {
        return;
    };
    let Ok(bytes) = sms::encode_tpdu(&decoded.tpdu) else {
        return;
    };
    let (again, _) = sms::decode_tpdu(&bytes).expect("a re-encoded TPDU decodes");
    assert_eq!(again, decoded.tpdu);
}
