//! `kind = "http"`: a templated HTTP request per message. Every template is
//! parsed here (an unknown placeholder is an error where it is written), a
//! JSON body is rendered once with values that stress every escape and
//! must still be JSON, and a secret written into the URL is refused.

use std::ops::Range;
use std::time::Duration;

use smsgate_proto::http_api::{self, NumberFormat, ReplyRules, Template, Var};
use toml::Spanned;

use super::super::raw::*;
use super::super::*;
use super::Validator;

/// Query parameters whose value is a secret: written literally in the URL,
/// it would sit in every copy of the config and every proxy's log.
const SECRET_PARAMS: &[&str] = &[
    "pass",
    "password",
    "pwd",
    "passwd",
    "token",
    "apikey",
    "api_key",
    "key",
    "secret",
    "access_token",
    "auth",
];

impl Validator<'_> {
    pub(super) fn http(
        &mut self,
        g: &mut RawGateway,
        name_span: &Range<usize>,
        ok: &mut bool,
    ) -> Option<GatewaySettings> {
        let kind_name = GatewayKind::Http.as_str();
        let url_text = self.required(g.url.as_ref(), "url", name_span, kind_name)?;
        let url_span = g
            .url
            .as_ref()
            .map(|u| u.span())
            .unwrap_or(name_span.clone());
        if !(url_text.starts_with("http://") || url_text.starts_with("https://")) {
            // Not echoed: a URL may hold a secret.
            self.problem(url_span.clone(), "url must start with http:// or https://");
            *ok = false;
        }
        let url = self.template(&url_text, url_span.clone(), "url", ok);
        if let Some(u) = &url {
            self.secret_in_url(u, url_span.clone(), ok);
        }
        let method = match g.method.as_ref().map(|m| m.get_ref().to_ascii_uppercase()) {
            None => http::Method::POST,
            Some(m) if m == "GET" => http::Method::GET,
            Some(m) if m == "POST" => http::Method::POST,
            Some(m) => {
                let span = g.method.as_ref().map(|v| v.span()).unwrap_or_default();
                self.problem(
                    span,
                    format!("method must be \"GET\" or \"POST\", found {m:?}"),
                );
                *ok = false;
                http::Method::POST
            }
        };
        let body = match g.body.as_ref().map(|b| b.get_ref().as_str()) {
            None => {
                if g.json.is_some() {
                    "json"
                } else if g.form.is_some() {
                    "form"
                } else {
                    "none"
                }
            }
            Some(b @ ("none" | "form" | "json")) => b,
            Some(other) => {
                let span = g.body.as_ref().map(|v| v.span()).unwrap_or_default();
                self.problem(
                    span,
                    format!("body must be \"none\", \"form\" or \"json\", found {other:?}"),
                );
                *ok = false;
                "none"
            }
        };
        let body = match body {
            "form" => match &g.form {
                Some(f) => self
                    .template(f.get_ref(), f.span(), "form", ok)
                    .map(HttpBody::Form),
                None => {
                    self.problem(name_span.clone(), "body = \"form\" needs `form`, the body template (name={text}&...)");
                    *ok = false;
                    None
                }
            },
            "json" => match &g.json {
                Some(j) => self.template(j.get_ref(), j.span(), "json", ok).and_then(|t| {
                    let sample = t.render(http_api::Place::Json, &http_api::sample_values());
                    match sample.map(|s| serde_json::from_str::<serde_json::Value>(&s)) {
                        Ok(Ok(_)) => Some(HttpBody::Json(t)),
                        Ok(Err(e)) => {
                            self.problem(
                                j.span(),
                                format!(
                                    "json is not JSON once its placeholders are filled ({e}); a placeholder stands inside a JSON string: \"{{text}}\""
                                ),
                            );
                            *ok = false;
                            None
                        }
                        Err(e) => {
                            self.problem(j.span(), format!("json: {e}"));
                            *ok = false;
                            None
                        }
                    }
                }),
                None => {
                    self.problem(name_span.clone(), "body = \"json\" needs `json`, the body template");
                    *ok = false;
                    None
                }
            },
            _ => {
                for (key, v) in [("form", &g.form), ("json", &g.json)] {
                    if let Some(v) = v {
                        self.problem(v.span(), format!("`{key}` is set but body = \"none\""));
                        *ok = false;
                    }
                }
                Some(HttpBody::None)
            }
        };
        if method == http::Method::GET && !matches!(body, Some(HttpBody::None) | None) {
            let span = g
                .method
                .as_ref()
                .map(|v| v.span())
                .unwrap_or(name_span.clone());
            self.problem(
                span,
                "a GET request has no body: use method = \"POST\" or body = \"none\"",
            );
            *ok = false;
        }
        let mut headers = Vec::new();
        if let Some(h) = &g.headers {
            for (name, value) in h.get_ref() {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    self.problem(value.span(), format!("{name:?} is not a header name"));
                    *ok = false;
                    continue;
                }
                if let Some(t) = self.template(value.get_ref(), value.span(), "headers", ok) {
                    if t.literal_text().contains(['\r', '\n']) {
                        self.problem(value.span(), "a header value cannot hold a line break");
                        *ok = false;
                    }
                    headers.push((name.clone(), t));
                }
            }
        }
        let auth = match g.auth.as_ref().map(|a| a.get_ref().as_str()) {
            None | Some("none") => HttpAuth::None,
            Some("basic") => HttpAuth::Basic,
            Some("bearer") => HttpAuth::Bearer,
            Some(other) => {
                let span = g.auth.as_ref().map(|v| v.span()).unwrap_or_default();
                self.problem(
                    span,
                    format!("auth must be \"none\", \"basic\" or \"bearer\" for kind \"http\", found {other:?}"),
                );
                *ok = false;
                HttpAuth::None
            }
        };
        let mut templates: Vec<&Template> = url.iter().collect();
        if let Some(HttpBody::Form(t) | HttpBody::Json(t)) = &body {
            templates.push(t);
        }
        templates.extend(headers.iter().map(|(_, t)| t));
        let uses = |v: Var| templates.iter().any(|t| t.uses(v));
        if uses(Var::ProviderId) {
            self.problem(
                url_span.clone(),
                "{provider_id} is known only after the send: it belongs in reports.poll_url",
            );
            *ok = false;
        }
        let needs_password = auth == HttpAuth::Basic || uses(Var::Password);
        let needs_token = auth == HttpAuth::Bearer || uses(Var::Token);
        let password = if needs_password || g.password.is_some() || g.password_file.is_some() {
            self.secret(
                g.password.take(),
                g.password_file.take(),
                "password",
                name_span.clone(),
            )
        } else {
            None
        };
        let token = if needs_token || g.token.is_some() || g.token_file.is_some() {
            self.secret(
                g.token.take(),
                g.token_file.take(),
                "token",
                name_span.clone(),
            )
        } else {
            None
        };
        if (needs_password && password.is_none()) || (needs_token && token.is_none()) {
            *ok = false;
        }
        let user = g
            .user
            .as_ref()
            .map(|u| u.get_ref().clone())
            .unwrap_or_default();
        if (auth == HttpAuth::Basic || uses(Var::User)) && user.is_empty() {
            self.problem(
                name_span.clone(),
                "this http provider needs `user` (auth = \"basic\" or {user} in a template)",
            );
            *ok = false;
        }
        let number_format = match &g.number_format {
            None => NumberFormat::E164,
            Some(f) => NumberFormat::parse(f.get_ref()).unwrap_or_else(|| {
                self.problem(
                    f.span(),
                    "number_format must be \"e164\", \"e164_no_plus\" (or \"digits\") or \"national\"",
                );
                *ok = false;
                NumberFormat::E164
            }),
        };
        let sender = g
            .sender
            .as_ref()
            .map(|s| s.get_ref().clone())
            .unwrap_or_default();
        if uses(Var::Sender) && sender.is_empty() {
            self.problem(name_span.clone(), "a template uses {sender}: set `sender`");
            *ok = false;
        }
        let timeout_ms = g.timeout_ms.as_ref().map_or(10_000, |v| *v.get_ref());
        if let Some(v) = &g.timeout_ms {
            if !(100..=600_000).contains(v.get_ref()) {
                self.problem(v.span(), "timeout_ms must be between 100 and 600000 ms");
                *ok = false;
            }
        }
        let reply = self.reply_rules(g, ok);
        let reports = g.reports.take().map(|r| {
            let r = r.into_inner();
            let list = |v: &Spanned<Vec<Spanned<String>>>| -> Vec<String> {
                v.get_ref().iter().map(|e| e.get_ref().clone()).collect()
            };
            if r.delivered.get_ref().is_empty() {
                self.problem(
                    r.delivered.span(),
                    "reports.delivered needs at least one status value",
                );
                *ok = false;
            }
            let poll = match &r.poll_url {
                None => {
                    if r.id_field.is_none() {
                        self.problem(
                            name_span.clone(),
                            "[gateway.reports] needs id_field (the provider's id in its report callback), poll_url, or both",
                        );
                        *ok = false;
                    }
                    None
                }
                Some(u) => {
                    let t = self.template(u.get_ref(), u.span(), "reports.poll_url", ok);
                    if let Some(t) = &t {
                        if !(t.uses(Var::ProviderId) || t.uses(Var::MessageId)) {
                            self.problem(
                                u.span(),
                                "reports.poll_url names the message with {provider_id} or {message_id}",
                            );
                            *ok = false;
                        }
                        self.secret_in_url(t, u.span(), ok);
                    }
                    let secs = |v: &Option<Spanned<u64>>, default: u64, max: u64, key: &str, me: &mut Self, ok: &mut bool| {
                        let n = v.as_ref().map_or(default, |v| *v.get_ref());
                        if let Some(v) = v {
                            if !(1..=max).contains(&n) {
                                me.problem(v.span(), format!("reports.{key} must be between 1 and {max} s"));
                                *ok = false;
                            }
                        }
                        Duration::from_secs(n.clamp(1, max))
                    };
                    let every = secs(&r.poll_interval_s, 60, 86_400, "poll_interval_s", self, ok);
                    let window = secs(&r.poll_for_s, 172_800, 30 * 86_400, "poll_for_s", self, ok);
                    t.map(|url| HttpPoll { url, every, window })
                }
            };
            HttpReports {
                id_field: r.id_field.map(|f| f.into_inner()),
                poll,
                status_field: r.status_field.into_inner(),
                delivered: list(&r.delivered),
                undelivered: list(&r.undelivered),
                detail_field: r.detail_field.map(|d| d.into_inner()),
            }
        });
        let inbound = g.inbound.take().map(|i| {
            let i = i.into_inner();
            HttpInbound {
                from_field: i.from_field.into_inner(),
                text_field: i.text_field.into_inner(),
                to_field: i.to_field.map(|d| d.into_inner()),
                id_field: i.id_field.map(|d| d.into_inner()),
            }
        });
        let push_allow = self.allow_list(g.push_allow.as_ref(), "push_allow", ok);
        let (url, body) = (url?, body?);
        Some(GatewaySettings::Http(Box::new(HttpSettings {
            url,
            method,
            headers,
            body,
            auth,
            user,
            password,
            token,
            number_format,
            sender,
            timeout: Duration::from_millis(timeout_ms.clamp(100, 600_000)),
            reply,
            reports,
            inbound,
            push_allow,
        })))
    }

    fn template(
        &mut self,
        text: &str,
        span: Range<usize>,
        key: &str,
        ok: &mut bool,
    ) -> Option<Template> {
        match Template::parse(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(span, format!("{key}: {e}"));
                *ok = false;
                None
            }
        }
    }

    /// A query parameter named like a secret with a literal value.
    fn secret_in_url(&mut self, url: &Template, span: Range<usize>, ok: &mut bool) {
        let literal = url.literal_text();
        let Some((_, query)) = literal.split_once('?') else {
            return;
        };
        for pair in query.split('&') {
            // Yeastar writes `1500101=account=...`: the name is the last
            // part before the value.
            let mut parts: Vec<&str> = pair.split('=').collect();
            let Some(value) = parts.pop() else { continue };
            let Some(name) = parts.pop() else { continue };
            if SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str()) && !value.is_empty() {
                self.problem(
                    span.clone(),
                    format!(
                        "url: the query parameter {name:?} holds a secret written into the URL; write {{password}} (or {{token}}) there and put the secret in password_file (or token_file)"
                    ),
                );
                *ok = false;
            }
        }
    }

    fn reply_rules(&mut self, g: &RawGateway, ok: &mut bool) -> ReplyRules {
        let mut regex = |v: &Option<Spanned<String>>, key: &str| -> Option<regex::Regex> {
            let v = v.as_ref()?;
            match regex::Regex::new(v.get_ref()) {
                Ok(r) => Some(r),
                Err(e) => {
                    self.problem(v.span(), format!("{key} is not a valid pattern: {e}"));
                    *ok = false;
                    None
                }
            }
        };
        let success_pattern = regex(&g.success_pattern, "success_pattern");
        let id_pattern = regex(&g.id_pattern, "id_pattern");
        let auth_pattern = regex(&g.auth_pattern, "auth_pattern");
        let temporary_pattern = regex(&g.temporary_pattern, "temporary_pattern");
        let mut statuses = |v: &Option<Spanned<Vec<Spanned<u64>>>>, key: &str| -> Vec<u16> {
            let mut out = Vec::new();
            for s in v.iter().flat_map(|l| l.get_ref()) {
                if !(100..=599).contains(s.get_ref()) {
                    self.problem(
                        s.span(),
                        format!("{key}: {} is not an HTTP status", s.get_ref()),
                    );
                    *ok = false;
                } else {
                    out.push(*s.get_ref() as u16);
                }
            }
            out
        };
        let success_status = statuses(&g.success_status, "success_status")
            .into_iter()
            .map(|s| (s, s))
            .collect();
        let auth_status = statuses(&g.auth_status, "auth_status");
        let pointer = |v: &Option<Spanned<String>>, key: &str, me: &mut Self, ok: &mut bool| {
            let v = v.as_ref()?;
            if !v.get_ref().starts_with('/') {
                me.problem(
                    v.span(),
                    format!("{key} is a JSON pointer such as \"/data/id\""),
                );
                *ok = false;
            }
            Some(v.get_ref().clone())
        };
        let success_pointer = pointer(&g.success_pointer, "success_pointer", self, ok);
        let id_pointer = pointer(&g.id_pointer, "id_pointer", self, ok);
        let success_pointer = match (success_pointer, &g.success_value) {
            (Some(p), Some(v)) => Some((p, v.get_ref().clone())),
            (None, None) => None,
            (Some(_), None) => {
                let span = g
                    .success_pointer
                    .as_ref()
                    .map(|v| v.span())
                    .unwrap_or_default();
                self.problem(span, "success_pointer needs success_value");
                *ok = false;
                None
            }
            (None, Some(v)) => {
                self.problem(v.span(), "success_value needs success_pointer");
                *ok = false;
                None
            }
        };
        ReplyRules {
            success_status,
            success_pointer,
            success_pattern,
            id_pointer,
            id_pattern,
            auth_status,
            auth_pattern,
            temporary_pattern,
        }
    }
}
