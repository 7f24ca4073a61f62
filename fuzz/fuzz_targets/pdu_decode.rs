//! Any bytes, as raw PDU or as the hex a modem prints: decoding must return
//! a value or an error, never panic, and what decodes must re-encode and
//! report without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms;

fuzz_target!(|data: &[u8]| {
    // The first eight bytes are the length hint as +CMGR/+CMT announce it:
    // the modem's raw number, any usize (all ones: no hint), not capped.
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let raw = u64::from_le_bytes(head.try_into().unwrap_or([0xFF; 8]));
    let hint = (raw != u64::MAX).then_some(usize::try_from(raw).unwrap_or(usize::MAX));
    for result in [
        sms::decode_bytes(rest, hint),
        sms::decode_hex(&String::from_utf8_lossy(rest), hint),
    ] {
        let Ok(decoded) = result else { continue };
        let report = sms::report::describe(&decoded);
        let _ = serde_json::to_string(&report);
        if let Ok(bytes) = sms::encode_tpdu(&decoded.tpdu) {
            let _ = sms::decode_tpdu(&bytes);
        }
    }
});
