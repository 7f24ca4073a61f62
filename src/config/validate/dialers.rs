//! Channel groups, schedules, dialers and campaigns: names, references
//! between them, dial strings (parsed here, once, into the dialer's ports)
//! and the values of each key.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::super::raw::*;
use super::super::*;
use super::Validator;

impl Validator<'_> {
    pub(super) fn channel_groups(
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
                    match crate::config::dialstring::parse_dial(dial, gw.ports) {
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
    pub(super) fn schedules(
        &mut self,
        value: Option<Spanned<DeValue<'_>>>,
    ) -> HashMap<String, std::sync::Arc<crate::config::schedule::Schedule>> {
        use crate::config::schedule::ScheduleConfig;
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

    pub(super) fn dialers(
        &mut self,
        raws: Vec<RawDialer>,
        gateways: &[GatewayConfig],
        groups: &[ChannelGroupConfig],
        schedules: &HashMap<String, std::sync::Arc<crate::config::schedule::Schedule>>,
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
            // Parsed here once: the loader dispatches in this order.
            let mut ports = Vec::new();
            if let Some(g) = gateway {
                // No dial string: every port of the gateway, in order.
                match crate::config::dialstring::parse_dial(&dial, g.ports) {
                    Ok(p) => ports = p,
                    Err(msg) => {
                        if let Some(span) = d.dial.as_ref().map(|s| s.span()) {
                            self.problem(span, msg);
                        }
                    }
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
                ports,
                interval: Duration::from_millis(interval),
                enabled: d.enabled,
                dncr: d.dncr,
                priority,
                max_attempts: max_attempts.clamp(1, 100) as u32,
                retry_backoff: Duration::from_millis(
                    d.retry_backoff_ms.as_ref().map_or(30_000, |v| *v.get_ref()),
                ),
                resend_unknown: d.resend_unknown,
                system: false,
            });
        }
        out
    }

    pub(super) fn campaigns(
        &mut self,
        raws: Vec<RawCampaign>,
        gateways: &[GatewayConfig],
        schedules: &HashMap<String, std::sync::Arc<crate::config::schedule::Schedule>>,
        country: &str,
    ) -> Vec<CampaignConfig> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, Range<usize>> = HashMap::new();
        // Each DID-port and the campaign (and place) that claimed it first.
        let mut claimed: HashMap<Did, (String, Range<usize>)> = HashMap::new();
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
            let mut entries = c.did_ports;
            if let Some(old) = c.did {
                self.notes.push((
                    old.span(),
                    format!(
                        "campaign {:?}: `did` is now called `did_ports`; rename it (it is still read)",
                        c.name.get_ref()
                    ),
                ));
                entries.extend(old.into_inner());
            }
            let mut did_ports = Vec::new();
            let mut dids = Vec::new();
            for e in entries {
                let Some(did) = self.did(&e, gateways, country) else {
                    continue;
                };
                match claimed.get(&did) {
                    Some((owner, first)) => {
                        let (owner, first) = (owner.clone(), first.clone());
                        self.problem(
                            e.span(),
                            format!(
                                "{:?} is already a DID-port of campaign {owner:?}: a received message must belong to one campaign",
                                e.get_ref()
                            ),
                        );
                        self.problem(first, format!("campaign {owner:?} claims it here"));
                    }
                    None => {
                        claimed.insert(did.clone(), (c.name.get_ref().clone(), e.span()));
                    }
                }
                did_ports.push(e.get_ref().trim().to_string());
                dids.push(did);
            }
            let strategy = match &c.strategy {
                None => Strategy::RoundRobin,
                Some(s) => Strategy::parse(s.get_ref()).unwrap_or_else(|| {
                    self.problem(
                        s.span(),
                        format!(
                            "strategy {:?} is not one of {}",
                            s.get_ref(),
                            Strategy::NAMES.join(", ")
                        ),
                    );
                    Strategy::RoundRobin
                }),
            };
            let mut number =
                |v: &Option<toml::Spanned<u64>>, default: u64, lo: u64, hi: u64, key: &str| match v
                {
                    None => default,
                    Some(n) if (lo..=hi).contains(n.get_ref()) => *n.get_ref(),
                    Some(n) => {
                        self.problem(n.span(), format!("{key} must be between {lo} and {hi}"));
                        default
                    }
                };
            let service_level_percent = number(
                &c.service_level_percent,
                80,
                1,
                100,
                "service_level_percent",
            );
            let service_level_s = number(&c.service_level_s, 60, 1, 86_400, "service_level_s");
            let abandon_s = number(&c.abandon_s, 300, 1, 86_400, "abandon_s");
            let short_abandon_s = number(&c.short_abandon_s, 0, 0, 86_400, "short_abandon_s");
            let chat_time_s = number(&c.chat_time_s, 1800, 1, 7 * 86_400, "chat_time_s");
            let acd_max_waiting = number(&c.acd_max_waiting, 100, 1, 100_000, "acd_max_waiting");
            let max_interactions_per_agent = number(
                &c.max_interactions_per_agent,
                4,
                1,
                100,
                "max_interactions_per_agent",
            );
            let mut texts = |v: Option<toml::Spanned<String>>, key: &str| -> Option<String> {
                let t = v?;
                let chars = t.get_ref().chars().count();
                if t.get_ref().trim().is_empty() || chars > MAX_CAMPAIGN_TEXT {
                    self.problem(
                        t.span(),
                        format!("{key} must be 1 to {MAX_CAMPAIGN_TEXT} characters (ten SMS parts); it has {chars}"),
                    );
                }
                Some(t.into_inner())
            };
            let out_of_hours_message = texts(c.out_of_hours_message, "out_of_hours_message");
            let busy_message = texts(c.busy_message, "busy_message");
            let canned_responses = c
                .canned_responses
                .into_iter()
                .filter_map(|t| texts(Some(t), "a canned response"))
                .collect();
            out.push(CampaignConfig {
                name: c.name.into_inner(),
                provider: c.provider.into_inner(),
                did_ports,
                dids,
                strategy,
                schedule: c.schedule.map(|s| s.into_inner()),
                enabled: c.enabled,
                out_of_hours_message,
                service_level_percent: service_level_percent as u32,
                service_level_s,
                abandon_s,
                chat_time_s,
                acd_max_waiting: acd_max_waiting as u32,
                max_interactions_per_agent: max_interactions_per_agent as u32,
                canned_responses,
                busy_message,
                short_abandon_s,
                opt_out_keywords: self.keywords(c.opt_out_keywords, "opt_out_keywords"),
                opt_in_keywords: self.keywords(c.opt_in_keywords, "opt_in_keywords"),
            });
        }
        out
    }

    /// One DID-port: "gateway:port" of a configured gateway, else a phone
    /// number (our number the customer writes to), else an id as the
    /// provider reports it.
    fn did(
        &mut self,
        e: &toml::Spanned<String>,
        gateways: &[GatewayConfig],
        country: &str,
    ) -> Option<Did> {
        let text = e.get_ref().trim();
        if text.is_empty() {
            self.problem(e.span(), "a DID-port cannot be empty");
            return None;
        }
        if let Some((name, port)) = text.rsplit_once(':') {
            if let Some(g) = gateways.iter().find(|g| g.name == name) {
                return match port.parse::<u32>() {
                    Ok(p) if p < g.ports => Some(Did::Port {
                        gateway: g.name.clone(),
                        port: p,
                    }),
                    _ => {
                        self.problem(
                            e.span(),
                            format!(
                                "{text:?}: gateway {name:?} has ports 0 to {}",
                                g.ports.saturating_sub(1)
                            ),
                        );
                        None
                    }
                };
            }
        }
        let looks_numeric = text
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c));
        if looks_numeric {
            return match smsgate_proto::sms::phone::normalise(text, country) {
                Ok(n) => Some(Did::Number(n.into_string())),
                Err(why) => {
                    self.problem(e.span(), format!("{text:?} is not a phone number: {why}"));
                    None
                }
            };
        }
        Some(Did::Id(text.to_string()))
    }
}

/// The longest automatic reply or canned response: ten GSM-7 SMS parts.
pub(super) const MAX_CAMPAIGN_TEXT: usize = 1530;
