//! The TOML configuration: parsed once, validated completely, then shared
//! read-only. A reload builds a whole new `Config` and swaps it in; a file
//! that fails validation never replaces the running one.

mod diag;
mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diag::{Diagnostics, Located, Problem, line_column};
use raw::*;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "operator" => Some(Self::Operator),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
        }
    }
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
    pub channel_groups: Vec<ChannelGroupConfig>,
    /// Compiled `[schedule.NAME]` sections, named by dialers and campaigns.
    pub schedules: HashMap<String, std::sync::Arc<crate::dialer::schedule::Schedule>>,
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
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
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
    #[serde(rename = "http")]
    Http,
    #[serde(rename = "sim")]
    Sim,
}

const KIND_NAMES: &[&str] = &["dinstar", "dinstar-dwg", "at", "twilio", "http", "sim"];

impl GatewayKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "dinstar" => Self::Dinstar,
            "dinstar-dwg" => Self::DinstarDwg,
            "at" => Self::At,
            "twilio" => Self::Twilio,
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
            Self::Http => "http",
            Self::Sim => "sim",
        }
    }
    /// Providers without ports (aggregators) take no dial string.
    pub fn has_ports(self) -> bool {
        !matches!(self, Self::Twilio | Self::Http)
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
}

#[derive(Debug, Clone)]
pub struct SimSettings {
    pub latency: Duration,
    pub failure_rate: f64,
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
    pub port_poll: Duration,
    pub incoming_poll: Duration,
    pub push_allow: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone)]
pub struct DwgSettings {
    pub listen: SocketAddr,
    pub user: String,
    pub password: Secret,
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
    pub interval: Duration,
    pub enabled: bool,
    pub dncr: bool,
    pub priority: i64,
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    pub resend_unknown: bool,
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

#[derive(Debug, Clone)]
pub struct CampaignConfig {
    pub name: String,
    pub provider: String,
    pub did: Vec<String>,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub out_of_hours_message: Option<String>,
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
        };
        let config = v.document(path, source);
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

    /// The longest text a dialer can send, in UTF-16 units, when one of the
    /// gateways it may send through caps it (a Dinstar gateway takes at
    /// most 670 characters whatever the encoding), with that gateway's
    /// name. None when only the ten-part SMS limit applies.
    pub fn text_limit(&self, dialer: &DialerConfig) -> Option<(usize, &str)> {
        let gateways: Vec<&str> = match self.channel_group(&dialer.provider) {
            Some(group) => group
                .primary
                .iter()
                .chain(&group.fallback)
                .map(|set| set.gateway.as_str())
                .collect(),
            None => vec![dialer.provider.as_str()],
        };
        gateways
            .into_iter()
            .filter_map(|name| self.gateway(name))
            .find(|g| g.kind == GatewayKind::Dinstar)
            .map(|g| {
                (
                    smsgate_proto::dinstar::wire::MAX_TEXT_CHARS,
                    g.name.as_str(),
                )
            })
    }

    /// A token's role, compared in constant time against every configured
    /// token so the time taken does not tell how much of a guess was right.
    pub fn role_for_token(&self, presented: &str) -> Option<Role> {
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
                found = Some(t.role);
            }
        }
        found
    }
}

/// A gateway key, where it was written, and the kinds that take it.
type KindKey<'a> = (&'a str, Option<Range<usize>>, &'a [GatewayKind]);

const TOP_KEYS: &[&str] = &[
    "daemon",
    "api",
    "gateway",
    "channel_group",
    "dialer",
    "campaign",
    "imports",
    "schedule",
];

