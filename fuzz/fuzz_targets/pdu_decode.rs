//! Any bytes, as raw PDU or as the hex a modem prints: decoding must return
//! a value or an error, never panic, and what decodes must re-encode and
//! report without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::sms;

fuzz_target!(|data: &[u8]| {
    let Some((&hint, rest)) = data.split_first() else {
        return;
    };
    // The first byte picks a length hint (or none), as +CMGR would announce.
    let hint = (hint != 0xFF).then_some(usize::from(hint));
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
