//! The TOML configuration: parsed once, validated completely, then shared
//! read-only. A reload builds a whole new `Config` and swaps it in; a file
//! that fails validation never replaces the running one.

mod diag;
pub mod dialstring;
mod raw;
pub mod schedule;
mod validate;
mod warnings;
mod webhooks;
pub mod whatsapp_cloud;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diag::{Diagnostics, Located, Problem, line_column};
use validate::Validator;
pub use webhooks::{EventsConfig, KindFilter, WebhookConfig};
pub use whatsapp_cloud::WhatsappCloudSettings;

pub const DEFAULT_PATH: &str = "/etc/smsgate/smsgate.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// A secret (API token, gateway password, SIM PIN). Its Debug and Display
/// never show the value, so it cannot leak into a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A token's role. Declared weakest first: the CLI picks the weakest
/// token that suffices. What a role may do is [`Role::grants`]: an agent
/// is the weakest but no viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One agent (the token's `agent`): its own state, inbox and replies.
    Agent,
    Viewer,
    Operator,
    /// Operator, and the ACD: sets agents and members, acts on any agent
    /// (pause, chat, log out), spies on interactions.
    Supervisor,
    Admin,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "supervisor" => Some(Self::Supervisor),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Supervisor => "supervisor",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
            Self::Agent => "agent",
        }
    }

    /// Whether a token of this role may call a route that needs `need`:
    /// viewer ⊂ operator ⊂ supervisor ⊂ admin, each adding its own; an
    /// agent is outside that line and only an agent (routes that take an
    /// agent's token keep it to its own agent); a supervisor and an admin
    /// may act for any agent.
    pub fn grants(self, need: Role) -> bool {
        use Role::*;
        match need {
            Agent => matches!(self, Agent | Supervisor | Admin),
            _ => self != Agent && self >= need,
        }
    }
}

/// Whether `id` can be an agent's id: 1 to 64 letters, digits, `.`,
/// `_`, `-` or `@`. The portal names agents; this keeps ids safe in
/// paths, tokens and records.
pub fn valid_agent_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub api: ApiConfig,
    pub gateways: Vec<GatewayConfig>,
    pub dialers: Vec<DialerConfig>,
    pub campaigns: Vec<CampaignConfig>,
    pub imports: ImportsConfig,
    pub inbound: InboundConfig,
    pub channel_groups: Vec<ChannelGroupConfig>,
    /// Compiled `[schedule.NAME]` sections, named by dialers and campaigns.
    pub schedules: HashMap<String, std::sync::Arc<schedule::Schedule>>,
    /// `[events]`: the event log's retention and the event stream's limits.
    pub events: EventsConfig,
    /// `[[webhook]]`: receivers of the event log.
    pub webhooks: Vec<WebhookConfig>,
    /// The files secrets were read from (`token_file`, `password_file`,
    /// `pin_file`), for [`Config::warnings`].
    pub secret_files: Vec<PathBuf>,
    /// What the file should say otherwise (an old key name), each with its
    /// place: warnings, the file stays valid.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub default_country: String,
    pub log_level: String,
    pub drain_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub tokens: Vec<ApiToken>,
    pub tls: Option<TlsFiles>,
    pub max_body_bytes: usize,
    pub max_upload_bytes: u64,
    pub request_timeout: Duration,
    pub max_connections: usize,
    /// Uploads staged or imported at once; more get 429.
    pub max_uploads: usize,
    /// An upload that sends nothing for this long is abandoned (408).
    pub upload_idle_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
    /// The agent an `agent` token is (its `agent` key); None otherwise.
    pub agent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum GatewayKind {
    #[serde(rename = "dinstar")]
    Dinstar,
    #[serde(rename = "dinstar-dwg")]
    DinstarDwg,
    #[serde(rename = "at")]
    At,
    #[serde(rename = "twilio")]
    Twilio,
    #[serde(rename = "whatsapp-cloud")]
    WhatsappCloud,
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "sim")]
    Sim,
}

const KIND_NAMES: &[&str] = &[
    "dinstar",
    "dinstar-dwg",
    "at",
    "twilio",
    "whatsapp-cloud",
    "http",
    "sim",
];

