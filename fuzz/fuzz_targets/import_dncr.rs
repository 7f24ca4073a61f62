//! The DNCR upload (`dialer::dncr_import::dncr_import`): any file gives one
//! result per line, in order, never panics, and every accepted entry has a
//! key that is the E.164 form of its number or, when the number does not
//! normalise, its digits; never an empty key, and a dialer only when it
//! exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::dialer::dncr_import::dncr_import;
use smsgate::dialer::import::ImportRules;
use smsgate_proto::sms::phone;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, file)) = data.split_first() else {
        return;
    };
    let mut rules = ImportRules::default();
    if limit & 1 == 1 {
        rules.max_line_bytes = usize::from(limit);
    }
    let country = ["UY", "AR", "ES", "US"][usize::from(limit >> 6)];
    let mut last = 0;
    for result in dncr_import(file, &rules, country, |d: &str| d == "marcadortest") {
        let line = match &result {
            Ok(row) => {
                assert!(!row.key.is_empty());
                match phone::normalise(&row.phone, country) {
                    Ok(n) => assert_eq!(row.key, n.as_str()),
                    Err(_) => assert!(row.key.bytes().all(|b| b.is_ascii_digit())),
                }
                if let Some(d) = &row.dialer {
                    assert_eq!(d, "marcadortest");
                }
                row.line
            }
            Err(e) => {
                let _ = (e.rule.code(), e.to_string());
                e.line
            }
        };
        assert_eq!(line, last + 1, "lines are numbered in order");
        last = line;
    }
});
