//! The `[[gateway]]` tables: the keys every kind shares (ports, breaker),
//! refusing keys of another kind by name, then each kind's own settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use super::super::raw::*;
use super::super::*;
use super::whatsapp_cloud::whatsapp_cloud_keys;
use super::{KindKey, Validator};

impl Validator<'_> {
    pub(super) fn gateways(&mut self, raws: Vec<RawGateway>) -> Vec<GatewayConfig> {
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

    pub(super) fn gateway(
        &mut self,
        mut g: RawGateway,
        kind: GatewayKind,
    ) -> Option<GatewayConfig> {
        let kind_name = kind.as_str();
        // Keys that belong to other kinds are refused by name so a copied
        // block does not silently keep settings that do nothing.
        let mut foreign: Vec<KindKey<'_>> = vec![
            (
                "url",
                g.url.as_ref().map(|v| v.span()),
                &[
                    GatewayKind::Dinstar,
                    GatewayKind::Twilio,
                    GatewayKind::Http,
                    GatewayKind::WhatsappCloud,
                ],
            ),
            (
                "user",
                g.user.as_ref().map(|v| v.span()),
                &[
                    GatewayKind::Dinstar,
                    GatewayKind::DinstarDwg,
                    GatewayKind::Http,
                ],
            ),
            (
                "password",
                g.password.as_ref().map(|v| v.span()),
                &[
                    GatewayKind::Dinstar,
                    GatewayKind::DinstarDwg,
                    GatewayKind::Http,
                ],
            ),
            (
                "password_file",
                g.password_file.as_ref().map(|v| v.span()),
                &[
                    GatewayKind::Dinstar,
                    GatewayKind::DinstarDwg,
                    GatewayKind::Http,
                ],
            ),
            (
                "auth",
                g.auth.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar, GatewayKind::Http],
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
                &[
                    GatewayKind::Dinstar,
                    GatewayKind::At,
                    GatewayKind::Http,
                    GatewayKind::WhatsappCloud,
                    GatewayKind::Twilio,
                ],
            ),
            (
                "result_poll_ms",
                g.result_poll_ms.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "reconcile_grace_ms",
                g.reconcile_grace_ms.as_ref().map(|v| v.span()),
                &[GatewayKind::Dinstar],
            ),
            (
                "reconcile_patience_s",
                g.reconcile_patience_s.as_ref().map(|v| v.span()),
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
                &[GatewayKind::Dinstar, GatewayKind::Http],
            ),
            (
                "listen",
                g.listen.as_ref().map(|v| v.span()),
                &[GatewayKind::DinstarDwg],
            ),
            (
                "allow",
                g.allow.as_ref().map(|v| v.span()),
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
            (
                "inbound_every_s",
                g.inbound_every_s.as_ref().map(|v| v.span()),
                &[GatewayKind::Sim],
            ),
            (
                "inbound_from",
                g.inbound_from.as_ref().map(|v| v.span()),
                &[GatewayKind::Sim],
            ),
            (
                "inbound_texts",
                g.inbound_texts.as_ref().map(|v| v.span()),
                &[GatewayKind::Sim],
            ),
            (
                "method",
                g.method.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "headers",
                g.headers.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "body",
                g.body.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "form",
                g.form.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "json",
                g.json.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "token",
                g.token.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "token_file",
                g.token_file.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "number_format",
                g.number_format.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "sender",
                g.sender.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "success_status",
                g.success_status.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "success_pointer",
                g.success_pointer.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "success_value",
                g.success_value.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "success_pattern",
                g.success_pattern.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "id_pointer",
                g.id_pointer.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "id_pattern",
                g.id_pattern.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "auth_status",
                g.auth_status.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "auth_pattern",
                g.auth_pattern.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "temporary_pattern",
                g.temporary_pattern.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "reports",
                g.reports.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
            (
                "inbound",
                g.inbound.as_ref().map(|v| v.span()),
                &[GatewayKind::Http],
            ),
        ];
        foreign.extend(whatsapp_cloud_keys(&g));
        foreign.extend(super::twilio::keys(&g));
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
            // A provider's channels: one unless `ports` says more.
            (None, k) if k.is_provider() => 1,
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
            GatewayKind::Sim => Some(self.sim(&g, &mut ok)),
            GatewayKind::Dinstar => self.dinstar(&mut g, &name_span, &mut ok),
            GatewayKind::DinstarDwg => self.dwg(&mut g, &name_span),
            GatewayKind::At => self.at(&mut g, &name_span, &mut ok),
            GatewayKind::Http => self.http(&mut g, &name_span, &mut ok),
            GatewayKind::WhatsappCloud => self.whatsapp_cloud(&mut g, &name_span, &mut ok),
            GatewayKind::Twilio => self.twilio(&mut g, &name_span, &mut ok),
        }?;
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

    /// `kind = "sim"`: the simulated gateway of demo mode.
    fn sim(&mut self, g: &RawGateway, ok: &mut bool) -> GatewaySettings {
        let failure_rate = g.failure_rate.as_ref().map_or(0.0, |f| *f.get_ref());
        if let Some(f) = &g.failure_rate {
            if !(0.0..=1.0).contains(f.get_ref()) {
                self.problem(f.span(), "failure_rate is a fraction between 0.0 and 1.0");
                *ok = false;
            }
        }
        let inbound_every = match &g.inbound_every_s {
            None => None,
            Some(v) if *v.get_ref() == 0 => None,
            Some(v) if *v.get_ref() <= 86_400 => Some(Duration::from_secs(*v.get_ref())),
            Some(v) => {
                self.problem(
                    v.span(),
                    "inbound_every_s must be between 0 (never) and 86400",
                );
                *ok = false;
                None
            }
        };
        let mut list = |v: &Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
                        default: &[&str],
                        key: &str|
         -> Vec<String> {
            let Some(v) = v else {
                return default.iter().map(|s| s.to_string()).collect();
            };
            if v.get_ref().is_empty() {
                self.problem(v.span(), format!("{key} needs at least one entry"));
                *ok = false;
            }
            for e in v.get_ref() {
                if e.get_ref().trim().is_empty() {
                    self.problem(e.span(), format!("{key}: an entry cannot be empty"));
                    *ok = false;
                }
            }
            v.get_ref().iter().map(|e| e.get_ref().clone()).collect()
        };
        let inbound_from = list(&g.inbound_from, SIM_SENDERS, "inbound_from");
        let inbound_texts = list(&g.inbound_texts, SIM_TEXTS, "inbound_texts");
        GatewaySettings::Sim(SimSettings {
            latency: Duration::from_millis(g.latency_ms.as_ref().map_or(20, |v| *v.get_ref())),
            failure_rate,
            inbound_every,
            inbound_from,
            inbound_texts,
        })
    }

    /// `kind = "dinstar"`: the HTTP API (url, credentials, TLS, polls, pushes).
    fn dinstar(
        &mut self,
        g: &mut RawGateway,
        name_span: &Range<usize>,
        ok: &mut bool,
    ) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::Dinstar.as_str();
        let url = self.required(g.url.as_ref(), "url", name_span, kind_name);
        if let Some(u) = &g.url {
            let s = u.get_ref();
            if !(s.starts_with("http://") || s.starts_with("https://")) || s.len() < 9 {
                self.problem(
                    u.span(),
                    format!("url must start with http:// or https://, found {s:?}"),
                );
                *ok = false;
            }
        }
        let user = self.required(g.user.as_ref(), "user", name_span, kind_name);
        let password = self.secret(
            g.password.take(),
            g.password_file.take(),
            "password",
            name_span.clone(),
        );
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
                *ok = false;
                true
            }
        };
        let push_allow = self.allow_list(g.push_allow.as_ref(), "push_allow", ok);
        let fingerprint = g.tls_fingerprint.as_ref().map(|f| {
            let hex: String = f
                .get_ref()
                .chars()
                .filter(|c| *c != ':')
                .collect::<String>()
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                self.problem(
                    f.span(),
                    "tls_fingerprint must be a SHA-256 fingerprint: 64 hex digits, colons allowed",
                );
            }
            hex
        });
        let (timeout, reconcile_grace, reconcile_patience) = self.dinstar_timing(g, ok);
        match (url, user, password) {
            (Some(url), Some(user), Some(password)) => {
                Some(GatewaySettings::Dinstar(DinstarSettings {
                    url,
                    user,
                    password,
                    digest,
                    tls_accept_invalid: g.tls_accept_invalid.as_ref().is_some_and(|v| *v.get_ref()),
                    tls_fingerprint: fingerprint,
                    timeout,
                    result_poll: Duration::from_millis(
                        g.result_poll_ms.as_ref().map_or(2_000, |v| *v.get_ref()),
                    ),
                    reconcile_grace,
                    reconcile_patience,
                    port_poll: Duration::from_secs(
                        g.port_poll_s.as_ref().map_or(30, |v| *v.get_ref()),
                    ),
                    incoming_poll: Duration::from_secs(
                        g.incoming_poll_s.as_ref().map_or(30, |v| *v.get_ref()),
                    ),
                    push_allow,
                }))
            }
            _ => None,
        }
    }

    /// An address list (`push_allow`, `allow`): addresses and networks,
    /// each wrong entry reported where it is written.
    pub(super) fn allow_list(
        &mut self,
        raw: Option<&toml::Spanned<Vec<toml::Spanned<String>>>>,
        key: &str,
        ok: &mut bool,
    ) -> AllowList {
        let mut nets = Vec::new();
        for entry in raw.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
            match AllowList::parse_entry(entry.get_ref()) {
                Ok(n) => nets.push(n),
                Err(why) => {
                    self.problem(entry.span(), format!("{key}: {why}"));
                    *ok = false;
                }
            }
        }
        AllowList::new(nets)
    }

    /// A Dinstar gateway's request timeout and what follows from it: the
    /// grace after an unclear send before "not found" counts (longer than
    /// the timeout: a gateway too slow to answer in time may still act on
    /// the request), and how long failed questions are asked again.
    fn dinstar_timing(&mut self, g: &RawGateway, ok: &mut bool) -> (Duration, Duration, Duration) {
        const MAX_TIMEOUT_MS: u64 = 600_000;
        const MAX_GRACE_MS: u64 = 3_600_000;
        const MAX_PATIENCE_S: u64 = 7 * 24 * 3600;
        let timeout_ms = g.timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &g.timeout_ms {
            if !(100..=MAX_TIMEOUT_MS).contains(v.get_ref()) {
                self.problem(
                    v.span(),
                    format!("timeout_ms must be between 100 and {MAX_TIMEOUT_MS} ms"),
                );
                *ok = false;
            }
        }
        let timeout_ms = timeout_ms.clamp(100, MAX_TIMEOUT_MS);
        let grace_ms = match &g.reconcile_grace_ms {
            None => timeout_ms * 3,
            Some(v) => {
                let grace = *v.get_ref();
                if grace <= timeout_ms || grace > MAX_GRACE_MS {
                    self.problem(
                        v.span(),
                        format!(
                            "reconcile_grace_ms must be longer than timeout_ms ({timeout_ms} ms): a gateway too slow \
                             to answer in time may still act on the request (at most \
                             {MAX_GRACE_MS} ms; default three times timeout_ms)"
                        ),
                    );
                    *ok = false;
                }
                grace.clamp(timeout_ms + 1, MAX_GRACE_MS)
            }
        };
        let patience_s = match &g.reconcile_patience_s {
            None => 900u64.max(grace_ms.div_ceil(1000) * 2),
            Some(v) => {
                let patience = *v.get_ref();
                if patience.saturating_mul(1000) <= grace_ms || patience > MAX_PATIENCE_S {
                    self.problem(
                        v.span(),
                        format!(
                            "reconcile_patience_s must be longer than reconcile_grace_ms ({grace_ms} ms) \
                             and at most {MAX_PATIENCE_S} s (a week)"
                        ),
                    );
                    *ok = false;
                }
                patience.clamp(1, MAX_PATIENCE_S)
            }
        };
        (
            Duration::from_millis(timeout_ms),
            Duration::from_millis(grace_ms),
            Duration::from_secs(patience_s),
        )
    }

    /// `kind = "dinstar-dwg"`: the DWG listener the gateway connects to.
    fn dwg(&mut self, g: &mut RawGateway, name_span: &Range<usize>) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::DinstarDwg.as_str();
        let listen = self.required(g.listen.as_ref(), "listen", name_span, kind_name);
        let listen = listen.and_then(|l| match l.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let span = g
                    .listen
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or(name_span.clone());
                self.problem(
                    span,
                    format!(
                        "listen must be an address and port such as \"192.168.1.10:9000\", found {l:?}"
                    ),
                );
                None
            }
        });
        let user = self.required(g.user.as_ref(), "user", name_span, kind_name);
        let password = self.secret(
            g.password.take(),
            g.password_file.take(),
            "password",
            name_span.clone(),
        );
        let mut ok = true;
        let allow = self.allow_list(g.allow.as_ref(), "allow", &mut ok);
        match (listen, user, password, ok) {
            (Some(listen), Some(user), Some(password), true) => {
                Some(GatewaySettings::DinstarDwg(DwgSettings {
                    listen,
                    user,
                    password,
                    allow,
                }))
            }
            _ => None,
        }
    }

    /// `kind = "at"`: one GSM modem on a serial port.
    fn at(
        &mut self,
        g: &mut RawGateway,
        name_span: &Range<usize>,
        ok: &mut bool,
    ) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::At.as_str();
        let device = self.required(g.device.as_ref(), "device", name_span, kind_name);
        let baud = g.baud.as_ref().map_or(115_200, |b| *b.get_ref());
        const BAUDS: &[u64] = &[
            9600, 19200, 38400, 57600, 115_200, 230_400, 460_800, 921_600,
        ];
        if let Some(b) = &g.baud {
            if !BAUDS.contains(b.get_ref()) {
                self.problem(b.span(), format!("baud must be one of {BAUDS:?}"));
                *ok = false;
            }
        }
        let pin = if g.pin.is_some() || g.pin_file.is_some() {
            let pin = self.secret(g.pin.take(), g.pin_file.take(), "pin", name_span.clone());
            if let Some(p) = &pin {
                let n = p.expose().len();
                if !(4..=8).contains(&n) || !p.expose().chars().all(|c| c.is_ascii_digit()) {
                    self.problem(name_span.clone(), "a SIM PIN is 4 to 8 digits");
                    *ok = false;
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
                smsc: g.smsc.take().map(|s| s.into_inner()),
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
        })
    }
}

/// Who writes to a simulated gateway unless `inbound_from` says.
const SIM_SENDERS: &[&str] = &["+59899111222", "+59899333444", "+59891555666"];
/// What they write unless `inbound_texts` says: accents, ñ, emoji and a
/// text long enough for two SMS parts, as real customers send.
const SIM_TEXTS: &[&str] = &[
    "Hola, ¿a qué hora abren mañana?",
    "Quiero cambiar la fecha de mi turno 🙏",
    "Gracias, Ñandú. Todo bien 👍",
    "Buenas tardes. Les escribo porque la factura de este mes llegó con un importe distinto al habitual y quisiera saber si hubo algún cambio en la tarifa o si se trata de un error en el cálculo.",
];
