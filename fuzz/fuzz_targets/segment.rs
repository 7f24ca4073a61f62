//! Any text: the plan covers it exactly in parts that fit, and what is
//! encoded decodes back to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms::{self, Address, RefWidth, SubmitOptions};

fuzz_target!(|text: &str| {
    for width in [RefWidth::Bits8, RefWidth::Bits16] {
        let plan = sms::plan_with(text, width);
        let parts: Vec<&str> = plan.part_texts(text).collect();
        assert_eq!(parts.concat(), text);
        assert_eq!(parts.len(), plan.segments);
        if plan.segments > 255 {
            continue;
        }
        let options = SubmitOptions {
            ref_width: width,
            ..SubmitOptions::default()
        };
        let to = Address::parse("+59899123456").expect("valid address");
        let pdus = sms::encode_submit(&to, text, &options).expect("encodable text");
        assert_eq!(pdus.len(), plan.segments);
        let mut back = String::new();
        for p in &pdus {
            let decoded = sms::decode_hex(&p.hex, Some(p.tpdu_length)).expect("own PDU decodes");
            let user_data = decoded.tpdu.user_data().expect("submit has user data");
            back.push_str(&user_data.body.text().expect("text body"));
        }
        // Parts never split a surrogate pair, so per-part text joins cleanly.
        assert_eq!(back, text);
    }
});
