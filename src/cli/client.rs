//! The blocking API client the subcommands that act on a running daemon
//! use: the address and a token from the config file (or --api and
//! --token), TLS pinned to the daemon's own certificate, and errors in
//! plain words.

use std::process::ExitCode;

use crate::config::{self, Config, Role};

use super::schema::Remote;

/// A blocking HTTP client for one daemon.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach smsgate at {base}: {reason} (is the daemon running? `systemctl status smsgate`)"
    )]
    Unreachable { base: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Setup(String),
}

impl Client {
    pub fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.get(format!("{}{path}", self.base)))
    }

    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.delete(format!("{}{path}", self.base)))
    }

    /// Streams a file as the body of an upload; its name becomes ?filename=.
    pub fn upload(
        &self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<serde_json::Value, ClientError> {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let f = std::fs::File::open(file)
            .map_err(|e| ClientError::Setup(format!("cannot read {}: {e}", file.display())))?;
        let url = format!("{}{path}?filename={}", self.base, encode_query(&name));
        self.call(
            self.http
                .post(url)
                .header("content-type", "text/csv")
                .body(reqwest::blocking::Body::new(f)),
        )
    }

    fn call(
        &self,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<serde_json::Value, ClientError> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .map_err(|e| ClientError::Unreachable {
                base: self.base.clone(),
                reason: plain_reqwest_error(&e),
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().unwrap_or(serde_json::Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        // problem+json: say the detail, then each listed error.
        let mut msg = format!(
            "smsgate answered {}: {}",
            status.as_u16(),
            body["detail"].as_str().unwrap_or("no detail")
        );
        if let Some(errors) = body["errors"].as_array() {
            for e in errors {
                let line = e["line"]
                    .as_u64()
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                let m = e["message"].as_str().unwrap_or_default();
                msg.push_str(&format!("\n  {line}{m}"));
            }
        }
        Err(ClientError::Refused(msg))
    }
}

fn plain_reqwest_error(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Builds a client from --api/--token, or from the config file.
pub fn client(
    config_path: &std::path::Path,
    remote: &Remote,
    need: Role,
) -> Result<Client, ClientError> {
    let config = if remote.api.is_none() || remote.token.is_none() {
        Some(Config::load(config_path).map_err(|e| {
            ClientError::Setup(format!(
                "cannot read the daemon's address and token from {}: {e}\n(give --api and --token, or run with sudo)",
                config_path.display()
            ))
        })?)
    } else {
        None
    };
    let base = match (&remote.api, &config) {
        (Some(a), _) => a.trim_end_matches('/').to_string(),
        (None, Some(c)) => {
            let scheme = if c.api.tls.is_some() { "https" } else { "http" };
            let mut addr = c.api.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("{scheme}://{addr}")
        }
        (None, None) => unreachable_base(),
    };
    let token = match (&remote.token, &config) {
        (Some(t), _) => t.clone(),
        (None, Some(c)) => {
            // The weakest token that suffices, so a viewer command never
            // travels with the admin token when a viewer one exists.
            let mut ok: Vec<&config::ApiToken> = c
                .api
                .tokens
                .iter()
                .filter(|t| t.role.grants(need))
                .collect();
            ok.sort_by_key(|t| t.role);
            ok.first()
                .map(|t| t.secret.expose().to_string())
                .ok_or_else(|| {
                    ClientError::Setup(format!(
                        "no token with the {} role in {}; add one to [[api.tokens]] or give --token",
                        need.as_str(),
                        config_path.display()
                    ))
                })?
        }
        (None, None) => String::new(),
    };
    let tls = match config.as_ref().and_then(|c| c.api.tls.as_ref()) {
        Some(files) => crate::tls::pinned_to_pem_file(&files.cert).map_err(ClientError::Setup)?,
        None => crate::tls::client_config(&crate::tls::TlsVerify::System)
            .map_err(|e| ClientError::Setup(e.to_string()))?,
    };
    let http = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|e| ClientError::Setup(e.to_string()))?;
    Ok(Client { base, token, http })
}

/// Percent-encodes a query or path value.
pub(super) fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unreachable_base() -> String {
    "http://127.0.0.1:8080".to_string()
}

pub(super) fn with_client(
    config_path: &std::path::Path,
    remote: &Remote,
    need: Role,
    f: impl FnOnce(&Client) -> Result<(), ClientError>,
) -> ExitCode {
    let result = client(config_path, remote, need).and_then(|c| f(&c));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smsgate: {e}");
            ExitCode::FAILURE
        }
    }
}
