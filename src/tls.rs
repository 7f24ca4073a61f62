//! TLS set-up shared by every HTTP client smsgate builds. rustls runs with
//! the ring provider passed explicitly: no process-wide default is
//! installed, so no library can pick another one behind our back.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client config that trusts exactly the certificates in `roots` (PEM
/// files): the CLI uses it to reach the daemon's own self-signed API.
pub fn client_config(roots: &[PathBuf]) -> Result<rustls::ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    for path in roots {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| format!("cannot read the certificate {}: {e}", path.display()))?;
            store
                .add(cert)
                .map_err(|e| format!("cannot use the certificate {}: {e}", path.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth())
}