impl GatewayKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "dinstar" => Self::Dinstar,
            "dinstar-dwg" => Self::DinstarDwg,
            "at" => Self::At,
            "twilio" => Self::Twilio,
            "whatsapp-cloud" => Self::WhatsappCloud,
            "http" => Self::Http,
            "sim" => Self::Sim,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dinstar => "dinstar",
            Self::DinstarDwg => "dinstar-dwg",
            Self::At => "at",
            Self::Twilio => "twilio",
            Self::WhatsappCloud => "whatsapp-cloud",
            Self::Http => "http",
            Self::Sim => "sim",
        }
    }
    /// A provider reached over the internet, whose ports are logical
    /// channels: one unless `ports` says more.
    pub fn is_provider(self) -> bool {
        matches!(self, Self::Http | Self::Twilio | Self::WhatsappCloud)
    }
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub name: String,
    pub kind: GatewayKind,
    pub enabled: bool,
    pub ports: u32,
    /// Consecutive gateway-level failures (timeouts, connection errors, 5xx,
    /// refused credentials) that open its breaker.
    pub breaker_failures: u32,
    /// How often an open breaker checks whether the gateway is back.
    pub breaker_probe: Duration,
    pub settings: GatewaySettings,
}

#[derive(Debug, Clone)]
pub enum GatewaySettings {
    Sim(SimSettings),
    Dinstar(DinstarSettings),
    DinstarDwg(DwgSettings),
    At(AtSettings),
    Http(Box<HttpSettings>),
    WhatsappCloud(Box<WhatsappCloudSettings>),
    Twilio(Box<TwilioSettings>),
}

/// Who may call a gateway's push route (`/api/v1/gateways/{name}/push`).
pub enum PushSource<'a> {
    /// Peers in this list (the gateway cannot sign: Dinstar, http).
    Allow(&'a AllowList),
    /// Anyone: the transport checks the request's signature (Twilio, Meta).
    Signed,
    /// Nobody: the kind takes no pushes.
    None,
}

impl GatewaySettings {
    pub fn push_source(&self) -> PushSource<'_> {
        match self {
            Self::Dinstar(s) => PushSource::Allow(&s.push_allow),
            Self::Http(s) => PushSource::Allow(&s.push_allow),
            Self::WhatsappCloud(_) => PushSource::Signed,
            Self::Twilio(_) => PushSource::Signed,
            Self::Sim(_) | Self::DinstarDwg(_) | Self::At(_) => PushSource::None,
        }
    }
}

/// `kind = "twilio"`: Twilio's Messages API, SMS or WhatsApp.
#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// The API's base, `https://api.twilio.com` unless tests say otherwise.
    pub url: String,
    pub account_sid: String,
    /// The account's auth token: basic auth without an API key, and the key
    /// of every webhook signature (Twilio signs with it even when we
    /// authenticate with an API key).
    pub auth_token: Option<Secret>,
    /// An API key (`SK...`) and its secret, for basic auth instead of the
    /// auth token.
    pub api_key: Option<(String, Secret)>,
    pub sender: smsgate_proto::twilio::Sender,
    pub channel: smsgate_proto::twilio::Channel,
    /// The public URL of our push route for this gateway, as Twilio calls
    /// it; None: no callbacks are asked for.
    pub status_callback_url: Option<String>,
    pub timeout: Duration,
    /// How often each message in flight is fetched; None: callbacks only.
    pub status_poll: Option<Duration>,
    /// How long a sent message is polled for before it is given up on.
    pub status_poll_for: Duration,
    /// How often received messages are listed; None: webhook only.
    pub inbound_poll: Option<Duration>,
    /// WhatsApp: customers reached outside their window per rolling 24 h.
    pub messaging_limit: Option<u32>,
}

/// `kind = "http"`: a templated HTTP request per message.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub url: smsgate_proto::http_api::Template,
    /// GET or POST.
    pub method: http::Method,
    /// Header name and value template, in the file's order.
    pub headers: Vec<(String, smsgate_proto::http_api::Template)>,
    pub body: HttpBody,
    pub auth: HttpAuth,
    pub user: String,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    pub number_format: smsgate_proto::http_api::NumberFormat,
    pub sender: String,
    pub timeout: Duration,
    pub reply: smsgate_proto::http_api::ReplyRules,
    pub reports: Option<HttpReports>,
    pub inbound: Option<HttpInbound>,
    /// Where its callbacks may come from.
    pub push_allow: AllowList,
}

