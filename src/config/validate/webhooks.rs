//! The checks of `[events]` and `[[webhook]]` (every problem at
//! file:line:column, with the others), and their shape in the file.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Validator;
use crate::config::CampaignConfig;
use crate::config::webhooks::{
    DEFAULT_HEARTBEAT_S, DEFAULT_MAX_STREAMS, DEFAULT_RETENTION_S, EventsConfig, KindFilter,
    WebhookConfig,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawEvents {
    pub retention_s: Option<Spanned<u64>>,
    pub heartbeat_s: Option<Spanned<u64>>,
    pub max_streams: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawWebhook {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    pub secret: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    pub events: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub campaigns: Vec<Spanned<String>>,
    pub timeout_s: Option<Spanned<u64>>,
    pub retry_initial_ms: Option<Spanned<u64>>,
    pub retry_max_s: Option<Spanned<u64>>,
    pub dead_letter_after_s: Option<Spanned<u64>>,
    pub lanes: Option<Spanned<u64>>,
}

/// Query parameter names that look like a credential: a URL is written
/// into logs and proxies' access logs, so a secret never rides in one.
const SECRET_LOOKING: &[&str] = &[
    "token",
    "key",
    "secret",
    "signature",
    "sig",
    "password",
    "passwd",
    "pwd",
    "auth",
    "credential",
];

/// Checks a receiver's URL; the problem in words.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| {
        // Not echoed: a URL that does not parse may still hold a secret.
        format!("url is not a URL ({e}); write it as https://portal.example/hooks/smsgate")
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("url must be http or https, found {:?}", u.scheme()));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".to_string());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "url carries a user name or password; a webhook is authenticated by its signature (secret or secret_file), never by credentials in the URL"
                .to_string(),
        );
    }
    for (k, _) in u.query_pairs() {
        let lower = k.to_ascii_lowercase();
        if SECRET_LOOKING.iter().any(|s| lower.contains(s)) {
            return Err(format!(
                "url has a query parameter {k:?} that looks like a secret; URLs end up in logs, so put the secret in `secret` or `secret_file` (every delivery is signed with it)"
            ));
        }
    }
    if u.fragment().is_some() {
        return Err("url has a #fragment, which is never sent; remove it".to_string());
    }
    Ok(())
}

