//! The WhatsApp Cloud API's webhooks and answers (`whatsapp_cloud`): any
//! body gives a notification or a reason, any `X-Hub-Signature-256` a
//! verdict, any verification query an answer, never a panic. What `sign`
//! writes verifies, and not with another app secret or another body. A
//! handshake answers the challenge only to the right verify token. Every
//! status read has an outcome and every sender a number or none; any
//! answer body with any HTTP status gets a verdict.
//!
//! Input: lines `app secret`, `X-Hub-Signature-256` (empty: none),
//! `query`, `verify token`, then the body (the rest, bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::whatsapp_cloud::{self as wa, Handshake, SignatureError};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let secret = next().to_vec();
    let header = String::from_utf8_lossy(next()).into_owned();
    let query = String::from_utf8_lossy(next()).into_owned();
    let verify_token = String::from_utf8_lossy(next()).into_owned();
    let body = parts.next().unwrap_or_default();

    let header = Some(header.as_str()).filter(|h| !h.is_empty());
    let _ = wa::verify(&secret, header, body);
    let signed = wa::sign(&secret, body);
    assert_eq!(wa::verify(&secret, Some(&signed), body), Ok(()));
    let mut other = secret.clone();
    other.push(b'x');
    assert_eq!(
        wa::verify(&other, Some(&signed), body),
        Err(SignatureError::Mismatch)
    );
    let mut changed = body.to_vec();
    changed.push(b' ');
    assert_eq!(
        wa::verify(&secret, Some(&signed), &changed),
        Err(SignatureError::Mismatch)
    );

    match wa::handshake(&query, &verify_token) {
        Handshake::Challenge(c) => {
            assert!(c.len() <= 1024);
            // Another token never gets the challenge.
            assert_ne!(
                wa::handshake(&query, &format!("{verify_token}x")),
                Handshake::Challenge(c)
            );
        }
        Handshake::Refused | Handshake::NotOne => {}
    }

    if let Ok(n) = wa::parse_webhook(body) {
        for m in &n.messages {
            assert!(!m.id.is_empty() && !m.from.is_empty());
            if let Some(e164) = wa::from_wa_id(&m.from) {
                assert!(e164.starts_with('+'));
            }
        }
        for s in &n.statuses {
            assert!(!s.id.is_empty());
            let _ = s.outcome();
        }
    }
    let _ = wa::parse_error(body);
    let status = u16::from_le_bytes([
        *secret.first().unwrap_or(&0),
        *secret.get(1).unwrap_or(&0),
    ]);
    let _ = wa::judge(status, body);
});
