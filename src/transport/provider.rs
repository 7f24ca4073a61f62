//! What the transports to internet providers (`http`, `twilio`,
//! `whatsapp-cloud`) share: their HTTP client, how a request's error is put
//! in words, how much of an answer is read, and the hold after refused
//! credentials. Each provider's own rules (what its answers mean) stay in
//! its transport and in smsgate-proto.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{PortHealth, TransportError};

/// The client for one provider gateway: our TLS roots, no proxy from the
/// environment, no redirects (a redirect could carry credentials elsewhere),
/// one idle connection kept per channel.
pub(super) fn client(
    gateway: &str,
    timeout: Duration,
    ports: u32,
) -> Result<reqwest::Client, TransportError> {
    let setup = |reason: String| TransportError::Setup {
        gateway: gateway.to_string(),
        reason,
    };
    let tls = crate::tls::client_config(&crate::tls::TlsVerify::System)
        .map_err(|e| setup(format!("cannot set up TLS: {e}")))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(ports.max(1) as usize)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("smsgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))
}

/// A request's error in words with its causes, never its URL (it may hold
/// a password or a token).
pub(super) fn words(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// An answer's body, at most `max` bytes of it: a provider that answers
/// without end costs no more memory than that.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                body.extend_from_slice(&c);
                if body.len() > max {
                    body.truncate(max);
                    return Ok(body);
                }
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(words(e)),
        }
    }
}

/// After the provider refused our credentials (or the account), every
/// channel stays out of use for `hold`; then the next send is the test,
/// since a provider cannot be asked without sending.
pub(super) struct AuthHold {
    hold: Duration,
    refused: Mutex<Option<(Instant, String)>>,
}

impl AuthHold {
    pub(super) fn new(hold: Duration) -> Self {
        Self {
            hold,
            refused: Mutex::new(None),
        }
    }

    /// Why the channels are out of use, while the hold lasts.
    pub(super) fn refused(&self) -> Option<String> {
        let g = self.refused.lock().ok()?;
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < self.hold)
            .map(|(_, why)| why.clone())
    }

    pub(super) fn refuse(&self, why: &str) {
        if let Ok(mut g) = self.refused.lock() {
            *g = Some((Instant::now(), why.to_string()));
        }
    }

    /// The provider took a message: the credentials are good.
    pub(super) fn accepted(&self) {
        if let Ok(mut g) = self.refused.lock() {
            *g = None;
        }
    }

    /// One channel's health: usable unless it does not exist or the hold
    /// lasts; `number` is our number at the provider, when known.
    pub(super) fn health(&self, ports: u32, port: u32, number: Option<String>) -> PortHealth {
        if port >= ports {
            return PortHealth {
                usable: false,
                reason: "no such channel".into(),
                ..Default::default()
            };
        }
        match self.refused() {
            Some(why) => PortHealth {
                usable: false,
                reason: why,
                number,
                ..Default::default()
            },
            None => PortHealth {
                usable: true,
                number,
                ..Default::default()
            },
        }
    }

    /// The breaker's probe: fails while the hold lasts.
    pub(super) fn probe(&self) -> Result<(), String> {
        match self.refused() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}
