//! `kind = "whatsapp-cloud"`: Meta's WhatsApp Business Cloud API. Three
//! secrets (access token, app secret, verify token), each inline or, the
//! documented way, in a file; the rest is where and how to reach Meta.

use std::ops::Range;
use std::time::Duration;

use super::super::raw::*;
use super::super::whatsapp_cloud::{DEFAULT_API_VERSION, DEFAULT_URL, LIMIT_TIERS};
use super::super::*;
use super::{KindKey, Validator};

const ONLY: &[GatewayKind] = &[GatewayKind::WhatsappCloud];

/// The keys only this kind takes, so another kind refuses them by name.
pub(super) fn whatsapp_cloud_keys(g: &RawGateway) -> Vec<KindKey<'static>> {
    let span = |v: &Option<toml::Spanned<String>>| v.as_ref().map(|v| v.span());
    vec![
        ("phone_number_id", span(&g.phone_number_id), ONLY),
        ("access_token", span(&g.access_token), ONLY),
        ("access_token_file", span(&g.access_token_file), ONLY),
        ("app_secret", span(&g.app_secret), ONLY),
        ("app_secret_file", span(&g.app_secret_file), ONLY),
        ("verify_token", span(&g.verify_token), ONLY),
        ("verify_token_file", span(&g.verify_token_file), ONLY),
        ("api_version", span(&g.api_version), ONLY),
        // Meta's limit, also on Twilio's WhatsApp channel.
        (
            "messaging_limit",
            g.messaging_limit.as_ref().map(|v| v.span()),
            &[GatewayKind::WhatsappCloud, GatewayKind::Twilio],
        ),
        ("number", span(&g.number), ONLY),
    ]
}

impl Validator<'_> {
    pub(super) fn whatsapp_cloud(
        &mut self,
        g: &mut RawGateway,
        name_span: &Range<usize>,
        ok: &mut bool,
    ) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::WhatsappCloud.as_str();
        let phone_number_id = self.required(
            g.phone_number_id.as_ref(),
            "phone_number_id",
            name_span,
            kind_name,
        );
        if let Some(p) = &g.phone_number_id {
            let v = p.get_ref();
            if !v.is_empty() && (v.len() > 32 || !v.bytes().all(|b| b.is_ascii_digit())) {
                self.problem(
                    p.span(),
                    format!(
                        "phone_number_id is the number's id in Meta's WhatsApp Manager (digits only), found {v:?}"
                    ),
                );
                *ok = false;
            }
        }
        let access_token = self.secret(
            g.access_token.take(),
            g.access_token_file.take(),
            "access_token",
            name_span.clone(),
        );
        let app_secret = self.secret(
            g.app_secret.take(),
            g.app_secret_file.take(),
            "app_secret",
            name_span.clone(),
        );
        let verify_token = self.secret(
            g.verify_token.take(),
            g.verify_token_file.take(),
            "verify_token",
            name_span.clone(),
        );
        let url = match &g.url {
            None => DEFAULT_URL.to_string(),
            Some(u) => {
                let s = u.get_ref().trim_end_matches('/');
                let bare = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"));
                if !bare.is_some_and(|h| !h.is_empty() && !h.contains(['?', '#', '@'])) {
                    // Not echoed: a URL may hold a secret.
                    self.problem(
                        u.span(),
                        "url must be http:// or https:// and a host (and path), without a query, e.g. \"https://graph.facebook.com\"",
                    );
                    *ok = false;
                }
                s.to_string()
            }
        };
        let api_version = match &g.api_version {
            None => DEFAULT_API_VERSION.to_string(),
            Some(v) => {
                if !smsgate_proto::whatsapp_cloud::valid_api_version(v.get_ref()) {
                    self.problem(
                        v.span(),
                        format!(
                            "api_version is v<major>.<minor> such as \"{DEFAULT_API_VERSION}\", found {:?}",
                            v.get_ref()
                        ),
                    );
                    *ok = false;
                }
                v.get_ref().clone()
            }
        };
        let timeout_ms = g.timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &g.timeout_ms {
            if !(100..=600_000).contains(v.get_ref()) {
                self.problem(v.span(), "timeout_ms must be between 100 and 600000 ms");
                *ok = false;
            }
        }
        let messaging_limit = match g.messaging_limit.as_ref() {
            None => None,
            Some(v) => match v.get_ref() {
                RawMessagingLimit::Word(w) if w == "unlimited" => None,
                RawMessagingLimit::Count(n) if LIMIT_TIERS.contains(&(*n as u32)) && *n > 0 => {
                    Some(*n as u32)
                }
                other => {
                    let found = match other {
                        RawMessagingLimit::Count(n) => n.to_string(),
                        RawMessagingLimit::Word(w) => format!("{w:?}"),
                    };
                    self.problem(
                        v.span(),
                        format!(
                            "messaging_limit is one of Meta's tiers: 250, 2000, 10000, 100000 or \"unlimited\", found {found}"
                        ),
                    );
                    *ok = false;
                    None
                }
            },
        };
        let number = match &g.number {
            None => None,
            Some(n) => {
                let v = n.get_ref();
                let digits = v.strip_prefix('+').unwrap_or("");
                if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    self.problem(
                        n.span(),
                        format!(
                            "number is our WhatsApp number in E.164 (+ and 8 to 15 digits), found {v:?}"
                        ),
                    );
                    *ok = false;
                }
                Some(v.clone())
            }
        };
        Some(GatewaySettings::WhatsappCloud(Box::new(
            WhatsappCloudSettings {
                phone_number_id: phone_number_id?,
                access_token: access_token?,
                app_secret: app_secret?,
                verify_token: verify_token?,
                url,
                api_version,
                timeout: Duration::from_millis(timeout_ms.clamp(100, 600_000)),
                messaging_limit,
                number,
            },
        )))
    }
}
