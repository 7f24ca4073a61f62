//! The signature of a webhook delivery, for the daemon that signs and for
//! receivers that verify (the portal, the tests).
//!
//! `X-Smsgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` where the
//! MAC is taken with the webhook's secret over `<t>.<raw body>`. Binding
//! the time into the MAC lets a receiver refuse a captured delivery
//! replayed later: it checks that `t` is recent (five minutes is usual)
//! and compares the MAC in constant time. Several `v1=` may appear while a
//! secret is being rotated; any one matching is enough.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER: &str = "X-Smsgate-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: i64, body: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The header value for a delivery of `body` at unix time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex(&mac(secret, t, body)))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is not t=<unix>,v1=<hex>")]
    Malformed,
    #[error("the signature is {0} s away from now: too old or from the future")]
    Stale(i64),
    #[error("no v1 signature matches the body and the secret")]
    Mismatch,
}

/// Checks a delivery as a receiver should: the header's form, its time
/// within `tolerance_s` of `now`, and the MAC over the raw body.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| VerifyError::Malformed)?),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if sigs.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let skew = now.saturating_sub(t);
    // checked: i64::MIN has no absolute value (a clock of i64::MIN is
    // nonsense, but a panic is not the answer to it).
    if skew.checked_abs().is_none_or(|s| s > tolerance_s) {
        return Err(VerifyError::Stale(skew));
    }
    let want = hex(&mac(secret, t, body));
    if sigs
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(want.as_bytes())))
    {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let h = sign(b"s3cret", 1_700_000_000, b"{\"seq\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(b"s3cret", &h, b"{\"seq\":1}", 1_700_000_010, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &h, b"{\"seq\":2}", 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &h, b"{\"seq\":1}", 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &h, b"{\"seq\":1}", 1_700_000_400, 300),
            Err(VerifyError::Stale(400))
        );
        assert_eq!(
            verify(b"s3cret", "v1=00", b"", 0, 300),
            Err(VerifyError::Malformed)
        );
    }

    /// Found while writing the `webhook_signature` fuzz target: a skew of
    /// i64::MIN (a clock at i64::MIN) overflowed `abs()`.
    #[test]
    fn an_extreme_clock_is_stale_not_a_panic() {
        let h = sign(b"k", 1, b"");
        assert!(matches!(
            verify(b"k", &h, b"", i64::MIN, 300),
            Err(VerifyError::Stale(_))
        ));
        assert!(matches!(
            verify(b"k", "t=9223372036854775807,v1=00", b"", -1, i64::MAX),
            Err(VerifyError::Stale(_))
        ));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256(key "key", "1.{}") computed independently (Python's hmac).
        assert_eq!(
            sign(b"key", 1, b"{}"),
            "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