struct Validator<'a> {
    base: &'a Path,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        if span.is_empty() && span.start == 0 {
            self.problems.push(Problem::whole_file(message));
        } else {
            self.problems.push(Problem::at(span, message));
        }
    }

    fn document(&mut self, _path: &Path, source: &str) -> Option<Config> {
        let (root, errors) = DeTable::parse_recoverable(source);
        if !errors.is_empty() {
            for e in errors {
                let msg = format!("TOML syntax error: {}", e.message().trim());
                match e.span() {
                    Some(s) => self.problem(s, msg),
                    None => self.problems.push(Problem::whole_file(msg)),
                }
            }
            return None;
        }
        let root = root.into_inner();
        let mut sections: HashMap<&str, Spanned<DeValue<'_>>> = HashMap::new();
        for (key, value) in root {
            let name = key.get_ref().as_ref();
            if let Some(known) = TOP_KEYS.iter().find(|k| **k == name) {
                sections.insert(known, value);
            } else {
                let mut m = format!("unknown section `{name}`");
                if let Some(best) = diag::closest(name, TOP_KEYS) {
                    m.push_str(&format!("; did you mean `{best}`?"));
                } else {
                    m.push_str(&format!("; known sections: {}", TOP_KEYS.join(", ")));
                }
                self.problem(key.span(), m);
            }
        }

        let daemon: RawDaemon = self
            .section(sections.remove("daemon"), "[daemon]")
            .unwrap_or_default();
        let api: RawApi = self
            .section(sections.remove("api"), "[api]")
            .unwrap_or_default();
        let imports: RawImports = self
            .section(sections.remove("imports"), "[imports]")
            .unwrap_or_default();
        let gateways: Vec<RawGateway> = self.array(sections.remove("gateway"), "[[gateway]]");
        let dialers: Vec<RawDialer> = self.array(sections.remove("dialer"), "[[dialer]]");
        let campaigns: Vec<RawCampaign> = self.array(sections.remove("campaign"), "[[campaign]]");
        let groups: Vec<RawChannelGroup> =
            self.array(sections.remove("channel_group"), "[[channel_group]]");

        let schedules = self.schedules(sections.remove("schedule"));
        let daemon = self.daemon(daemon);
        let api = self.api(api);
        let gateways = self.gateways(gateways);
        let channel_groups = self.channel_groups(groups, &gateways);
        let dialers = self.dialers(dialers, &gateways, &channel_groups, &schedules);
        let campaigns = self.campaigns(campaigns, &gateways, &schedules);
        let imports = ImportsConfig {
            forbidden_characters: imports.forbidden_characters.chars().collect(),
        };
        Some(Config {
            path: PathBuf::new(),
            daemon,
            api,
            gateways,
            dialers,
            campaigns,
            imports,
            schedules,
            channel_groups,
        })
    }

    fn channel_groups(
        &mut self,
        raws: Vec<RawChannelGroup>,
        gateways: &[GatewayConfig],
    ) -> Vec<ChannelGroupConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        for g in raws {
            self.check_name(&g.name, "channel group");
            if let Some(first) = seen.get(g.name.get_ref()) {
                let first = first.clone();
                self.duplicate(g.name.span(), first, "channel group", g.name.get_ref());
            }
            seen.insert(g.name.get_ref().clone(), g.name.span());
            if gateways.iter().any(|gw| &gw.name == g.name.get_ref()) {
                self.problem(
                    g.name.span(),
                    format!(
                        "channel group {:?} has the name of a gateway; dialers name either, so the names must differ",
                        g.name.get_ref()
                    ),
                );
            }
            if g.primary.is_empty() {
                self.problem(
                    g.name.span(),
                    "a channel group needs at least one primary channel",
                );
            }
            let owner = g.name.get_ref().clone();
            let sets = |list: &[Spanned<String>], v: &mut Self| -> Vec<ChannelSet> {
                let mut out = Vec::new();
                for entry in list {
                    let (gw_name, dial) = match entry.get_ref().split_once(':') {
                        Some((g, d)) => (g.trim(), d.trim()),
                        None => (entry.get_ref().trim(), ""),
                    };
                    let Some(gw) = gateways.iter().find(|x| x.name == gw_name) else {
                        let named = Spanned::new(entry.span(), gw_name.to_string());
                        v.dangling(
                            &named,
                            "channel group",
                            &owner,
                            "gateway",
                            gateways.iter().map(|x| x.name.as_str()),
                        );
                        continue;
                    };
                    match check_dial(dial, gw).and_then(|_| {
                        if gw.kind.has_ports() {
                            crate::dialer::parse_dial(dial, gw.ports)
                        } else {
                            Ok(Vec::new())
                        }
                    }) {
                        Ok(ports) => out.push(ChannelSet {
                            gateway: gw.name.clone(),
                            ports,
                        }),
                        Err(m) => v.problem(entry.span(), m),
                    }
                }
                out
            };
            let primary = sets(&g.primary, self);
            let fallback = sets(&g.fallback, self);
            out.push(ChannelGroupConfig {
                name: g.name.into_inner(),
                primary,
                fallback,
            });
        }
        out
    }

    /// `[schedule.NAME]` tables, each compiled (time zone, windows,
    /// exceptions) so a bad one is reported here and not at 9 a.m.
    fn schedules(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
    ) -> HashMap<String, std::sync::Arc<crate::dialer::schedule::Schedule>> {
        use crate::dialer::schedule::ScheduleConfig;
        let mut out = HashMap::new();
        let Some(value) = value else {
            return out;
        };
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.problem(
                span,
                "[schedule] holds named schedules: write them as [schedule.NAME]",
            );
            return out;
        };
        for (name, body) in table {
            let key_span = name.span();
            let name = name.into_inner().to_string();
            let label = format!("[schedule.{name}]");
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if !ok_name {
                self.problem(
                    key_span.clone(),
                    format!(
                        "schedule name {name:?} must be 1 to 64 letters, digits, '_', '-' or '.'"
                    ),
                );
            }
            if !body.get_ref().is_table() {
                self.problem(body.span(), format!("{label} must be a table"));
                continue;
            }
            let body_span = body.span();
            let Some(raw): Option<ScheduleConfig> = self.deserialize(body, &label) else {
                continue;
            };
            match raw.compile() {
                Ok(s) => {
                    out.insert(name, std::sync::Arc::new(s));
                }
                Err(e) => {
                    for p in e.problems {
                        self.problem(body_span.clone(), format!("{label}: {p}"));
                    }
                }
            }
        }
        out
    }

    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        label: &str,
    ) -> Option<T> {
        let value = value?;
        let span = value.span();
        if !value.get_ref().is_table() {
            self.problem(
                span,
                format!(
                    "{label} must be a table, found {}",
                    value.get_ref().type_str()
                ),
            );
            return None;
        }
        self.deserialize(value, label)
    }

    fn deserialize<T: for<'de> Deserialize<'de>>(
        &mut self,
        value: Spanned<DeValue<'_>>,
        label: &str,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(value.into_deserializer()) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = diag::explain_serde_message(e.message(), label);
                self.problem(e.span().unwrap_or(span), msg);
                None
            }
        }
    }

    fn array<T: for<'de> Deserialize<'de>>(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
        label: &str,
    ) -> Vec<T> {
        let Some(value) = value else {
            return Vec::new();
        };
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(items) => items
                .into_iter()
                .filter_map(|item| {
                    if item.get_ref().is_table() {
                        self.deserialize(item, label)
                    } else {
                        self.problem(
                            item.span(),
                            format!(
                                "each {label} must be a table, found {}",
                                item.get_ref().type_str()
                            ),
                        );
                        None
                    }
                })
                .collect(),
            other => {
                self.problem(
                    span,
                    format!(
                        "{label} must be an array of tables (write it as {label}), found {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }

    fn secret(
        &mut self,
        inline: Option<Spanned<String>>,
        file: Option<Spanned<String>>,
        what: &str,
        owner: Range<usize>,
    ) -> Option<Secret> {
        match (inline, file) {
            (Some(v), None) => {
                if v.get_ref().is_empty() {
                    self.problem(v.span(), format!("{what} is empty"));
                    None
                } else {
                    Some(Secret::new(v.into_inner()))
                }
            }
            (None, Some(f)) => {
                let path = self.base.join(f.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(s) => {
                        // Editors and `echo` add a final newline; it is never
                        // part of the secret.
                        let s = s.trim_end_matches(['\n', '\r']).to_string();
                        if s.is_empty() {
                            self.problem(
                                f.span(),
                                format!("{what} file {} is empty", path.display()),
                            );
                            None
                        } else {
                            Some(Secret::new(s))
                        }
                    }
                    Err(e) => {
                        self.problem(
                            f.span(),
                            format!("cannot read {what} file {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (Some(v), Some(_)) => {
                self.problem(
                    v.span(),
                    format!("{what} is given both inline and as a file; keep one"),
                );
                None
            }
            (None, None) => {
                self.problem(
                    owner,
                    format!("{what} is missing (give it inline or as a file)"),
                );
                None
            }
        }
    }

    fn daemon(&mut self, raw: RawDaemon) -> DaemonConfig {
        let country = raw.default_country.get_ref().to_ascii_uppercase();
        if let Err(e) = smsgate_proto::sms::phone::check_country(&country) {
            self.problem(raw.default_country.span(), format!("default_country: {e}"));
        } else if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            self.problem(
                raw.default_country.span(),
                format!(
                    "default_country must be a two-letter ISO 3166 code such as \"UY\", found {:?}",
                    raw.default_country.get_ref()
                ),
            );
        }
        let level = raw.log_level.get_ref().to_ascii_lowercase();
        if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
            self.problem(
                raw.log_level.span(),
                "log_level must be one of error, warn, info, debug, trace",
            );
        }
        let drain = *raw.drain_timeout_s.get_ref();
        if drain == 0 || drain > 3600 {
            self.problem(
                raw.drain_timeout_s.span(),
                "drain_timeout_s must be between 1 and 3600 seconds",
            );
        }
        if raw.state_dir.get_ref().is_empty() {
            self.problem(raw.state_dir.span(), "state_dir is empty");
        }
        DaemonConfig {
            state_dir: self.base.join(raw.state_dir.get_ref()),
            default_country: country,
            log_level: level,
            drain_timeout: Duration::from_secs(drain),
        }
    }

    fn api(&mut self, raw: RawApi) -> ApiConfig {
        let listen = match raw.listen.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                self.problem(
                    raw.listen.span(),
                    format!(
                        "listen must be an address and port such as \"127.0.0.1:8080\", found {:?}",
                        raw.listen.get_ref()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let mut tokens = Vec::new();
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        for t in raw.tokens {
            if let Some(first) = names.get(t.name.get_ref()) {
                let (l, c) = (first.start, first.end);
                self.problem(
                    t.name.span(),
                    format!(
                        "two API tokens are named {:?} (the first one is at byte {l}..{c}); names must be unique",
                        t.name.get_ref()
                    ),
                );
            }
            names.insert(t.name.get_ref().clone(), t.name.span());
            let role = match Role::parse(t.role.get_ref()) {
                Some(r) => Some(r),
                None => {
                    self.problem(
                        t.role.span(),
                        format!(
                            "role must be admin, operator or viewer, found {:?}",
                            t.role.get_ref()
                        ),
                    );
                    None
                }
            };
            let secret = self.secret(t.token, t.token_file, "token", t.name.span());
            if let Some(s) = &secret {
                if s.expose().len() < 16 {
                    self.problem(
                        t.name.span(),
                        format!(
                            "token {:?} is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)",
                            t.name.get_ref()
                        ),
                    );
                }
            }
            if let (Some(role), Some(secret)) = (role, secret) {
                tokens.push(ApiToken {
                    name: t.name.into_inner(),
                    secret,
                    role,
                });
            }
        }
        let tls = match (raw.tls_cert, raw.tls_key) {
            (Some(c), Some(k)) => {
                for f in [&c, &k] {
                    let p = self.base.join(f.get_ref());
                    if let Err(e) = std::fs::metadata(&p) {
                        self.problem(f.span(), format!("cannot read {}: {e}", p.display()));
                    }
                }
                Some(TlsFiles {
                    cert: self.base.join(c.get_ref()),
                    key: self.base.join(k.get_ref()),
                })
            }
            (Some(one), None) | (None, Some(one)) => {
                self.problem(
                    one.span(),
                    "tls_cert and tls_key go together; give both or neither",
                );
                None
            }
            (None, None) => None,
        };
        let check_range = |v: &mut Self, s: &Spanned<u64>, lo: u64, hi: u64, what: &str| {
            if *s.get_ref() < lo || *s.get_ref() > hi {
                v.problem(s.span(), format!("{what} must be between {lo} and {hi}"));
            }
        };
        check_range(
            self,
            &raw.max_body_bytes,
            1024,
            16 * 1024 * 1024,
            "max_body_bytes",
        );
        check_range(
            self,
            &raw.max_upload_bytes,
            1024,
            16 * 1024 * 1024 * 1024,
            "max_upload_bytes",
        );
        check_range(self, &raw.request_timeout_s, 1, 3600, "request_timeout_s");
        check_range(self, &raw.max_connections, 1, 65536, "max_connections");
        ApiConfig {
            listen,
            tokens,
            tls,
            max_body_bytes: *raw.max_body_bytes.get_ref() as usize,
            max_upload_bytes: *raw.max_upload_bytes.get_ref(),
            request_timeout: Duration::from_secs(*raw.request_timeout_s.get_ref()),
            max_connections: *raw.max_connections.get_ref() as usize,
        }
    }

    fn gateways(&mut self, raws: Vec<RawGateway>) -> Vec<GatewayConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        for g in raws {
            let name_span = g.name.span();
            self.check_name(&g.name, "gateway");
            if let Some(first) = seen.get(g.name.get_ref()) {
                let first = first.clone();
                self.duplicate(name_span.clone(), first, "gateway", g.name.get_ref());
            }
            seen.insert(g.name.get_ref().clone(), name_span.clone());
            let Some(kind) = GatewayKind::parse(g.kind.get_ref()) else {
                let mut m = format!("unknown gateway kind {:?}", g.kind.get_ref());
                if let Some(best) = diag::closest(g.kind.get_ref(), KIND_NAMES) {
                    m.push_str(&format!("; did you mean \"{best}\"?"));
                } else {
                    m.push_str(&format!("; kinds: {}", KIND_NAMES.join(", ")));
                }
                self.problem(g.kind.span(), m);
                continue;
            };
            if let Some(gc) = self.gateway(g, kind) {
                out.push(gc);
            }
        }
        out
    }

    fn gateway(&mut self, g: RawGateway, kind: GatewayKind) -> Option<GatewayConfig> {
        let kind_name = kind.as_str();
        // Keys that belong to other kinds are refused by name so a copied
        // block does not silently keep settings that do nothing.
        let foreign: Vec<KindKey<'_>> = vec![
            (
                "url",
                g.url.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::Twilio, GatewayKind::Http],
            ),
            (
                "user",
                g.user.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::DinstarDwg],
            ),
            (
                "password",
                g.password.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::DinstarDwg],
            ),
            (
                "password_file",
                g.password_file.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::DinstarDwg],
            ),
            (
                "auth",
                g.auth.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "tls_accept_invalid",
                g.tls_accept_invalid.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "tls_fingerprint",
                g.tls_fingerprint.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "timeout_ms",
                g.timeout_ms.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::At],
            ),
            (
                "result_poll_ms",
                g.result_poll_ms.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "port_poll_s",
                g.port_poll_s.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::At],
            ),
            (
                "incoming_poll_s",
                g.incoming_poll_s.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "push_allow",
                g.push_allow.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "listen",
                g.listen.as_ref().map(|v| v.span()),
                &[GatewayKind::DinstarDwg],
            ),
            (
                "device",
                g.device.as_ref().map(|v| v.span()),
                &[GatewayKind::At],
            ),
            (
                "baud",
                g.baud.as_ref().map(|v| v.span()),
                &[GatewayKind::At],
            ),
            ("pin", g.pin.as_ref().map(|v| v.span()), &[GatewayKind::At]),
            (
                "pin_file",
                g.pin_file.as_ref().map(|v| v.span()),
                &[GatewayKind::At],
            ),
            (
                "smsc",
                g.smsc.as_ref().map(|v| v.span()),
                &[GatewayKind::At],
            ),
            (
                "send_timeout_s",
                g.send_timeout_s.as_ref().map(|v| v.span()),
                &[GatewayKind::At],
            ),
            (
                "latency_ms",
                g.latency_ms.as_ref().map(|v| v.span()),
                &[GatewayKind::Sim],
            ),
            (
                "failure_rate",
                g.failure_rate.as_ref().map(|v| v.span()),
                &[GatewayKind::Sim],
            ),
        ];
        let mut ok = true;
        for (key, span, kinds) in foreign {
            if let Some(span) = span {
                if !kinds.contains(&kind) {
                    let owners: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                    self.problem(
                        span,
                        format!(
                            "`{key}` is a key of gateway kind {}, not of kind {kind_name:?}",
                            owners.join(" or ")
                        ),
                    );
                    ok = false;
                }
            }
        }
        let name_span = g.name.span();
        let ports = match (&g.ports, kind) {
            (Some(p), GatewayKind::At) if *p.get_ref() != 1 => {
                self.problem(
                    p.span(),
                    "a modem (kind \"at\") is one channel: ports must be 1 or left out",
                );
                1
            }
            (Some(p), k) if !k.has_ports() => {
                self.problem(
                    p.span(),
                    format!("gateway kind {kind_name:?} has no ports; remove `ports`"),
                );
                0
            }
            (Some(p), _) => {
                let n = *p.get_ref();
                if !(1..=512).contains(&n) {
                    self.problem(
                        p.span(),
                        format!("ports must be between 1 and 512, found {n}"),
                    );
                    ok = false;
                }
                n.clamp(1, 512) as u32
            }
            (None, GatewayKind::Sim) => 4,
            (None, GatewayKind::At) => 1,
            (None, k) if !k.has_ports() => 0,
            (None, _) => {
                self.problem(
                    name_span.clone(),
                    format!(
                        "gateway {:?} needs `ports` (how many GSM ports the gateway has)",
                        g.name.get_ref()
                    ),
                );
                ok = false;
                1
            }
        };
        let settings = match kind {
            GatewayKind::Sim => {
                let failure_rate = g.failure_rate.as_ref().map_or(0.0, |f| *f.get_ref());
                if let Some(f) = &g.failure_rate {
                    if !(0.0..=1.0).contains(f.get_ref()) {
                        self.problem(f.span(), "failure_rate is a fraction between 0.0 and 1.0");
                        ok = false;
                    }
                }
                GatewaySettings::Sim(SimSettings {
                    latency: Duration::from_millis(
                        g.latency_ms.as_ref().map_or(20, |v| *v.get_ref()),
                    ),
                    failure_rate,
                })
            }
            GatewayKind::Dinstar => {
                let url = self.required(g.url.as_ref(), "url", &name_span, kind_name);
                if let Some(u) = &g.url {
                    let s = u.get_ref();
                    if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 9 {
                        self.problem(
                            u.span(),
                            format!("url must start with http:// or https://, found {s:?}"),
                        );
                        ok = false;
                    }
                }
                let user = self.required(g.user.as_ref(), "user", &name_span, kind_name);
                let password =
                    self.secret(g.password, g.password_file, "password", name_span.clone());
                let digest = match g.auth.as_ref().map(|a| a.get_ref().as_str()) {
                    None | Some("digest") => true,
                    Some("basic") => false,
                    Some(other) => {
                        let span = g
                            .auth
                            .as_ref()
                            .map(|a| a.span())
                            .unwrap_or(name_span.clone());
                        self.problem(
                            span,
                            format!("auth must be \"digest\" or \"basic\", found {other:?}"),
                        );
                        ok = false;
                        true
                    }
                };
                let mut push_allow = Vec::new();
                if let Some(list) = &g.push_allow {
                    for a in list.get_ref() {
                        match a.parse() {
                            Ok(ip) => push_allow.push(ip),
                            Err(_) => {
                                self.problem(
                                    list.span(),
                                    format!("push_allow holds {a:?}, which is not an IP address"),
                                );
                                ok = false;
                            }
                        }
                    }
                }
                let fingerprint = g.tls_fingerprint.as_ref().map(|f| {
                    let hex: String = f.get_ref().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
                    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                        self.problem(f.span(), "tls_fingerprint must be a SHA-256 fingerprint: 64 hex digits, colons allowed");
                    }
                    hex
                });
                match (url, user, password) {
                    (Some(url), Some(user), Some(password)) => {
                        GatewaySettings::Dinstar(DinstarSettings {
                            url,
                            user,
                            password,
                            digest,
                            tls_accept_invalid: g
                                .tls_accept_invalid
                                .as_ref()
                                .is_some_and(|v| *v.get_ref()),
                            tls_fingerprint: fingerprint,
                            timeout: Duration::from_millis(
                                g.timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref()),
                            ),
                            result_poll: Duration::from_millis(
                                g.result_poll_ms.as_ref().map_or(2_000, |v| *v.get_ref()),
                            ),
                            port_poll: Duration::from_secs(
                                g.port_poll_s.as_ref().map_or(30, |v| *v.get_ref()),
                            ),
                            incoming_poll: Duration::from_secs(
                                g.incoming_poll_s.as_ref().map_or(30, |v| *v.get_ref()),
                            ),
                            push_allow,
                        })
                    }
                    _ => return None,
                }
            }
            GatewayKind::DinstarDwg => {
                let listen = self.required(g.listen.as_ref(), "listen", &name_span, kind_name);
                let listen = listen.and_then(|l| match l.parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        let span = g.listen.as_ref().map(|v| v.span()).unwrap_or(name_span.clone());
                        self.problem(span, format!("listen must be an address and port such as \"0.0.0.0:9000\", found {l:?}"));
                        None
                    }
                });
                let user = self.required(g.user.as_ref(), "user", &name_span, kind_name);
                let password =
                    self.secret(g.password, g.password_file, "password", name_span.clone());
                match (listen, user, password) {
                    (Some(listen), Some(user), Some(password)) => {
                        GatewaySettings::DinstarDwg(DwgSettings {
                            listen,
                            user,
                            password,
                        })
                    }
                    _ => return None,
                }
            }
            GatewayKind::At => {
                let device = self.required(g.device.as_ref(), "device", &name_span, kind_name);
                let baud = g.baud.as_ref().map_or(115_200, |b| *b.get_ref());
                const BAUDS: &[u64] = &[
                    9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
                ];
                if let Some(b) = &g.baud {
                    if !BAUDS.contains(b.get_ref()) {
                        self.problem(b.span(), format!("baud must be one of {BAUDS:?}"));
                        ok = false;
                    }
                }
                let pin = if g.pin.is_some() || g.pin_file.is_some() {
                    let pin = self.secret(g.pin, g.pin_file, "pin", name_span.clone());
                    if let Some(p) = &pin {
                        let n = p.expose().len();
                        if !(4..=8).contains(&n) || !p.expose().chars().all(|c| c.is_ascii_digit())
                        {
                            self.problem(name_span.clone(), "a SIM PIN is 4 to 8 digits");
                            ok = false;
                        }
                    }
                    pin
                } else {
                    None
                };
                device.map(|d| {
                    GatewaySettings::At(AtSettings {
                        device: PathBuf::from(d),
                        baud: baud as u32,
                        pin,
                        smsc: g.smsc.map(|s| s.into_inner()),
                        // 5 s for simple commands, as the AT reference
                        // suggests (ModemManager uses 3 s for CNMI).
                        timeout: Duration::from_millis(
                            g.timeout_ms
                                .as_ref()
                                .map_or(5_000, |v| *v.get_ref())
                                .max(100),
                        ),
                        port_poll: Duration::from_secs(
                            g.port_poll_s.as_ref().map_or(30, |v| *v.get_ref()).max(1),
                        ),
                        send_timeout: Duration::from_secs(
                            g.send_timeout_s
                                .as_ref()
                                .map_or(130, |v| *v.get_ref())
                                .max(1),
                        ),
                    })
                })?
            }
            GatewayKind::Twilio | GatewayKind::Http => {
                self.problem(
                    g.kind.span(),
                    format!(
                        "gateway kind {kind_name:?} is not available in this version of smsgate"
                    ),
                );
                return None;
            }
        };
        let breaker_failures = g.breaker_failures.as_ref().map_or(3, |v| *v.get_ref());
        if let Some(v) = &g.breaker_failures {
            if !(1..=1000).contains(v.get_ref()) {
                self.problem(v.span(), "breaker_failures must be between 1 and 1000");
                ok = false;
            }
        }
        let breaker_probe_s = g.breaker_probe_s.as_ref().map_or(30, |v| *v.get_ref());
        if let Some(v) = &g.breaker_probe_s {
            if !(1..=3600).contains(v.get_ref()) {
                self.problem(
                    v.span(),
                    "breaker_probe_s must be between 1 and 3600 seconds",
                );
                ok = false;
            }
        }
        ok.then(|| GatewayConfig {
            name: g.name.into_inner(),
            kind,
            enabled: g.enabled,
            ports,
            breaker_failures: breaker_failures as u32,
            breaker_probe: Duration::from_secs(breaker_probe_s),
            settings,
        })
    }

    fn required(
        &mut self,
        v: Option<&Spanned<String>>,
        key: &str,
        owner: &Range<usize>,
        kind: &str,
    ) -> Option<String> {
        match v {
            Some(v) if !v.get_ref().trim().is_empty() => Some(v.get_ref().clone()),
            Some(v) => {
                self.problem(v.span(), format!("`{key}` is empty"));
                None
            }
            None => {
                self.problem(
                    owner.clone(),
                    format!("a gateway of kind {kind:?} needs `{key}`"),
                );
                None
            }
        }
    }

    fn check_name(&mut self, name: &Spanned<String>, what: &str) {
        let n = name.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
        if !ok {
            self.problem(
                name.span(),
                format!("{what} name {n:?} must be 1 to 64 letters, digits, '_', '-' or '.'"),
            );
        }
    }

    fn duplicate(&mut self, span: Range<usize>, first: Range<usize>, what: &str, name: &str) {
        // The line of the first definition is computed when diagnostics are
        // rendered; here we only have byte offsets, so we record both places
        // as two problems that point at each other.
        self.problems.push(Problem::at(
            span,
            format!("a second {what} is named {name:?}; names must be unique"),
        ));
        self.problems.push(Problem::at(
            first,
            format!("the first {what} named {name:?} is here"),
        ));
    }

    fn schedule_ref(
        &mut self,
        reference: &Option<Spanned<String>>,
        owner_kind: &str,
        owner: &str,
        schedules: &HashMap<String, std::sync::Arc<crate::dialer::schedule::Schedule>>,
    ) {
        if let Some(s) = reference {
            if !schedules.contains_key(s.get_ref()) {
                let mut names: Vec<&str> = schedules.keys().map(String::as_str).collect();
                names.sort_unstable();
                self.dangling(s, owner_kind, owner, "schedule", names.into_iter());
            }
        }
    }

    fn dialers(
        &mut self,
        raws: Vec<RawDialer>,
        gateways: &[GatewayConfig],
        groups: &[ChannelGroupConfig],
        schedules: &HashMap<String, std::sync::Arc<crate::dialer::schedule::Schedule>>,
    ) -> Vec<DialerConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        for d in raws {
            self.check_name(&d.name, "dialer");
            if let Some(first) = seen.get(d.name.get_ref()) {
                let first = first.clone();
                self.duplicate(d.name.span(), first, "dialer", d.name.get_ref());
            }
            seen.insert(d.name.get_ref().clone(), d.name.span());
            let gateway = gateways.iter().find(|g| &g.name == d.provider.get_ref());
            let group = groups.iter().find(|g| &g.name == d.provider.get_ref());
            if gateway.is_none() && group.is_none() {
                self.dangling(
                    &d.provider,
                    "dialer",
                    d.name.get_ref(),
                    "gateway or channel group",
                    gateways
                        .iter()
                        .map(|g| g.name.as_str())
                        .chain(groups.iter().map(|g| g.name.as_str())),
                );
            }
            if let (Some(g), Some(dial)) = (group, &d.dial) {
                if !dial.get_ref().trim().is_empty() {
                    self.problem(
                        dial.span(),
                        format!(
                            "dialer {:?} sends through channel group {:?}, whose channels are named in the group; remove `dial`",
                            d.name.get_ref(),
                            g.name
                        ),
                    );
                }
            }
            self.schedule_ref(&d.schedule, "dialer", d.name.get_ref(), schedules);
            let dial = d
                .dial
                .as_ref()
                .map(|s| s.get_ref().clone())
                .unwrap_or_default();
            if let Some(g) = gateway {
                if let Some(span) = d.dial.as_ref().map(|s| s.span()) {
                    if let Err(msg) = check_dial(&dial, g) {
                        self.problem(span, msg);
                    }
                } else if g.kind.has_ports() {
                    // No dial string: every port of the gateway, in order.
                }
            }
            let interval = d.interval_ms.as_ref().map_or(1000, |v| *v.get_ref());
            if let Some(v) = &d.interval_ms {
                if *v.get_ref() > 86_400_000 {
                    self.problem(
                        v.span(),
                        "interval_ms is over a day; that is surely a mistake",
                    );
                }
            }
            let priority = d.priority.as_ref().map_or(MAX_PRIORITY, |v| *v.get_ref());
            if let Some(p) = &d.priority {
                if !(MIN_PRIORITY..=MAX_PRIORITY).contains(p.get_ref()) {
                    self.problem(p.span(), format!("priority must be between {MIN_PRIORITY} (urgent) and {MAX_PRIORITY} (routine)"));
                }
            }
            let max_attempts = d.max_attempts.as_ref().map_or(3, |v| *v.get_ref());
            if let Some(m) = &d.max_attempts {
                if !(1..=100).contains(m.get_ref()) {
                    self.problem(m.span(), "max_attempts must be between 1 and 100");
                }
            }
            out.push(DialerConfig {
                name: d.name.into_inner(),
                provider: d.provider.into_inner(),
                schedule: d.schedule.map(|s| s.into_inner()),
                dial,
                interval: Duration::from_millis(interval),
                enabled: d.enabled,
                dncr: d.dncr,
                priority,
                max_attempts: max_attempts.clamp(1, 100) as u32,
                retry_backoff: Duration::from_millis(
                    d.retry_backoff_ms.as_ref().map_or(30_000, |v| *v.get_ref()),
                ),
                resend_unknown: d.resend_unknown,
            });
        }
        out
    }

    fn campaigns(
        &mut self,
        raws: Vec<RawCampaign>,
        gateways: &[GatewayConfig],
        schedules: &HashMap<String, std::sync::Arc<crate::dialer::schedule::Schedule>>,
    ) -> Vec<CampaignConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        for c in raws {
            self.check_name(&c.name, "campaign");
            if let Some(first) = seen.get(c.name.get_ref()) {
                let first = first.clone();
                self.duplicate(c.name.span(), first, "campaign", c.name.get_ref());
            }
            seen.insert(c.name.get_ref().clone(), c.name.span());
            self.schedule_ref(&c.schedule, "campaign", c.name.get_ref(), schedules);
            if !gateways.iter().any(|g| &g.name == c.provider.get_ref()) {
                self.dangling(
                    &c.provider,
                    "campaign",
                    c.name.get_ref(),
                    "gateway",
                    gateways.iter().map(|g| g.name.as_str()),
                );
            }
            out.push(CampaignConfig {
                name: c.name.into_inner(),
                provider: c.provider.into_inner(),
                did: c.did.into_iter().map(|d| d.into_inner()).collect(),
                schedule: c.schedule.map(|s| s.into_inner()),
                enabled: c.enabled,
                out_of_hours_message: c.out_of_hours_message,
            });
        }
        out
    }

    fn dangling<'n>(
        &mut self,
        reference: &Spanned<String>,
        owner_kind: &str,
        owner: &str,
        target_kind: &str,
        known: impl Iterator<Item = &'n str>,
    ) {
        let known: Vec<&str> = known.collect();
        let mut m = format!(
            "{owner_kind} {owner:?} names {target_kind} {:?}, which is not defined",
            reference.get_ref()
        );
        if let Some(best) = diag::closest(reference.get_ref(), &known) {
            m.push_str(&format!("; did you mean {best:?}?"));
        } else if known.is_empty() {
            m.push_str(&format!("; no {target_kind} is defined"));
        } else {
            m.push_str(&format!("; defined: {}", known.join(", ")));
        }
        self.problem(reference.span(), m);
    }
}

/// Checks a dial string against the gateway it dials through.
fn check_dial(dial: &str, gateway: &GatewayConfig) -> Result<(), String> {
    if !gateway.kind.has_ports() {
        if dial.trim().is_empty() {
            return Ok(());
        }
        return Err(format!(
            "gateway {:?} (kind {:?}) has no ports, so its dialers take no dial string",
            gateway.name,
            gateway.kind.as_str()
        ));
    }
    crate::dialer::parse_dial(dial, gateway.ports).map(|_| ())
}
