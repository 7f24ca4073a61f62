//! Twilio's webhooks and answers (`twilio`): any form body, query, URL and
//! `X-Twilio-Signature` give a webhook or a reason, and a verdict on the
//! signature, never a panic. A signature we compute for the parsed form
//! verifies, and not with another auth token or another URL. Any answer
//! body goes through the message, page and error readers, and a page's
//! messages through the look-up of a message in doubt.
//!
//! Input: lines `auth token`, `public url`, `query`, `X-Twilio-Signature`,
//! then the body (the rest, bytes: read as a form and as JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::twilio;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (token, public_url, query, header) = (next(), next(), next(), next());
    let body = parts.next().unwrap_or_default();

    let params = twilio::parse_form(body);
    let query = Some(query.as_str()).filter(|q| !q.is_empty());
    let url = twilio::called_url(&public_url, query);
    let _ = twilio::verify(&token, &url, &params, &header);
    if let Ok(hook) = twilio::parse_webhook(&params, query) {
        match hook {
            twilio::Webhook::Status(s) => {
                assert!(!s.message_sid.is_empty());
                let _ = twilio::classify_status(&s.status);
                let _ = twilio::status_detail(&s.status, s.error_code, s.error_message.as_deref());
            }
            twilio::Webhook::Incoming(m) => assert!(!m.message_sid.is_empty()),
        }
    }

    let signed = twilio::signature(&token, &url, &params);
    assert!(twilio::verify(&token, &url, &params, &signed));
    assert!(!twilio::verify(&format!("{token}x"), &url, &params, &signed));
    assert!(!twilio::verify(&token, &format!("{url}/"), &params, &signed));

    let _ = twilio::parse_message(body);
    let _ = twilio::parse_error(body);
    if let Ok(page) = twilio::parse_page(body) {
        for m in &page.messages {
            let _ = (m.created_ms(), m.sent_ms(), m.is_inbound());
        }
        let text = std::str::from_utf8(body).ok();
        let _ = twilio::find_sent(&page.messages, &header, text, i64::MIN);
    }
    let _ = twilio::parse_date(&header);
    let status = u16::from_le_bytes([
        *body.first().unwrap_or(&0),
        *body.get(1).unwrap_or(&0),
    ]);
    let code = std::str::from_utf8(body).ok().and_then(|s| s.trim().parse().ok());
    let _ = twilio::classify_error(status, code, Some(header.as_str()));
});
