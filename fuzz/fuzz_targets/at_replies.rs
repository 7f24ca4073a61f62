//! The AT session's reply parsing (the daemon's
//! `transport::at::session`): any information lines give the values the
//! session reads from `+CREG`, `+CSQ`, `+COPS`, `+CMGS`, `+CMGR`/`+CMGL`
//! headers and a stored `gateway_ref`, without a panic; a registration
//! state is one 27.007 defines, a reference written the usual way is read
//! back.
//!
//! Input: the reply's lines (lossy UTF-8, CR LF or LF); the first byte is
//! also a TP-MR to read back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate::transport::at::session::{
    cmgs_reference, cops_operator, creg_stat, csq_rssi, line_value, parts_of_ref, record_header,
};

fuzz_target!(|data: &[u8]| {
    let Some(&mr) = data.first() else {
        return;
    };
    let lossy = String::from_utf8_lossy(data);
    let lines: Vec<String> = lossy.lines().map(str::to_string).collect();
    let text = lines.first().map_or("", String::as_str);
    for prefix in ["+CREG:", "+CSQ:", "+COPS:", "+CPIN:", "+CMGS:", text] {
        if let Some(v) = line_value(&lines, prefix) {
            assert_eq!(v, v.trim());
        }
    }
    for v in lines.iter().map(String::as_str).chain([text]) {
        if let Some(stat) = creg_stat(v) {
            assert!(stat <= 11);
        }
        assert_ne!(csq_rssi(v), Some(99));
        let _ = cops_operator(v);
        let _ = cmgs_reference(v);
        let _ = record_header(v);
        if let Some(parts) = parts_of_ref(v) {
            assert!(!parts.is_empty());
        }
    }
    assert_eq!(cmgs_reference(&format!(" {mr}")), Some(mr));
    assert_eq!(cmgs_reference(&format!(" {mr},\"{text}\"")), Some(mr));
    assert_eq!(
        parts_of_ref(&format!("7/{mr}.?")),
        Some(vec![Some(mr), None])
    );
});
