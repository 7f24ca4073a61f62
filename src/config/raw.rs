//! The file's shape, exactly as an admin writes it. Every struct refuses
//! unknown keys so a typo is an error, not a silently ignored setting.
//! Defaults live here and are documented, with the same values, in
//! config/smsgate.toml.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    #[serde(default = "default_state_dir")]
    pub state_dir: Spanned<String>,
    #[serde(default = "default_country")]
    pub default_country: Spanned<String>,
    #[serde(default = "default_log_level")]
    pub log_level: Spanned<String>,
    #[serde(default = "default_drain_timeout_s")]
    pub drain_timeout_s: Spanned<u64>,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            default_country: default_country(),
            log_level: default_log_level(),
            drain_timeout_s: default_drain_timeout_s(),
        }
    }
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

fn default_state_dir() -> Spanned<String> {
    unspanned("/var/lib/smsgate".to_string())
}
fn default_country() -> Spanned<String> {
    unspanned("UY".to_string())
}
fn default_log_level() -> Spanned<String> {
    unspanned("info".to_string())
}
fn default_drain_timeout_s() -> Spanned<u64> {
    unspanned(20)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    #[serde(default = "default_listen")]
    pub listen: Spanned<String>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: Spanned<u64>,
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: Spanned<u64>,
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: Spanned<u64>,
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<u64>,
    #[serde(default = "default_max_uploads")]
    pub max_uploads: Spanned<u64>,
    #[serde(default = "default_upload_idle_timeout_s")]
    pub upload_idle_timeout_s: Spanned<u64>,
}

impl Default for RawApi {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tokens: Vec::new(),
            tls_cert: None,
            tls_key: None,
            max_body_bytes: default_max_body_bytes(),
            max_upload_bytes: default_max_upload_bytes(),
            request_timeout_s: default_request_timeout_s(),
            max_connections: default_max_connections(),
            max_uploads: default_max_uploads(),
            upload_idle_timeout_s: default_upload_idle_timeout_s(),
        }
    }
}

fn default_listen() -> Spanned<String> {
    unspanned("127.0.0.1:8080".to_string())
}
fn default_max_body_bytes() -> Spanned<u64> {
    unspanned(64 * 1024)
}
fn default_max_upload_bytes() -> Spanned<u64> {
    unspanned(512 * 1024 * 1024)
}
fn default_request_timeout_s() -> Spanned<u64> {
    unspanned(30)
}
fn default_max_connections() -> Spanned<u64> {
    unspanned(256)
}
fn default_max_uploads() -> Spanned<u64> {
    unspanned(2)
}
fn default_upload_idle_timeout_s() -> Spanned<u64> {
    unspanned(10)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: Spanned<String>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub role: Spanned<String>,
    /// The agent id of a token with role `agent`.
    pub agent: Option<Spanned<String>>,
}