#[derive(Debug, Clone)]
pub enum HttpBody {
    None,
    Form(smsgate_proto::http_api::Template),
    Json(smsgate_proto::http_api::Template),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuth {
    None,
    /// `Authorization: Basic` with `user` and the password.
    Basic,
    /// `Authorization: Bearer` with the token.
    Bearer,
}

/// A delivery report callback's fields.
#[derive(Debug, Clone)]
pub struct HttpReports {
    /// The provider's id in a report callback; None: reports only by poll.
    pub id_field: Option<String>,
    /// Asking the provider for each sent message's status.
    pub poll: Option<HttpPoll>,
    pub status_field: String,
    pub delivered: Vec<String>,
    pub undelivered: Vec<String>,
    pub detail_field: Option<String>,
}

/// A status poll: `url` (with `{provider_id}` or `{message_id}`) asked
/// every `every` for each message sent within `window` that has no final
/// report yet; the answer is read with the report's `status_field`.
#[derive(Debug, Clone)]
pub struct HttpPoll {
    pub url: smsgate_proto::http_api::Template,
    pub every: Duration,
    pub window: Duration,
}

/// A received message callback's fields.
#[derive(Debug, Clone)]
pub struct HttpInbound {
    pub from_field: String,
    pub text_field: String,
    pub to_field: Option<String>,
    pub id_field: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SimSettings {
    pub latency: Duration,
    pub failure_rate: f64,
    /// A simulated customer writes in this often (None: never), on each
    /// port in turn, from `inbound_from` in turn, with `inbound_texts` in
    /// turn.
    pub inbound_every: Option<Duration>,
    pub inbound_from: Vec<String>,
    pub inbound_texts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DinstarSettings {
    pub url: String,
    pub user: String,
    pub password: Secret,
    pub digest: bool,
    pub tls_accept_invalid: bool,
    pub tls_fingerprint: Option<String>,
    pub timeout: Duration,
    pub result_poll: Duration,
    /// `reconcile_grace_ms`: how long after a send whose answer was lost
    /// (or a restart) the gateway may still act on the request; until
    /// then "no such user_id" means "not yet", not "not sent". Longer
    /// than `timeout`; by default three times it.
    pub reconcile_grace: Duration,
    /// `reconcile_patience_s`: how long questions about a message in doubt
    /// that fail are asked again before it is settled UNKNOWN (or resent,
    /// with `resend_unknown`). Default 15 min.
    pub reconcile_patience: Duration,
    pub port_poll: Duration,
    pub incoming_poll: Duration,
    pub push_allow: AllowList,
}

#[derive(Debug, Clone)]
pub struct DwgSettings {
    pub listen: SocketAddr,
    pub user: String,
    pub password: Secret,
    /// Where the gateway may connect from; empty: anywhere.
    pub allow: AllowList,
}

/// Source addresses a listener takes connections from: single addresses
/// and CIDR networks, IPv4 and IPv6 (`allow`, `push_allow`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<ipnet::IpNet>);

impl AllowList {
    pub fn new(nets: Vec<ipnet::IpNet>) -> Self {
        Self(nets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether `ip` is listed. An IPv4 peer seen on a dual-stack socket
    /// (::ffff:192.0.2.1) matches its IPv4 entry.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// An entry in the file's words: one address, or a network.
    pub fn parse_entry(s: &str) -> Result<ipnet::IpNet, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<std::net::IpAddr>() {
            return Ok(ipnet::IpNet::from(ip.to_canonical()));
        }
        let net: ipnet::IpNet = s.parse().map_err(|_| {
            format!("{s:?} is not an IP address or a network such as \"192.168.1.0/24\"")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{s:?} has bits set past its prefix: write {} for the network, or the address alone",
                net.trunc()
            ));
        }
        Ok(net)
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            // A single address reads as itself, not as a /32.
            if n.prefix_len() == n.max_prefix_len() {
                write!(f, "{}", n.addr())?;
            } else {
                write!(f, "{n}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct AtSettings {
    pub device: PathBuf,
    pub baud: u32,
    pub pin: Option<Secret>,
    pub smsc: Option<String>,
    /// `timeout_ms`: how long a simple command (AT, CREG, CMGR...) may take
    /// before the modem is taken for dead and reopened.
    pub timeout: Duration,
    /// `port_poll_s`: how often SIM, registration, operator and signal are
    /// read.
    pub port_poll: Duration,
    /// `send_timeout_s`: from the PDU's Ctrl-Z to `+CMGS`; the network
    /// decides (Quectel documents up to 120 s), so this is long.
    pub send_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DialerConfig {
    pub name: String,
    pub provider: String,
    pub schedule: Option<String>,
    pub dial: String,
    /// The dial string parsed: the gateway's ports in round-robin order
    /// (every port when `dial` is empty). Empty for a channel group, whose
    /// sets name their own ports.
    pub ports: Vec<u32>,
    pub interval: Duration,
    pub enabled: bool,
    pub dncr: bool,
    pub priority: i64,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub resend_unknown: bool,
    /// Built in (the replies and consent dialers): its messages are pinned
    /// to a channel each, and no one submits to it or imports into it.
    pub system: bool,
}

impl DialerConfig {
    /// The wait before retry `attempt` (1 = the first retry): exponential
    /// from `retry_backoff_ms`, capped at one hour.
    pub fn backoff_ms(&self, attempt: i64) -> i64 {
        let base = self.retry_backoff.as_millis() as i64;
        let factor = 1i64 << (attempt - 1).clamp(0, 10);
        (base.saturating_mul(factor)).min(3_600_000)
    }
}

/// Channels of one gateway: all its ports, or those a dial string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSet {
    pub gateway: String,
    pub ports: Vec<u32>,
}

/// A provider made of several gateways' channels: the primary ones while
/// their gateways' breakers are closed and one of them can send, the
/// fallback ones otherwise.
#[derive(Debug, Clone)]
pub struct ChannelGroupConfig {
    pub name: String,
    pub primary: Vec<ChannelSet>,
    pub fallback: Vec<ChannelSet>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CampaignConfig {
    pub name: String,
    pub provider: String,
    /// Where its messages arrive, in the file's words.
    pub did_ports: Vec<String>,
    #[serde(skip)]
    pub dids: Vec<Did>,
    pub strategy: Strategy,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub out_of_hours_message: Option<String>,
    pub service_level_percent: u32,
    pub service_level_s: u64,
    pub abandon_s: u64,
    pub chat_time_s: u64,
    pub acd_max_waiting: u32,
    pub max_interactions_per_agent: u32,
    pub canned_responses: Vec<String>,
    /// Sent back to a new customer when `acd_max_waiting` are waiting
    /// already; None: the customer is refused without a reply.
    pub busy_message: Option<String>,
    /// An abandon faster than this is left out of the service level.
    pub short_abandon_s: u64,
    /// Opt-out keywords of this campaign's traffic, besides the global ones.
    pub opt_out_keywords: Vec<String>,
    /// Opt-in keywords of this campaign's traffic, besides the global ones.
    pub opt_in_keywords: Vec<String>,
}

/// One entry of a campaign's `did_ports`: where a received message must
/// have arrived to be the campaign's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Did {
    /// A port of a gateway ("gw1:0").
    Port { gateway: String, port: u32 },
    /// Our number the customer wrote to, in E.164.
    Number(String),
    /// An identity the provider reports (an alphanumeric id, a WhatsApp
    /// phone number id), compared as written.
    Id(String),
}

impl Did {
    /// Whether a message received on `gateway`, `port`, sent to
    /// `recipient` as the provider wrote it (`number`: the same in E.164,
    /// when it is one), arrived here.
    pub fn matches(
        &self,
        gateway: &str,
        port: Option<u32>,
        recipient: Option<&str>,
        number: Option<&str>,
    ) -> bool {
        match self {
            Did::Port {
                gateway: g,
                port: p,
            } => g == gateway && port == Some(*p),
            Did::Number(n) => number == Some(n.as_str()),
            Did::Id(id) => recipient == Some(id.as_str()),
        }
    }
}

/// How a campaign hands its queue to agents (the ACD's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each agent in turn, going on after the last one served.
    RoundRobin,
    /// The agent with the fewest open interactions.
    FewestActive,
    /// The agent idle the longest.
    LongestIdle,
}

impl Strategy {
    pub const NAMES: &'static [&'static str] = &["round_robin", "fewest_active", "longest_idle"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "round_robin" => Some(Self::RoundRobin),
            "fewest_active" => Some(Self::FewestActive),
            "longest_idle" => Some(Self::LongestIdle),
            _ => None,
        }
    }
}

impl Config {
    /// The enabled campaign a message received on `gateway`, `port`, sent
    /// to `recipient`, belongs to. A disabled campaign takes nothing (its
    /// traffic is unrouted).
    pub fn campaign_for(
        &self,
        gateway: &str,
        port: Option<u32>,
        recipient: Option<&str>,
    ) -> Option<&CampaignConfig> {
        let number = recipient.and_then(|r| {
            smsgate_proto::sms::phone::normalise(r, &self.daemon.default_country)
                .ok()
                .map(|n| n.into_string())
        });
        self.campaigns.iter().filter(|c| c.enabled).find(|c| {
            c.dids
                .iter()
                .any(|d| d.matches(gateway, port, recipient, number.as_deref()))
        })
    }

    pub fn campaign(&self, name: &str) -> Option<&CampaignConfig> {
        self.campaigns.iter().find(|c| c.name == name)
    }
}

/// `[inbound]`: conversations, out-of-hours replies, opt-out and opt-in.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// An interaction with no message for this long is closed.
    pub interaction_idle: Duration,
    /// A customer gets the out-of-hours message at most once per this.
    pub out_of_hours_every: Duration,
    /// The time between two system replies on one channel.
    pub reply_interval: Duration,
    pub opt_out_keywords: Vec<String>,
    pub opt_in_keywords: Vec<String>,
    pub opt_out_scope: OptOutScope,
    /// The confirmation of an opt-out; None sends none.
    pub opt_out_reply: Option<String>,
    /// The confirmation of an opt-in; None sends none.
    pub opt_in_reply: Option<String>,
}

/// Whose DNCR list an opt-out keyword puts its sender on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OptOutScope {
    /// The lists of the dialers that texted the number (the global list
    /// when none did): the customer leaves what they received.
    Dialers,
    /// The global list: no dialer texts the number again.
    Global,
}

/// The dialer that sends what the system answers a customer on its own
/// (out-of-hours replies), each message on the channel the customer wrote
/// to. Built in; no `[[dialer]]` may take its name.
pub const REPLIES_DIALER: &str = "system:replies";
/// The dialer of opt-out and opt-in confirmations. It checks no DNCR list:
/// the confirmation of an opt-out goes to a number that is now on one.
pub const CONSENT_DIALER: &str = "system:consent";

impl InboundConfig {
    /// The two built-in dialers: every message pinned to its channel, sent
    /// at any hour, paced by `reply_interval_ms`.
    pub(crate) fn system_dialers(&self) -> [DialerConfig; 2] {
        let dialer = |name: &str, dncr: bool| DialerConfig {
            name: name.to_string(),
            provider: String::new(),
            schedule: None,
            dial: String::new(),
            ports: Vec::new(),
            interval: self.reply_interval,
            enabled: true,
            dncr,
            priority: MIN_PRIORITY,
            max_attempts: 5,
            retry_backoff: Duration::from_secs(5),
            resend_unknown: false,
            system: true,
        };
        [dialer(REPLIES_DIALER, true), dialer(CONSENT_DIALER, false)]
    }
}

#[derive(Debug, Clone)]
pub struct ImportsConfig {
    pub forbidden_characters: Vec<char>,
}

pub const MIN_PRIORITY: i64 = 1;
pub const MAX_PRIORITY: i64 = 9999;

impl Config {
    /// Reads and validates a file. Blocking: call it off the async workers.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_source(path, &source)
    }