impl Validator<'_> {
    pub(super) fn events(
        &mut self,
        raw: Option<RawEvents>,
        max_connections: usize,
    ) -> EventsConfig {
        // By default streams may take at most half the connection slots.
        let default_streams = DEFAULT_MAX_STREAMS.min((max_connections as u64 / 2).max(1));
        let raw = raw.unwrap_or(RawEvents {
            retention_s: None,
            heartbeat_s: None,
            max_streams: None,
        });
        let mut ranged = |v: &Option<Spanned<u64>>, default: u64, lo: u64, hi: u64, what: &str| {
            let Some(v) = v else { return default };
            if *v.get_ref() < lo || *v.get_ref() > hi {
                self.problem(
                    v.span(),
                    format!("[events] {what} must be between {lo} and {hi}"),
                );
                return default;
            }
            *v.get_ref()
        };
        let retention = ranged(
            &raw.retention_s,
            DEFAULT_RETENTION_S,
            60,
            366 * 24 * 3600,
            "retention_s",
        );
        let heartbeat = ranged(&raw.heartbeat_s, DEFAULT_HEARTBEAT_S, 1, 300, "heartbeat_s");
        let max_streams = ranged(&raw.max_streams, default_streams, 1, 4096, "max_streams");
        // A stream holds its connection's slot for as long as it is open:
        // the API keeps room for everything else.
        if let Some(v) = &raw.max_streams {
            if max_streams as usize >= max_connections {
                self.problem(
                    v.span(),
                    format!(
                        "[events] max_streams ({max_streams}) must be below [api] max_connections ({max_connections}): each stream holds a connection slot while open"
                    ),
                );
            }
        }
        EventsConfig {
            retention: Duration::from_secs(retention),
            heartbeat: Duration::from_secs(heartbeat),
            max_streams: max_streams as usize,
        }
    }

    pub(super) fn webhooks(
        &mut self,
        raws: Vec<RawWebhook>,
        campaigns: &[CampaignConfig],
    ) -> Vec<WebhookConfig> {
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        let mut out = Vec::new();
        for raw in raws {
            self.check_name(&raw.name, "webhook");
            let name = raw.name.get_ref().clone();
            if let Some(first) = seen.get(&name).cloned() {
                self.duplicate(raw.name.span(), first, "webhook", &name);
            }
            seen.insert(name.clone(), raw.name.span());
            let url_ok = match check_url(raw.url.get_ref()) {
                Ok(()) => true,
                Err(m) => {
                    self.problem(raw.url.span(), format!("webhook {name:?}: {m}"));
                    false
                }
            };
            let secret = self.secret(
                raw.secret,
                raw.secret_file,
                "the webhook's secret",
                raw.name.span(),
            );
            if secret.as_ref().is_some_and(|s| s.expose().len() < 16) {
                self.problem(
                    raw.name.span(),
                    format!(
                        "webhook {name:?}: the secret is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)"
                    ),
                );
            }
            let kinds = match &raw.events {
                None => KindFilter::default(),
                Some(list) => {
                    let mut patterns = Vec::new();
                    for p in list.get_ref() {
                        match KindFilter::parse(&[p.get_ref()]) {
                            Ok(_) => patterns.push(p.get_ref().clone()),
                            Err(m) => self.problem(p.span(), format!("webhook {name:?}: {m}")),
                        }
                    }
                    if list.get_ref().is_empty() {
                        self.problem(
                            list.span(),
                            format!(
                                "webhook {name:?}: events is empty; leave it out to take every kind"
                            ),
                        );
                    }
                    KindFilter::parse(&patterns).unwrap_or_default()
                }
            };
            for c in &raw.campaigns {
                if !campaigns.iter().any(|k| &k.name == c.get_ref()) {
                    self.dangling(
                        c,
                        "webhook",
                        &name,
                        "campaign",
                        campaigns.iter().map(|k| k.name.as_str()),
                    );
                }
            }
            let mut ranged =
                |v: &Option<Spanned<u64>>, default: u64, lo: u64, hi: u64, what: &str| {
                    let Some(v) = v else { return default };
                    if *v.get_ref() < lo || *v.get_ref() > hi {
                        self.problem(
                            v.span(),
                            format!("webhook {name:?}: {what} must be between {lo} and {hi}"),
                        );
                        return default;
                    }
                    *v.get_ref()
                };
            let timeout = ranged(&raw.timeout_s, 10, 1, 300, "timeout_s");
            let initial = ranged(&raw.retry_initial_ms, 1000, 10, 600_000, "retry_initial_ms");
            let max = ranged(&raw.retry_max_s, 300, 1, 86_400, "retry_max_s");
            let dead = ranged(
                &raw.dead_letter_after_s,
                86_400,
                1,
                30 * 86_400,
                "dead_letter_after_s",
            );
            let lanes = ranged(&raw.lanes, 4, 1, 64, "lanes");
            if initial > max * 1000 {
                if let Some(v) = &raw.retry_initial_ms {
                    self.problem(
                        v.span(),
                        format!(
                            "webhook {name:?}: retry_initial_ms ({initial}) is longer than retry_max_s ({max} s)"
                        ),
                    );
                }
            }
            if let (true, Some(secret)) = (url_ok, secret) {
                out.push(WebhookConfig {
                    name,
                    url: raw.url.into_inner(),
                    secret,
                    kinds,
                    campaigns: raw.campaigns.into_iter().map(Spanned::into_inner).collect(),
                    timeout: Duration::from_secs(timeout),
                    retry_initial: Duration::from_millis(initial),
                    retry_max: Duration::from_secs(max),
                    dead_letter_after: Duration::from_secs(dead),
                    lanes: lanes as usize,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_are_refused() {
        assert!(check_url("https://portal.example/hooks").is_ok());
        assert!(check_url("http://127.0.0.1:9000/h?campaign=x").is_ok());
        assert!(check_url("https://u:p@portal.example/").is_err());
        assert!(check_url("https://portal.example/h?api_key=1").is_err());
        assert!(check_url("https://portal.example/h?Token=1").is_err());
        assert!(check_url("ftp://portal.example/").is_err());
        assert!(check_url("portal.example/h").is_err());
    }

    fn load(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::Config::from_source(std::path::Path::new("/tmp/x.toml"), text)
    }

    #[test]
    fn streams_leave_room_for_the_rest_of_the_api() {
        let c = load("[api]\nmax_connections = 8\n").unwrap();
        assert_eq!(c.events.max_streams, 4, "half the slots by default");
        let c = load("").unwrap();
        assert_eq!(c.events.max_streams, 32);
        assert_eq!(c.events.retention, Duration::from_secs(7 * 24 * 3600));
        let e = load("[api]\nmax_connections = 8\n[events]\nmax_streams = 8\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_streams (8) must be below [api] max_connections (8)"),
            "{e}"
        );
    }
}