/// One `[[gateway]]`. All kinds share one flat table; which keys a kind
/// takes is checked after parsing, so the error can say "`device` is a key
/// of kind `at`, not of kind `dinstar`".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub ports: Option<Spanned<i64>>,
    // dinstar
    pub url: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub auth: Option<Spanned<String>>,
    pub tls_accept_invalid: Option<Spanned<bool>>,
    pub tls_fingerprint: Option<Spanned<String>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub result_poll_ms: Option<Spanned<u64>>,
    pub reconcile_grace_ms: Option<Spanned<u64>>,
    pub reconcile_patience_s: Option<Spanned<u64>>,
    pub port_poll_s: Option<Spanned<u64>>,
    pub incoming_poll_s: Option<Spanned<u64>>,
    pub push_allow: Option<Spanned<Vec<Spanned<String>>>>,
    // dinstar-dwg
    pub listen: Option<Spanned<String>>,
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    // at
    pub device: Option<Spanned<String>>,
    pub baud: Option<Spanned<u64>>,
    pub pin: Option<Spanned<String>>,
    pub pin_file: Option<Spanned<String>>,
    pub smsc: Option<Spanned<String>>,
    pub send_timeout_s: Option<Spanned<u64>>,
    // whatsapp-cloud (also `url`, `timeout_ms`)
    pub phone_number_id: Option<Spanned<String>>,
    pub access_token: Option<Spanned<String>>,
    pub access_token_file: Option<Spanned<String>>,
    pub app_secret: Option<Spanned<String>>,
    pub app_secret_file: Option<Spanned<String>>,
    pub verify_token: Option<Spanned<String>>,
    pub verify_token_file: Option<Spanned<String>>,
    pub api_version: Option<Spanned<String>>,
    pub messaging_limit: Option<Spanned<RawMessagingLimit>>,
    pub number: Option<Spanned<String>>,
    // every kind: the circuit breaker that moves a channel group's traffic
    // to its fallback channels
    pub breaker_failures: Option<Spanned<u64>>,
    pub breaker_probe_s: Option<Spanned<u64>>,
    // sim
    pub latency_ms: Option<Spanned<u64>>,
    pub failure_rate: Option<Spanned<f64>>,
    pub inbound_every_s: Option<Spanned<u64>>,
    pub inbound_from: Option<Spanned<Vec<Spanned<String>>>>,
    pub inbound_texts: Option<Spanned<Vec<Spanned<String>>>>,
    // http (also `url`, `user`, `password`, `password_file`, `auth`,
    // `timeout_ms`, `push_allow`)
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    pub body: Option<Spanned<String>>,
    pub form: Option<Spanned<String>>,
    pub json: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub number_format: Option<Spanned<String>>,
    pub sender: Option<Spanned<String>>,
    pub success_status: Option<Spanned<Vec<Spanned<u64>>>>,
    pub success_pointer: Option<Spanned<String>>,
    pub success_value: Option<Spanned<String>>,
    pub success_pattern: Option<Spanned<String>>,
    pub id_pointer: Option<Spanned<String>>,
    pub id_pattern: Option<Spanned<String>>,
    pub auth_status: Option<Spanned<Vec<Spanned<u64>>>>,
    pub auth_pattern: Option<Spanned<String>>,
    pub temporary_pattern: Option<Spanned<String>>,
    pub reports: Option<Spanned<RawHttpReports>>,
    pub inbound: Option<Spanned<RawHttpInbound>>,
    // twilio (also `url`, `ports`, `timeout_ms`)
    pub account_sid: Option<Spanned<String>>,
    pub auth_token: Option<Spanned<String>>,
    pub auth_token_file: Option<Spanned<String>>,
    pub api_key_sid: Option<Spanned<String>>,
    pub api_key_secret_file: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub messaging_service_sid: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub status_callback_url: Option<Spanned<String>>,
    pub status_poll_s: Option<Spanned<u64>>,
    pub status_poll_for_s: Option<Spanned<u64>>,
    pub inbound_poll_s: Option<Spanned<u64>>,
}

/// `[gateway.reports]` of an http provider: the fields of its delivery
/// report callback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpReports {
    pub id_field: Option<Spanned<String>>,
    pub poll_url: Option<Spanned<String>>,
    pub poll_interval_s: Option<Spanned<u64>>,
    pub poll_for_s: Option<Spanned<u64>>,
    pub status_field: Spanned<String>,
    pub delivered: Spanned<Vec<Spanned<String>>>,
    pub undelivered: Spanned<Vec<Spanned<String>>>,
    pub detail_field: Option<Spanned<String>>,
}

/// `[gateway.inbound]` of an http provider: the fields of its callback for
/// a customer's message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpInbound {
    pub from_field: Spanned<String>,
    pub text_field: Spanned<String>,
    pub to_field: Option<Spanned<String>>,
    pub id_field: Option<Spanned<String>>,
}

