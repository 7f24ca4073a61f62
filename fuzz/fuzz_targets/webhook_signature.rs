//! Webhook signatures (`webhook`): any header, body, secret and clock give
//! Ok or a reason, never a panic. What `sign` writes verifies at the time
//! it names and within the tolerance around it, and not with another
//! secret, another body or outside the tolerance.
//!
//! Input: lines `secret`, `header`, `t`, `now`, `tolerance` and the body
//! (the rest, bytes); numbers that do not parse are 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smsgate_proto::webhook::{self, VerifyError};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(6, |b| *b == b'\n');
    let mut next = || parts.next().unwrap_or_default();
    let secret = next();
    let header = String::from_utf8_lossy(next()).into_owned();
    let mut number = || {
        std::str::from_utf8(next())
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    let (t, now, tolerance) = (number(), number(), number());
    let body = parts.next().unwrap_or_default();
    let _ = webhook::verify(secret, &header, body, now, tolerance);

    let signed = webhook::sign(secret, t, body);
    assert_eq!(webhook::verify(secret, &signed, body, t, 0), Ok(()));
    let mut other = secret.to_vec();
    other.push(b'x');
    assert_eq!(
        webhook::verify(&other, &signed, body, t, 0),
        Err(VerifyError::Mismatch)
    );
    let mut changed = body.to_vec();
    changed.push(b' ');
    assert_eq!(
        webhook::verify(secret, &signed, &changed, t, 0),
        Err(VerifyError::Mismatch)
    );
    let skew = i128::from(now) - i128::from(t);
    match webhook::verify(secret, &signed, body, now, tolerance) {
        Ok(()) => assert!(skew.abs() <= i128::from(tolerance)),
        Err(VerifyError::Stale(_)) => assert!(skew.abs() > i128::from(tolerance)),
        Err(e) => panic!("{signed:?} at {now}: {e}"),
    }
});
