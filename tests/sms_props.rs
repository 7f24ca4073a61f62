//! Properties of the SMS codec: what is encoded decodes to the same text,
//! segmentation never cuts a character in two, part counts agree with
//! `plan`, and no input makes the decoder panic.

use proptest::prelude::*;
use smsgate_proto::sms::{
    self, Address, Encoding, Reassembler, Reassembly, RefWidth, ServiceCentre, SubmitOptions, Tpdu,
    gsm7,
};

/// Every character GSM-7 can carry, extension table included.
const GSM7_CHARS: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\u{0C}^{}\\[~]|€";

fn gsm7_text(max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = GSM7_CHARS.chars().collect();
    proptest::collection::vec(proptest::sample::select(chars), 0..max)
        .prop_map(|v| v.into_iter().collect())
}

/// Text that forces UCS-2: GSM-7 characters mixed with others, emoji
/// (surrogate pairs) among them.
fn ucs2_text(max: usize) -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        gsm7_text(4),
        Just("😀".to_owned()),
        Just("👍🏽".to_owned()),
        Just("ç".to_owned()),
        Just("世界".to_owned()),
        "\\PC{0,3}",
    ];
    (proptest::collection::vec(pieces, 0..max), Just("é😀ç"))
        .prop_map(|(v, tail)| v.concat() + tail)
}

fn destination() -> Address {
    Address::parse("+59899123456").unwrap()
}

/// Encodes, decodes every PDU, and joins the parts again.
fn round_trip(text: &str, width: RefWidth) -> (String, usize) {
    let options = SubmitOptions {
        ref_width: width,
        concat_reference: 0x1234,
        service_centre: ServiceCentre::ModemDefault,
        ..SubmitOptions::default()
    };
    let pdus = sms::encode_submit(&destination(), text, &options).unwrap();
    let mut buffer = Reassembler::new(4, jiff::SignedDuration::from_secs(60));
    let now = jiff::Timestamp::UNIX_EPOCH;
    let mut out = None;
    for p in &pdus {
        let d = sms::decode_hex(&p.hex, Some(p.tpdu_length)).unwrap();
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        let Tpdu::Submit(s) = d.tpdu else {
            panic!("not a submit")
        };
        assert_eq!(s.destination, destination());
        let body = s.user_data.body.clone();
        let result = match s.user_data.concat() {
            None => Some(body.text().unwrap()),
            Some(concat) => match buffer.push("+59899123456", concat, body, now) {
                Reassembly::Complete(a) => a.text(),
                _ => None,
            },
        };
        if result.is_some() {
            out = result;
        }
    }
    (out.expect("message complete"), pdus.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn gsm7_text_round_trips(text in gsm7_text(400)) {
        prop_assert!(sms::is_gsm7(&text));
        let septets = gsm7::to_septets(&text).unwrap();
        prop_assert_eq!(gsm7::from_septets(&septets), text.clone());
        prop_assert_eq!(gsm7::unpack(&gsm7::pack(&septets), 0, septets.len()), septets);
        let (back, parts) = round_trip(&text, RefWidth::Bits8);
        prop_assert_eq!(&back, &text);
        prop_assert_eq!(parts, sms::plan(&text).segments);
        prop_assert_eq!(sms::plan(&text).encoding, Encoding::Gsm7);
    }

    #[test]
    fn ucs2_text_round_trips_with_emoji(text in ucs2_text(80), wide in any::<bool>()) {
        let width = if wide { RefWidth::Bits16 } else { RefWidth::Bits8 };
        prop_assert!(!sms::is_gsm7(&text));
        let (back, parts) = round_trip(&text, width);
        prop_assert_eq!(&back, &text);
        let plan = sms::plan_with(&text, width);
        prop_assert_eq!(parts, plan.segments);
        prop_assert_eq!(plan.encoding, Encoding::Ucs2);
    }

    #[test]
    fn segments_never_split_a_character(
        text in prop_oneof![gsm7_text(700), ucs2_text(150)],
        wide in any::<bool>(),
    ) {
        let width = if wide { RefWidth::Bits16 } else { RefWidth::Bits8 };
        let plan = sms::plan_with(&text, width);
        let parts: Vec<&str> = plan.part_texts(&text).collect();
        prop_assert_eq!(parts.len(), plan.segments);
        prop_assert_eq!(parts.concat(), text.clone());
        let cost = |s: &str| match plan.encoding {
            Encoding::Gsm7 => gsm7::septet_len(s).unwrap(),
            Encoding::Ucs2 => s.encode_utf16().count(),
        };
        prop_assert_eq!(plan.units, cost(&text));
        let capacity = if plan.segments == 1 {
            plan.encoding.single_capacity()
        } else {
            plan.encoding.part_capacity(width)
        };
        for (i, (part, info)) in parts.iter().zip(&plan.parts).enumerate() {
            // Ranges fall on character boundaries (else part_texts would
            // have given ""), so no escape or surrogate pair is cut.
            prop_assert!(text.get(info.range.clone()).is_some());
            prop_assert_eq!(info.units, cost(part));
            prop_assert!(info.units <= capacity);
            if plan.encoding == Encoding::Gsm7 {
                let septets = gsm7::to_septets(part).unwrap();
                prop_assert!(septets.last() != Some(&gsm7::ESCAPE));
            } else {
                let units: Vec<u16> = part.encode_utf16().collect();
                prop_assert!(units.last().is_none_or(|u| !(0xD800..0xDC00).contains(u)));
            }
            // Greedy: the next part's first character would not have fitted.
            if let Some(next) = parts.get(i + 1) {
                let first = next.chars().next().unwrap();
                prop_assert!(info.units + cost(&first.to_string()) > capacity);
            }
        }
    }

    #[test]
    fn decoding_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        hint in proptest::option::of(0usize..300),
    ) {
        if let Ok(d) = sms::decode_bytes(&bytes, hint) {
            let _ = sms::report::describe(&d);
            if let Ok(again) = sms::encode_tpdu(&d.tpdu) {
                prop_assert!(again.len() <= 200);
            }
        }
    }

    #[test]
    fn decoding_never_panics_on_plausible_headers(
        first in any::<u8>(),
        dcs in any::<u8>(),
        udl in any::<u8>(),
        tail in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        // A well-formed prefix gets random input past the address, where
        // the interesting length arithmetic is.
        let mut bytes = vec![0x00, first & 0xFC, 0x04, 0x81, 0x21, 0x43, 0x00, dcs];
        bytes.extend([0x11, 0x10, 0x10, 0x21, 0x43, 0x65, 0x00, udl]);
        bytes.extend(tail);
        let _ = sms::decode_bytes(&bytes, None);
        let _ = sms::decode_hex(&sms::pdu::to_hex(&bytes), Some(bytes.len() - 1));
    }
}

/// The length a modem announces (`+CMT: ,<length>`) is the modem's number:
/// one near `usize::MAX` is a hint that fits nothing, not an overflow (a
/// panic in debug and fuzz builds, a silent wrap in release).
#[test]
fn a_length_hint_near_usize_max_is_a_hint_that_fits_nothing() {
    let hex = "07911326040000F0040B911346610089F60000208062917314080CC8F71D14969741F977FD07";
    let plain = sms::decode_hex(hex, None).unwrap();
    for hint in [usize::MAX, usize::MAX - 1, usize::MAX - 7, usize::MAX - 255] {
        let d = sms::decode_hex(hex, Some(hint)).unwrap();
        assert_eq!(d.tpdu, plain.tpdu, "hint {hint}");
    }
}
