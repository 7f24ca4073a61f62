//! `kind = "twilio"`: Twilio's Messages API for SMS or WhatsApp. Who we
//! are (account, auth token or API key), who sends (a number or a
//! Messaging Service), and how statuses and customers' messages come back:
//! by Twilio's signed webhooks to `status_callback_url`, or by polling
//! when Twilio cannot reach the box.

use std::ops::Range;
use std::time::Duration;

use smsgate_proto::twilio::{Channel, Sender};

use super::super::raw::*;
use super::super::*;
use super::{KindKey, Validator};

/// The keys only this kind takes, for the "key of another kind" check.
pub(super) fn keys(g: &RawGateway) -> Vec<KindKey<'static>> {
    const T: &[GatewayKind] = &[GatewayKind::Twilio];
    let span = |v: Option<Range<usize>>| v;
    vec![
        (
            "account_sid",
            span(g.account_sid.as_ref().map(|v| v.span())),
            T,
        ),
        ("auth_token", g.auth_token.as_ref().map(|v| v.span()), T),
        (
            "auth_token_file",
            g.auth_token_file.as_ref().map(|v| v.span()),
            T,
        ),
        ("api_key_sid", g.api_key_sid.as_ref().map(|v| v.span()), T),
        (
            "api_key_secret_file",
            g.api_key_secret_file.as_ref().map(|v| v.span()),
            T,
        ),
        ("from", g.from.as_ref().map(|v| v.span()), T),
        (
            "messaging_service_sid",
            g.messaging_service_sid.as_ref().map(|v| v.span()),
            T,
        ),
        ("channel", g.channel.as_ref().map(|v| v.span()), T),
        (
            "status_callback_url",
            g.status_callback_url.as_ref().map(|v| v.span()),
            T,
        ),
        (
            "status_poll_s",
            g.status_poll_s.as_ref().map(|v| v.span()),
            T,
        ),
        (
            "status_poll_for_s",
            g.status_poll_for_s.as_ref().map(|v| v.span()),
            T,
        ),
        (
            "inbound_poll_s",
            g.inbound_poll_s.as_ref().map(|v| v.span()),
            T,
        ),
    ]
}

/// Polling with no callbacks: each message in flight this often.
pub const STATUS_POLL_DEFAULT_S: u64 = 30;
/// Received messages listed this often when Twilio cannot call us.
pub const INBOUND_POLL_DEFAULT_S: u64 = 60;
/// A sent message is polled for a day at most.
pub const STATUS_POLL_FOR_DEFAULT_S: u64 = 86_400;

fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34 && s.starts_with(prefix) && s[2..].chars().all(|c| c.is_ascii_alphanumeric())
}