    /// Validates `source` as if read from `path` (relative secret files are
    /// resolved against the file's folder).
    pub fn from_source(path: &Path, source: &str) -> Result<Self, ConfigError> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut v = Validator {
            base,
            problems: Vec::new(),
            secret_files: Vec::new(),
            notes: Vec::new(),
        };
        let config = v.document(path, source).map(|mut c| {
            c.secret_files = std::mem::take(&mut v.secret_files);
            c.notes = v
                .notes
                .iter()
                .map(|(span, note)| {
                    let (line, column) = diag::line_column(source, span.start);
                    format!("{}:{line}:{column}: {note}", path.display())
                })
                .collect();
            c
        });
        match config {
            Some(c) if v.problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(Diagnostics::new(
                path, source, v.problems,
            ))),
        }
    }

    pub fn gateway(&self, name: &str) -> Option<&GatewayConfig> {
        self.gateways.iter().find(|g| g.name == name)
    }

    pub fn channel_group(&self, name: &str) -> Option<&ChannelGroupConfig> {
        self.channel_groups.iter().find(|g| g.name == name)
    }

    pub fn dialer(&self, name: &str) -> Option<&DialerConfig> {
        self.dialers.iter().find(|d| d.name == name)
    }

    /// A dialer an operator may submit to or import into: a configured
    /// one, not a built-in reply dialer.
    pub fn user_dialer(&self, name: &str) -> Option<&DialerConfig> {
        self.dialer(name).filter(|d| !d.system)
    }

    /// A token's role, compared in constant time against every configured
    /// token so the time taken does not tell how much of a guess was right.
    pub fn role_for_token(&self, presented: &str) -> Option<Role> {
        self.token_for(presented).map(|t| t.role)
    }

    /// The configured token a presented secret is, compared in constant
    /// time against every token.
    pub fn token_for(&self, presented: &str) -> Option<&ApiToken> {
        use subtle::ConstantTimeEq;
        let mut found = None;
        for t in &self.api.tokens {
            let secret = t.secret.expose().as_bytes();
            let same: bool = if secret.len() == presented.len() {
                secret.ct_eq(presented.as_bytes()).into()
            } else {
                false
            };
            if same && found.is_none() {
                found = Some(t);
            }
        }
        found
    }
}
