//! `[events]` and `[[webhook]]`, validated: how long the portal's event
//! log is kept, the event stream's limits, and the receivers the event log
//! is delivered to. The file's shape and its checks are
//! `validate/webhooks.rs`.

use std::time::Duration;

use super::Secret;

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// Events older than this are purged (but never one a webhook still
    /// owes: see `store::events::purge`).
    pub retention: Duration,
    /// A comment line sent on an idle event stream this often.
    pub heartbeat: Duration,
    /// Event streams open at once; more are refused with 503.
    pub max_streams: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(DEFAULT_RETENTION_S),
            heartbeat: Duration::from_secs(DEFAULT_HEARTBEAT_S),
            max_streams: DEFAULT_MAX_STREAMS as usize,
        }
    }
}

/// Which event kinds a receiver or a stream takes: exact kinds
/// (`message.state`), prefixes (`message.*`), or everything (`*`, or an
/// empty list). Kinds are plain strings: new kinds need no change here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindFilter(Vec<String>);

impl KindFilter {
    /// Parses patterns; the first one that is not a kind, a `prefix.*` or
    /// `*` is the error.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, String> {
        let mut v = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let body = p.strip_suffix('*').unwrap_or(p);
            let ok = body.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-'
            }) && (body.is_empty() || !p.ends_with('*') || body.ends_with('.'));
            if !ok {
                return Err(format!(
                    "{p:?} is not an event kind (such as \"message.received\"), a prefix (\"message.*\") or \"*\""
                ));
            }
            v.push(p.to_string());
        }
        Ok(Self(v))
    }

    /// Everything passes an empty filter.
    pub fn matches(&self, kind: &str) -> bool {
        self.0.is_empty()
            || self.0.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => kind.starts_with(prefix),
                None => p == kind,
            })
    }

    /// The patterns as written (empty: every kind).
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// One `[[webhook]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub name: String,
    /// http or https, with no user info and no secret-looking query.
    pub url: String,
    /// The HMAC key; never logged, never shown by the API.
    pub secret: Secret,
    pub kinds: KindFilter,
    /// Only events of these campaigns (empty: every event, with or
    /// without a campaign).
    pub campaigns: Vec<String>,
    /// One request's whole time, connection included.
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long one delivery may keep failing before it is dead-lettered
    /// and the outbox moves on.
    pub dead_letter_after: Duration,
    /// Deliveries in flight at once, each lane an ordered share of the
    /// interactions (events with no interaction all go to one lane).
    pub lanes: usize,
}

impl WebhookConfig {
    /// Whether an event of `kind` (and `campaign`) goes to this receiver.
    pub fn wants(&self, kind: &str, campaign: Option<&str>) -> bool {
        self.kinds.matches(kind)
            && (self.campaigns.is_empty()
                || campaign.is_some_and(|c| self.campaigns.iter().any(|w| w == c)))
    }
}

pub(super) const DEFAULT_RETENTION_S: u64 = 7 * 24 * 3600;
pub(super) const DEFAULT_HEARTBEAT_S: u64 = 15;
pub(super) const DEFAULT_MAX_STREAMS: u64 = 32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_exactly_by_prefix_or_all() {
        let f = KindFilter::parse(&["message.*", "interaction.opened"]).unwrap();
        assert!(f.matches("message.received"));
        assert!(f.matches("message.state"));
        assert!(f.matches("interaction.opened"));
        assert!(!f.matches("interaction.closed"));
        assert!(!f.matches("consent.changed"));
        assert!(KindFilter::parse(&["*"]).unwrap().matches("acd.anything"));
        assert!(KindFilter::default().matches("x"));
        assert!(KindFilter::parse(&["mess*"]).is_err());
        assert!(KindFilter::parse(&["Message.State"]).is_err());
        assert!(KindFilter::parse(&["a b"]).is_err());
    }
}
