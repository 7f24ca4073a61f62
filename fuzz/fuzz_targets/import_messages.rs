//! The bulk message import (`dialer::import::bulk_import`): any file, read
//! with a large or a small line limit, gives one result per line (numbered
//! 1, 2, 3... however lines end), never panics, and every accepted row
//! keeps the rules: a known dialer, a destination and a message that are
//! not blank, a priority from 1 to 9999, no forbidden character, a text
//! within the dialer's gateway limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::dialer::import::{ImportRules, PRIORITY_MAX, PRIORITY_MIN, bulk_import};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, file)) = data.split_first() else {
        return;
    };
    let mut rules = ImportRules::default();
    if limit & 1 == 1 {
        rules.max_line_bytes = usize::from(limit);
    }
    rules
        .text_limits
        .insert("whatsapp".to_string(), (160, "gw1".to_string()));
    let known = ["campsms", "whatsapp", "marcadortest"];
    let mut last = 0;
    for result in bulk_import(file, &rules, |d: &str| known.contains(&d)) {
        let line = match &result {
            Ok(row) => {
                assert!(known.contains(&row.dialer.as_str()));
                assert!(!row.destination.is_empty() && row.destination == row.destination.trim());
                assert!(!row.message.trim().is_empty());
                assert!((PRIORITY_MIN..=PRIORITY_MAX).contains(&row.priority));
                for c in &rules.forbidden {
                    assert!(!row.destination.contains(*c) && !row.message.contains(*c));
                }
                if row.dialer == "whatsapp" {
                    assert!(row.message.encode_utf16().count() <= 160);
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
    assert!(last <= file.iter().filter(|b| **b == b'\n').count() as u64 + 1);
});
