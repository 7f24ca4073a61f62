//! Any text: the plan covers it exactly in parts that fit, the encoder
//! makes as many PDUs as the plan has parts, what is encoded decodes back
//! to the same text, and the parts, handed to the reassembler in reverse
//! order, join to the text once the last one comes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms::{self, Address, Reassembler, Reassembly, RefWidth, SubmitOptions};

fuzz_target!(|text: &str| {
    for width in [RefWidth::Bits8, RefWidth::Bits16] {
        let plan = sms::plan_with(text, width);
        let parts: Vec<&str> = plan.part_texts(text).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts.len(), plan.segments);
        let capacity = if plan.segments == 1 {
            plan.encoding.single_capacity()
        } else {
            plan.encoding.part_capacity(width)
        };
        assert!(plan.parts.iter().all(|p| p.units <= capacity));
        assert_eq!(
            plan.parts.iter().map(|p| p.units).sum::<usize>(),
            plan.units
        );
        if plan.segments > 255 {
            continue;
        }
        let options = SubmitOptions {
            ref_width: width,
            concat_reference: 0x1234,
            ..SubmitOptions::default()
        };
        let to = Address::parse("+59899123456").expect("valid address");
        let pdus = sms::encode_submit(&to, text, &options).expect("encodable text");
        assert_eq!(pdus.len(), plan.segments);
        let mut back = String::new();
        let mut user_data = Vec::new();
        for p in &pdus {
            let decoded = sms::decode_hex(&p.hex, Some(p.tpdu_length)).expect("own PDU decodes");
            let ud = decoded
                .tpdu
                .user_data()
                .expect("submit has user data")
                .clone();
            back.push_str(&ud.body.text().expect("text body"));
            user_data.push(ud);
        }
        // Parts never split a surrogate pair, so per-part text joins cleanly.
        assert_eq!(back, text);
        if user_data.len() < 2 {
            continue;
        }
        let mut r = Reassembler::new(4, jiff::SignedDuration::from_secs(3600));
        let now = jiff::Timestamp::UNIX_EPOCH;
        let last = user_data.len() - 1;
        for (i, ud) in user_data.into_iter().rev().enumerate() {
            let concat = ud.concat().expect("a part has a concat header");
            match r.push("+59899123456", concat, ud.body, now) {
                Reassembly::Complete(a) if i == last => {
                    assert_eq!(a.text().as_deref(), Some(text));
                }
                Reassembly::Waiting { received, .. } if i < last => assert_eq!(received, i + 1),
                other => panic!("part {} of {}: {other:?}", i + 1, last + 1),
            }
        }
    }
});
