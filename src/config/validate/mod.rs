//! Validation of the whole file: every problem is collected, with where it
//! is, before the file is refused. This module walks the document and holds
//! the helpers every section uses; [`gateways`] checks each gateway kind's
//! keys, [`dialers`] the channel groups, schedules, dialers and campaigns,
//! [`inbound`] the `[inbound]` section and keyword lists.

mod dialers;
mod gateways;
mod http;
mod inbound;
mod twilio;
mod webhooks;
mod whatsapp_cloud;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::*;
use super::*;

/// A gateway key, where it was written, and the kinds that take it.
pub(super) type KindKey<'a> = (&'a str, Option<Range<usize>>, &'a [GatewayKind]);

pub(super) const TOP_KEYS: &[&str] = &[
    "daemon",
    "api",
    "gateway",
    "channel_group",
    "dialer",
    "campaign",
    "imports",
    "inbound",
    "schedule",
    "events",
    "webhook",
];

pub(in crate::config) struct Validator<'a> {
    pub(in crate::config) base: &'a Path,
    pub(in crate::config) problems: Vec<Problem>,
    /// Every secret file read, for the mode check of `Config::warnings`.
    pub(in crate::config) secret_files: Vec<PathBuf>,
    /// Warnings with their place in the file (deprecated keys).
    pub(in crate::config) notes: Vec<(Range<usize>, String)>,
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, span: Range<usize>, message: impl Into<String>) {
        if span.is_empty() && span.start == 0 {
            self.problems.push(Problem::whole_file(message));
        } else {
            self.problems.push(Problem::at(span, message));
        }
    }

    pub(in crate::config) fn document(&mut self, _path: &Path, source: &str) -> Option<Config> {
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
        let inbound: RawInbound = self
            .section(sections.remove("inbound"), "[inbound]")
            .unwrap_or_default();
        let gateways: Vec<RawGateway> = self.array(sections.remove("gateway"), "[[gateway]]");
        let dialers: Vec<RawDialer> = self.array(sections.remove("dialer"), "[[dialer]]");
        let campaigns: Vec<RawCampaign> = self.array(sections.remove("campaign"), "[[campaign]]");
        let groups: Vec<RawChannelGroup> =
            self.array(sections.remove("channel_group"), "[[channel_group]]");

        let raw_events: Option<webhooks::RawEvents> =
            self.section(sections.remove("events"), "[events]");
        let raw_webhooks: Vec<webhooks::RawWebhook> =
            self.array(sections.remove("webhook"), "[[webhook]]");
        let schedules = self.schedules(sections.remove("schedule"));
        let daemon = self.daemon(daemon);
        let api = self.api(api);
        let gateways = self.gateways(gateways);
        let channel_groups = self.channel_groups(groups, &gateways);
        let mut dialers = self.dialers(dialers, &gateways, &channel_groups, &schedules);
        let campaigns = self.campaigns(campaigns, &gateways, &schedules, &daemon.default_country);
        let inbound = self.inbound(inbound);
        dialers.extend(inbound.system_dialers());
        let events = self.events(raw_events, api.max_connections);
        let webhooks = self.webhooks(raw_webhooks, &campaigns);
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
            inbound,
            schedules,
            channel_groups,
            events,
            webhooks,
            secret_files: Vec::new(),
            notes: Vec::new(),
        })
    }

    pub(super) fn section<T: for<'de> Deserialize<'de>>(
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

    pub(super) fn deserialize<T: for<'de> Deserialize<'de>>(
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

    pub(super) fn array<T: for<'de> Deserialize<'de>>(
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

    pub(super) fn secret(
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
                        self.secret_files.push(path.clone());
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

    pub(super) fn daemon(&mut self, raw: RawDaemon) -> DaemonConfig {
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

    pub(super) fn api(&mut self, raw: RawApi) -> ApiConfig {
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
                            "role must be admin, supervisor, operator, viewer or agent, found {:?}",
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
            let agent = match (role, t.agent) {
                (Some(Role::Agent), Some(a)) if crate::config::valid_agent_id(a.get_ref()) => {
                    Some(a.into_inner())
                }
                (Some(Role::Agent), Some(a)) => {
                    self.problem(
                        a.span(),
                        format!(
                            "agent must be an agent id: 1 to 64 letters, digits, '.', '_', '-' or '@'; found {:?}",
                            a.get_ref()
                        ),
                    );
                    None
                }
                (Some(Role::Agent), None) => {
                    self.problem(
                        t.role.span(),
                        format!(
                            "token {:?} has the agent role: give the agent it is with `agent = \"<id>\"`",
                            t.name.get_ref()
                        ),
                    );
                    None
                }
                (_, Some(a)) => {
                    self.problem(
                        a.span(),
                        "`agent` belongs only to a token with role = \"agent\"",
                    );
                    None
                }
                (_, None) => None,
            };
            if let (Some(role), Some(secret)) = (role, secret) {
                if role != Role::Agent || agent.is_some() {
                    tokens.push(ApiToken {
                        name: t.name.into_inner(),
                        secret,
                        role,
                        agent,
                    });
                }
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
        check_range(self, &raw.max_uploads, 1, 64, "max_uploads");
        check_range(
            self,
            &raw.upload_idle_timeout_s,
            1,
            3600,
            "upload_idle_timeout_s",
        );
        ApiConfig {
            listen,
            tokens,
            tls,
            max_body_bytes: *raw.max_body_bytes.get_ref() as usize,
            max_upload_bytes: *raw.max_upload_bytes.get_ref(),
            request_timeout: Duration::from_secs(*raw.request_timeout_s.get_ref()),
            max_connections: *raw.max_connections.get_ref() as usize,
            max_uploads: *raw.max_uploads.get_ref() as usize,
            upload_idle_timeout: Duration::from_secs(*raw.upload_idle_timeout_s.get_ref()),
        }
    }

    pub(super) fn required(
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

    pub(super) fn check_name(&mut self, name: &Spanned<String>, what: &str) {
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

    pub(super) fn duplicate(
        &mut self,
        span: Range<usize>,
        first: Range<usize>,
        what: &str,
        name: &str,
    ) {
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

    pub(super) fn schedule_ref(
        &mut self,
        reference: &Option<Spanned<String>>,
        owner_kind: &str,
        owner: &str,
        schedules: &HashMap<String, std::sync::Arc<crate::config::schedule::Schedule>>,
    ) {
        if let Some(s) = reference {
            if !schedules.contains_key(s.get_ref()) {
                let mut names: Vec<&str> = schedules.keys().map(String::as_str).collect();
                names.sort_unstable();
                self.dangling(s, owner_kind, owner, "schedule", names.into_iter());
            }
        }
    }

    pub(super) fn dangling<'n>(
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
