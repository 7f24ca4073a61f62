//! TLS for every HTTP client smsgate builds. A gateway's certificate (or
//! the daemon's own API certificate, for the CLI) is usually self-signed, so
//! besides normal verification we offer pinning its SHA-256 fingerprint, or
//! (only when configured) accepting any certificate.
//!
//! The ring provider is passed explicitly; no process-wide provider is
//! installed.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How the gateway's certificate is checked on `https://` URLs.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum TlsVerify {
    /// Normal verification against the system's roots and the host name.
    #[default]
    System,
    /// Accept exactly the certificate with this SHA-256 fingerprint (of its
    /// DER encoding), whoever signed it and whatever name it carries.
    Pinned([u8; 32]),
    /// Accept any certificate (only when the config says so explicitly).
    AcceptInvalid,
}

impl fmt::Debug for TlsVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsVerify::System => f.write_str("System"),
            TlsVerify::Pinned(fp) => write!(f, "Pinned({})", format_fingerprint(fp)),
            TlsVerify::AcceptInvalid => f.write_str("AcceptInvalid"),
        }
    }
}

/// A fingerprint that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a SHA-256 fingerprint is 64 hexadecimal digits (colons and spaces allowed), got {len} digits"
)]
pub struct FingerprintError {
    pub len: usize,
}

/// Parses `AB:CD:...`, `abcd...` or `sha256:ab cd ...` into 32 bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], FingerprintError> {
    let s = s.trim();
    let s = s
        .strip_prefix("sha256:")
        .or_else(|| s.strip_prefix("SHA256:"))
        .or_else(|| s.strip_prefix("sha256/"))
        .unwrap_or(s);
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b':' | b' ' | b'-'))
        .collect();
    let err = FingerprintError { len: digits.len() };
    if digits.len() != 64 {
        return Err(err);
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or(err.clone())?;
        let lo = (pair[1] as char).to_digit(16).ok_or(err.clone())?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

/// `AB:CD:...` form.
pub fn format_fingerprint(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// SHA-256 of a certificate's DER bytes.
pub fn cert_fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The ring provider, built on demand (never installed globally).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for one gateway.
pub fn client_config(verify: &TlsVerify) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let algs = provider.signature_verification_algorithms;
    let mut cfg = match verify {
        TlsVerify::System => {
            let v = rustls_platform_verifier::Verifier::new(provider.clone())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(v))
                .with_no_client_auth()
        }
        TlsVerify::Pinned(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LaxVerifier {
                pin: Some(*fp),
                algs,
            }))
            .with_no_client_auth(),
        TlsVerify::AcceptInvalid => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LaxVerifier { pin: None, algs }))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts the pinned certificate (or any, without a pin) while still
/// checking the handshake signatures, so the peer must hold the key.
#[derive(Debug)]
struct LaxVerifier {
    pin: Option<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LaxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) => {
                let got = cert_fingerprint(end_entity.as_ref());
                if bool::from(subtle::ConstantTimeEq::ct_eq(&got[..], &pin[..])) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "the gateway's certificate fingerprint {} is not the pinned one",
                        format_fingerprint(&got)
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A client config that accepts exactly the first certificate of a PEM file
/// (pinned by fingerprint): how the CLI reaches the daemon's own API, whose
/// certificate is typically self-signed.
pub fn pinned_to_pem_file(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("{} holds no certificate", path.display()))?
        .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?;
    client_config(&TlsVerify::Pinned(cert_fingerprint(&cert))).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let fp = [0xABu8; 32];
        let s = format_fingerprint(&fp);
        assert_eq!(parse_fingerprint(&s), Ok(fp));
        assert_eq!(
            parse_fingerprint(&s.replace(':', "").to_lowercase()),
            Ok(fp)
        );
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", s.replace(':', " "))),
            Ok(fp)
        );
        assert!(parse_fingerprint("ab:cd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert_eq!(
            format_fingerprint(&cert_fingerprint(b"abc"))[..9].to_string(),
            "BA:78:16:"
        );
    }

    #[test]
    fn configs_build_without_a_global_provider() {
        for v in [
            TlsVerify::AcceptInvalid,
            TlsVerify::Pinned([1; 32]),
            TlsVerify::System,
        ] {
            // System may fail only if the machine has no usable roots.
            let r = client_config(&v);
            if v != TlsVerify::System {
                assert!(r.is_ok(), "{v:?}");
            }
        }
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
    }
}