/// `messaging_limit`: a tier (250, 2000, ...) or "unlimited".
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawMessagingLimit {
    Count(i64),
    Word(String),
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDialer {
    pub name: Spanned<String>,
    pub provider: Spanned<String>,
    pub schedule: Option<Spanned<String>>,
    #[serde(default)]
    pub dial: Option<Spanned<String>>,
    pub interval_ms: Option<Spanned<u64>>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_true")]
    pub dncr: bool,
    pub priority: Option<Spanned<i64>>,
    pub max_attempts: Option<Spanned<u64>>,
    pub retry_backoff_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub resend_unknown: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub name: Spanned<String>,
    pub provider: Spanned<String>,
    #[serde(default)]
    pub did_ports: Vec<Spanned<String>>,
    /// The old name of `did_ports`, still taken (with a warning).
    pub did: Option<Spanned<Vec<Spanned<String>>>>,
    pub strategy: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub out_of_hours_message: Option<Spanned<String>>,
    pub service_level_percent: Option<Spanned<u64>>,
    pub service_level_s: Option<Spanned<u64>>,
    pub abandon_s: Option<Spanned<u64>>,
    pub chat_time_s: Option<Spanned<u64>>,
    pub acd_max_waiting: Option<Spanned<u64>>,
    pub max_interactions_per_agent: Option<Spanned<u64>>,
    #[serde(default)]
    pub canned_responses: Vec<Spanned<String>>,
    pub busy_message: Option<Spanned<String>>,
    pub short_abandon_s: Option<Spanned<u64>>,
    /// Added to `[inbound] opt_out_keywords` for this campaign's traffic.
    #[serde(default)]
    pub opt_out_keywords: Vec<Spanned<String>>,
    /// Added to `[inbound] opt_in_keywords` for this campaign's traffic.
    #[serde(default)]
    pub opt_in_keywords: Vec<Spanned<String>>,
}

/// `[inbound]`: what every received message goes through, whatever its
/// campaign: conversations, out-of-hours replies, opt-out and opt-in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    #[serde(default = "default_interaction_idle_s")]
    pub interaction_idle_s: Spanned<u64>,
    #[serde(default = "default_out_of_hours_every_s")]
    pub out_of_hours_every_s: Spanned<u64>,
    #[serde(default = "default_reply_interval_ms")]
    pub reply_interval_ms: Spanned<u64>,
    pub opt_out_keywords: Option<Vec<Spanned<String>>>,
    pub opt_in_keywords: Option<Vec<Spanned<String>>>,
    #[serde(default = "default_opt_out_scope")]
    pub opt_out_scope: Spanned<String>,
    #[serde(default = "default_opt_out_reply")]
    pub opt_out_reply: Spanned<String>,
    #[serde(default = "default_opt_in_reply")]
    pub opt_in_reply: Spanned<String>,
}

impl Default for RawInbound {
    fn default() -> Self {
        Self {
            interaction_idle_s: default_interaction_idle_s(),
            out_of_hours_every_s: default_out_of_hours_every_s(),
            reply_interval_ms: default_reply_interval_ms(),
            opt_out_keywords: None,
            opt_in_keywords: None,
            opt_out_scope: default_opt_out_scope(),
            opt_out_reply: default_opt_out_reply(),
            opt_in_reply: default_opt_in_reply(),
        }
    }
}

fn default_interaction_idle_s() -> Spanned<u64> {
    unspanned(86_400)
}
fn default_out_of_hours_every_s() -> Spanned<u64> {
    unspanned(43_200)
}
fn default_reply_interval_ms() -> Spanned<u64> {
    unspanned(1000)
}
fn default_opt_out_scope() -> Spanned<String> {
    unspanned("dialers".to_string())
}
fn default_opt_out_reply() -> Spanned<String> {
    unspanned(
        "Su numero fue dado de baja y no recibira mas mensajes. Envie ALTA para volver a recibirlos."
            .to_string(),
    )
}
fn default_opt_in_reply() -> Spanned<String> {
    unspanned(
        "Su numero fue dado de alta nuevamente. Envie BAJA para dejar de recibir mensajes."
            .to_string(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImports {
    #[serde(default = "default_forbidden")]
    pub forbidden_characters: String,
}

impl Default for RawImports {
    fn default() -> Self {
        Self {
            forbidden_characters: default_forbidden(),
        }
    }
}

fn default_forbidden() -> String {
    "'\"@".to_string()
}

/// One `[[channel_group]]`: channels in order of preference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannelGroup {
    pub name: Spanned<String>,
    pub primary: Vec<Spanned<String>>,
    #[serde(default)]
    pub fallback: Vec<Spanned<String>>,
}
