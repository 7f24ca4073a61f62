//! `kind = "whatsapp-cloud"`: Meta's WhatsApp Business Cloud API, reached
//! directly with a system user's access token.

use std::time::Duration;

use super::Secret;

/// Meta's Graph API, where the Cloud API lives.
pub const DEFAULT_URL: &str = "https://graph.facebook.com";
/// The Graph API version used when `api_version` is not set.
pub const DEFAULT_API_VERSION: &str = "v21.0";
/// Meta's messaging-limit tiers: customers reached outside their window
/// per rolling 24 hours.
pub const LIMIT_TIERS: &[u32] = &[250, 2_000, 10_000, 100_000];

#[derive(Debug, Clone)]
pub struct WhatsappCloudSettings {
    /// Our number's id at Meta (the path of every send).
    pub phone_number_id: String,
    pub access_token: Secret,
    /// Signs Meta's webhooks (X-Hub-Signature-256).
    pub app_secret: Secret,
    /// What Meta's verification GET must present.
    pub verify_token: Secret,
    /// Without a trailing '/'.
    pub url: String,
    pub api_version: String,
    pub timeout: Duration,
    /// None: unlimited (still counted and reported).
    pub messaging_limit: Option<u32>,
    /// Our WhatsApp number, E.164: the recipient of what customers send,
    /// by which inbound is routed to campaigns.
    pub number: Option<String>,
}

impl WhatsappCloudSettings {
    /// `{url}/{api_version}/{phone_number_id}/messages`.
    pub fn messages_url(&self) -> String {
        format!(
            "{}/{}/{}/messages",
            self.url, self.api_version, self.phone_number_id
        )
    }

    /// Every secret, for a reload's key and for redaction.
    pub fn secrets(&self) -> [&str; 3] {
        [
            self.access_token.expose(),
            self.app_secret.expose(),
            self.verify_token.expose(),
        ]
    }
}
