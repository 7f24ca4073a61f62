//! HTTP Digest authentication (RFC 2617 / 7616, MD5 and MD5-sess, qop=auth),
//! the scheme real Dinstar gateways challenge with, plus Basic.
//!
//! The challenge is cached per client so that every request after the first
//! carries credentials with the next nonce count: one round trip per call.

use md5::{Digest as _, Md5};

/// A parsed `WWW-Authenticate: Digest ...` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// Whether the server offered `qop=auth` (otherwise RFC 2069 style).
    pub qop_auth: bool,
    /// `MD5-sess` instead of `MD5`.
    pub sess: bool,
    /// The server says the nonce expired but the credentials were right.
    pub stale: bool,
}

/// Why a challenge could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the challenge is not a Digest challenge")]
    NotDigest,
    #[error("the Digest challenge has no nonce")]
    NoNonce,
    #[error("the Digest challenge asks for algorithm {0}, only MD5 and MD5-sess are supported")]
    Algorithm(String),
    #[error("the Digest challenge offers qop {0:?}, only auth is supported")]
    Qop(String),
}

/// Splits `key=value, key="quoted, value"` pairs. Never panics.
fn auth_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() && chars.peek().is_none() {
            break;
        }
        let mut val = String::new();
        // A quoted value is kept as written (RFC 7616: realm, nonce, uri
        // and username are compared byte for byte); a bare one is trimmed.
        let mut quoted = false;
        if chars.peek() == Some(&'=') {
            chars.next();
            while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                quoted = true;
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => break,
                        c => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if !key.is_empty() {
            let val = if quoted { val } else { val.trim().to_string() };
            out.push((key, val));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    out
}

impl Challenge {
    /// Parses one `WWW-Authenticate` header value.
    pub fn parse(header: &str) -> Result<Challenge, ChallengeError> {
        let h = header.trim();
        let (scheme, rest) = h.split_once(char::is_whitespace).unwrap_or((h, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(ChallengeError::NotDigest);
        }
        let params = auth_params(rest);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let nonce = get("nonce")
            .filter(|n| !n.is_empty())
            .ok_or(ChallengeError::NoNonce)?;
        let sess = match get("algorithm") {
            None => false,
            Some(a) if a.eq_ignore_ascii_case("md5") => false,
            Some(a) if a.eq_ignore_ascii_case("md5-sess") => true,
            Some(a) => return Err(ChallengeError::Algorithm(a)),
        };
        let qop_auth = match get("qop") {
            None => false,
            Some(q) => {
                if q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(ChallengeError::Qop(q));
                }
            }
        };
        Ok(Challenge {
            realm: get("realm").unwrap_or_default(),
            nonce,
            opaque: get("opaque"),
            qop_auth,
            sess,
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
        })
    }

    /// Finds the Digest challenge among several `WWW-Authenticate` values.
    pub fn from_headers<'a, I>(values: I) -> Result<Challenge, ChallengeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut last = ChallengeError::NotDigest;
        for v in values {
            match Challenge::parse(v) {
                Ok(c) => return Ok(c),
                Err(ChallengeError::NotDigest) => {}
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    hex(&h.finalize())
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The `response` value of RFC 2617 §3.2.2.1.
#[allow(clippy::too_many_arguments)]
pub fn response_hash(
    user: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop_auth: bool,
    sess: bool,
) -> String {
    let mut ha1 = md5_hex(&[user, realm, password]);
    if sess {
        ha1 = md5_hex(&[&ha1, nonce, cnonce]);
    }
    let ha2 = md5_hex(&[method, uri]);
    if qop_auth {
        md5_hex(&[&ha1, nonce, nc, cnonce, "auth", &ha2])
    } else {
        md5_hex(&[&ha1, nonce, &ha2])
    }
}

/// The `Authorization` header value for one request.
///
/// `uri` must be byte-identical to the request target the client sends
/// (path and query, percent-encoding included).
pub fn authorization(
    ch: &Challenge,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let nc_s = format!("{nc:08x}");
    let resp = response_hash(
        user,
        &ch.realm,
        password,
        method,
        uri,
        &ch.nonce,
        &nc_s,
        cnonce,
        ch.qop_auth,
        ch.sess,
    );
    let mut h = format!(
        "Digest username={}, realm={}, nonce={}, uri={}, algorithm={}, response={}",
        quote(user),
        quote(&ch.realm),
        quote(&ch.nonce),
        quote(uri),
        if ch.sess { "MD5-sess" } else { "MD5" },
        quote(&resp),
    );
    if let Some(o) = &ch.opaque {
        h.push_str(&format!(", opaque={}", quote(o)));
    }
    if ch.qop_auth {
        h.push_str(&format!(", qop=auth, nc={nc_s}, cnonce={}", quote(cnonce)));
    }
    h
}

/// The parts of an `Authorization: Digest ...` header (server side, used by
/// the simulator).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
    pub algorithm: Option<String>,
}

impl DigestCredentials {
    /// Parses an `Authorization` header value; `None` if it is not Digest.
    pub fn parse(header: &str) -> Option<DigestCredentials> {
        let h = header.trim();
        let (scheme, rest) = h.split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut c = DigestCredentials::default();
        for (k, v) in auth_params(rest) {
            match k.as_str() {
                "username" => c.username = v,
                "realm" => c.realm = v,
                "nonce" => c.nonce = v,
                "uri" => c.uri = v,
                "response" => c.response = v,
                "opaque" => c.opaque = Some(v),
                "qop" => c.qop = Some(v),
                "nc" => c.nc = Some(v),
                "cnonce" => c.cnonce = Some(v),
                "algorithm" => c.algorithm = Some(v),
                _ => {}
            }
        }
        Some(c)
    }

    /// Whether `response` matches `password` for this method.
    pub fn verify(&self, password: &str, method: &str) -> bool {
        let sess = self
            .algorithm
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case("md5-sess"));
        let qop_auth = self
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"));
        let expected = response_hash(
            &self.username,
            &self.realm,
            password,
            method,
            &self.uri,
            &self.nonce,
            self.nc.as_deref().unwrap_or(""),
            self.cnonce.as_deref().unwrap_or(""),
            qop_auth,
            sess,
        );
        // Both are hex digests of the same length when well formed.
        expected.len() == self.response.len()
            && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), self.response.as_bytes()).into()
    }
}