impl Validator<'_> {
    pub(super) fn twilio(
        &mut self,
        g: &mut RawGateway,
        name_span: &Range<usize>,
        ok: &mut bool,
    ) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::Twilio.as_str();
        let before = self.problems.len();
        let account_sid =
            self.required(g.account_sid.as_ref(), "account_sid", name_span, kind_name);
        if let (Some(sid), Some(v)) = (&account_sid, &g.account_sid) {
            if !is_sid(sid, "AC") {
                self.problem(
                    v.span(),
                    "account_sid is the account's SID: \"AC\" and 32 letters or digits, as shown in Twilio's console",
                );
            }
        }
        let url = match &g.url {
            None => smsgate_proto::twilio::API_BASE.to_string(),
            Some(u) => {
                let s = u.get_ref().trim_end_matches('/').to_string();
                let parsed = reqwest::Url::parse(&s);
                match parsed {
                    Ok(p)
                        if matches!(p.scheme(), "http" | "https")
                            && p.username().is_empty()
                            && p.password().is_none()
                            && p.query().is_none()
                            && p.host_str().is_some() =>
                    {
                        s
                    }
                    _ => {
                        self.problem(
                            u.span(),
                            "url must be http:// or https:// with a host, no user or password and no query (default https://api.twilio.com)",
                        );
                        s
                    }
                }
            }
        };
        let auth_token = if g.auth_token.is_some() || g.auth_token_file.is_some() {
            self.secret(
                g.auth_token.take(),
                g.auth_token_file.take(),
                "auth_token",
                name_span.clone(),
            )
        } else {
            None
        };
        let api_key = match (&g.api_key_sid, &g.api_key_secret_file) {
            (None, None) => None,
            (Some(sid), Some(_)) => {
                let sid_text = sid.get_ref().clone();
                let sid_span = sid.span();
                if !is_sid(&sid_text, "SK") {
                    self.problem(
                        sid_span,
                        "api_key_sid is an API key's SID: \"SK\" and 32 letters or digits",
                    );
                }
                self.secret(
                    None,
                    g.api_key_secret_file.take(),
                    "api_key_secret",
                    name_span.clone(),
                )
                .map(|secret| (sid_text, secret))
            }
            (Some(sid), None) => {
                self.problem(
                    sid.span(),
                    "api_key_sid needs api_key_secret_file, the file holding the key's secret",
                );
                None
            }
            (None, Some(f)) => {
                self.problem(
                    f.span(),
                    "api_key_secret_file needs api_key_sid, the key's SID (SK...)",
                );
                None
            }
        };
        if auth_token.is_none()
            && api_key.is_none()
            && g.auth_token.is_none()
            && g.api_key_sid.is_none()
            && self.problems.len() == before
        {
            self.problem(
                name_span.clone(),
                "a gateway of kind \"twilio\" needs auth_token_file (or auth_token), or an API key: api_key_sid and api_key_secret_file",
            );
        }
        let channel = match g.channel.as_ref().map(|c| c.get_ref().as_str()) {
            None | Some("sms") => Channel::Sms,
            Some("whatsapp") => Channel::WhatsApp,
            Some(other) => {
                let span = g.channel.as_ref().map(|v| v.span()).unwrap_or_default();
                self.problem(
                    span,
                    format!("channel must be \"sms\" or \"whatsapp\", found {other:?}"),
                );
                Channel::Sms
            }
        };
        let sender = match (&g.from, &g.messaging_service_sid) {
            (Some(f), None) => {
                let n = f.get_ref().trim();
                let n = n.strip_prefix("whatsapp:").unwrap_or(n);
                // Digits only, not a plan check: Twilio's test numbers
                // (+1500555...) are in no numbering plan.
                let digits = n.strip_prefix('+').unwrap_or("");
                match digits.len() {
                    7..=15 if digits.chars().all(|c| c.is_ascii_digit()) => {
                        Sender::From(n.to_string())
                    }
                    _ => {
                        self.problem(
                            f.span(),
                            format!(
                                "from must be our Twilio number in E.164, such as \"+15005550006\", found {:?}",
                                f.get_ref()
                            ),
                        );
                        Sender::From(n.to_string())
                    }
                }
            }
            (None, Some(m)) => {
                if !is_sid(m.get_ref(), "MG") {
                    self.problem(
                        m.span(),
                        "messaging_service_sid is a Messaging Service's SID: \"MG\" and 32 letters or digits",
                    );
                }
                Sender::Service(m.get_ref().clone())
            }
            (Some(_), Some(m)) => {
                self.problem(
                    m.span(),
                    "give either `from` or `messaging_service_sid`, not both",
                );
                Sender::Service(m.get_ref().clone())
            }
            (None, None) => {
                self.problem(
                    name_span.clone(),
                    "a gateway of kind \"twilio\" needs `from` (our number, E.164) or `messaging_service_sid`",
                );
                Sender::From(String::new())
            }
        };
        let status_callback_url = g.status_callback_url.as_ref().and_then(|u| {
            let s = u.get_ref().trim();
            match reqwest::Url::parse(s) {
                Ok(p)
                    if matches!(p.scheme(), "http" | "https")
                        && p.host_str().is_some()
                        && p.username().is_empty()
                        && p.password().is_none() =>
                {
                    Some(s.to_string())
                }
                _ => {
                    self.problem(
                        u.span(),
                        "status_callback_url must be the public http:// or https:// URL of this gateway's push route (…/api/v1/gateways/NAME/push), without user or password",
                    );
                    None
                }
            }
        });
        if let (Some(u), None) = (&g.status_callback_url, &auth_token) {
            self.problem(
                u.span(),
                "Twilio signs its webhooks with the account's auth token, even when smsgate sends with an API key: status_callback_url needs auth_token_file (or auth_token) to verify them",
            );
        }
        let timeout_ms = g.timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &g.timeout_ms {
            if !(100..=600_000).contains(v.get_ref()) {
                self.problem(v.span(), "timeout_ms must be between 100 and 600000 ms");
            }
        }
        let mut seconds =
            |v: &Option<toml::Spanned<u64>>, key: &str, default: u64, max: u64| match v {
                None => default,
                Some(v) if *v.get_ref() <= max => *v.get_ref(),
                Some(v) => {
                    self.problem(
                        v.span(),
                        format!("{key} must be between 0 (off) and {max} seconds"),
                    );
                    default
                }
            };
        let callbacks = status_callback_url.is_some();
        let status_poll_s = seconds(
            &g.status_poll_s,
            "status_poll_s",
            if callbacks { 0 } else { STATUS_POLL_DEFAULT_S },
            3600,
        );
        let status_poll_for_s = seconds(
            &g.status_poll_for_s,
            "status_poll_for_s",
            STATUS_POLL_FOR_DEFAULT_S,
            7 * 86_400,
        );
        let has_from = matches!(sender, Sender::From(_));
        let inbound_poll_s = seconds(
            &g.inbound_poll_s,
            "inbound_poll_s",
            if callbacks || !has_from {
                0
            } else {
                INBOUND_POLL_DEFAULT_S
            },
            3600,
        );
        if let (Some(v), false) = (&g.inbound_poll_s, has_from) {
            if *v.get_ref() > 0 {
                self.problem(
                    v.span(),
                    "inbound_poll_s lists the messages sent to our number: it needs `from` (a Messaging Service has no one number)",
                );
            }
        }
        if let Some(v) = &g.status_poll_for_s {
            if *v.get_ref() == 0 {
                self.problem(v.span(), "status_poll_for_s must be at least 1 second");
            }
        }
        let messaging_limit = match &g.messaging_limit {
            None => None,
            Some(v) if channel != Channel::WhatsApp => {
                self.problem(
                    v.span(),
                    "messaging_limit is WhatsApp's: it needs channel = \"whatsapp\"",
                );
                None
            }
            Some(v) => match v.get_ref() {
                RawMessagingLimit::Word(w) if w == "unlimited" => None,
                RawMessagingLimit::Count(n) if (1..=10_000_000).contains(n) => Some(*n as u32),
                _ => {
                    self.problem(
                    v.span(),
                    "messaging_limit must be between 1 and 10000000 customers per 24 h, or \"unlimited\"",
                );
                    None
                }
            },
        };
        if self.problems.len() != before {
            *ok = false;
            return None;
        }
        Some(GatewaySettings::Twilio(Box::new(TwilioSettings {
            url,
            account_sid: account_sid?,
            auth_token,
            api_key,
            sender,
            channel,
            status_callback_url,
            timeout: Duration::from_millis(timeout_ms),
            status_poll: (status_poll_s > 0).then(|| Duration::from_secs(status_poll_s)),
            status_poll_for: Duration::from_secs(status_poll_for_s.max(1)),
            inbound_poll: (inbound_poll_s > 0).then(|| Duration::from_secs(inbound_poll_s)),
            messaging_limit,
        })))
    }
}