/// `Authorization: Basic ...` value.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Decodes a `Basic` header into (user, password); `None` if malformed.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let h = header.trim();
    let (scheme, rest) = h.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = unbase64(rest.trim())?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn unbase64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `dinstar_wire` fuzz target: quoted values were
    /// trimmed, so a URI (or user, realm, nonce) with spaces at an end was
    /// read back changed and the response did not verify.
    #[test]
    fn quoted_values_are_kept_as_written() {
        let ch = Challenge::parse(r#"Digest realm=" r ", nonce=" n ", qop="auth""#).unwrap();
        assert_eq!((ch.realm.as_str(), ch.nonce.as_str()), (" r ", " n "));
        let uri = "            {\"text\":\"\"}";
        let h = authorization(&ch, " admin", "pw", "POST", uri, 1, "c");
        let creds = DigestCredentials::parse(&h).unwrap();
        assert_eq!(creds.username, " admin");
        assert_eq!(creds.uri, uri);
        assert_eq!(creds.realm, " r ");
        assert!(creds.verify("pw", "POST"));
        // Bare values are still trimmed.
        let ch = Challenge::parse("Digest realm=r , nonce= n ,qop=auth").unwrap();
        assert_eq!((ch.realm.as_str(), ch.nonce.as_str()), ("r", "n"));
    }

    #[test]
    fn rfc2617_example() {
        // The worked example of RFC 2617 §3.5.
        let ch = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let h = authorization(
            &ch,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains("nc=00000001"));
        let creds = DigestCredentials::parse(&h).unwrap();
        assert!(creds.verify("Circle Of Life", "GET"));
        assert!(!creds.verify("circle of life", "GET"));
        assert!(!creds.verify("Circle Of Life", "POST"));
    }

    #[test]
    fn dinstar_challenge() {
        let ch = Challenge::parse(
            r#"Digest realm="Web Server", domain="", qop="auth", nonce="abc", opaque="xyz", algorithm="MD5", stale="FALSE""#,
        )
        .unwrap();
        assert_eq!(ch.realm, "Web Server");
        assert!(ch.qop_auth && !ch.sess && !ch.stale);
        let st = Challenge::parse(r#"Digest realm="r", nonce="n2", stale=true"#).unwrap();
        assert!(st.stale && !st.qop_auth);
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(ChallengeError::NotDigest)
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"x\""),
            Err(ChallengeError::NoNonce)
        );
        assert!(matches!(
            Challenge::parse("Digest nonce=\"x\", algorithm=SHA-256"),
            Err(ChallengeError::Algorithm(_))
        ));
        assert!(
            Challenge::from_headers(["Basic realm=\"x\"", "Digest nonce=\"n\", qop=\"auth\""])
                .is_ok()
        );
    }

    #[test]
    fn basic_roundtrip() {
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        for s in ["", "a", "ab", "abc", "abcd", "ñ:ü€"] {
            assert_eq!(unbase64(&base64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(
            parse_basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(parse_basic("Basic !!!"), None);
    }

    #[test]
    fn quoting_survives() {
        let ch = Challenge::parse(r#"Digest realm="a \"q\" b", nonce="n", qop="auth""#).unwrap();
        assert_eq!(ch.realm, r#"a "q" b"#);
        let h = authorization(&ch, r#"us"er"#, "p", "POST", "/api/x?a=1%2C2", 7, "c");
        let c = DigestCredentials::parse(&h).unwrap();
        assert_eq!(c.username, r#"us"er"#);
        assert_eq!(c.uri, "/api/x?a=1%2C2");
        assert!(c.verify("p", "POST"));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,200}") {
            let _ = Challenge::parse(&s);
            let _ = DigestCredentials::parse(&s);
            let _ = parse_basic(&s);
            let _ = auth_params(&s);
        }
    }
}
