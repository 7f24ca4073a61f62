//! The `http` provider kind's wire decisions, as pure functions: request
//! templates (`{number}`, `{text}`, ...) rendered with the encoding of the
//! place each placeholder stands in (URL path, URL query, form body, JSON
//! string, header value), the reading of a provider's reply (success by
//! status, JSON pointer or pattern; its message id; the class of a
//! failure), and the reading of the callbacks it posts to us (form or JSON
//! fields).
//!
//! A placeholder is `{` + a known lower-case name + `}`; every other brace
//! is literal, so a JSON template needs no escaping (`{"to":"{number}"}`).

use std::fmt;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The destination, in the provider's `number_format`.
    Number,
    Text,
    /// The sender id (`sender`).
    Sender,
    /// Our message id: the provider may echo it in its reports.
    MessageId,
    /// The account (`user`).
    User,
    /// The secret password (`password` / `password_file`).
    Password,
    /// The secret token (`token` / `token_file`).
    Token,
    /// The channel (port) the message goes out on, from 0.
    Port,
    /// The same, from 1 (gateways that number their GSM ports from 1).
    Port1,
    /// The provider's id of a sent message (a status poll's URL).
    ProviderId,
}

/// Every placeholder name, as written between braces.
pub const VARS: &[(&str, Var)] = &[
    ("number", Var::Number),
    ("text", Var::Text),
    ("sender", Var::Sender),
    ("message_id", Var::MessageId),
    ("user", Var::User),
    ("password", Var::Password),
    ("token", Var::Token),
    ("port", Var::Port),
    ("port1", Var::Port1),
    ("provider_id", Var::ProviderId),
];

impl Var {
    pub fn name(self) -> &'static str {
        VARS.iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether its value is a secret (never logged, never echoed).
    pub fn is_secret(self) -> bool {
        matches!(self, Var::Password | Var::Token)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{name}` with a name that is no placeholder; `at` is the byte offset
    /// of the `{`.
    #[error("unknown placeholder {{{name}}} (placeholders: {list})", list = var_list())]
    Unknown { name: String, at: usize },
    /// A header value would hold a line break or NUL once rendered.
    #[error("a header value cannot hold a line break or NUL (from {0})")]
    BadHeader(&'static str),
}

fn var_list() -> String {
    VARS.iter()
        .map(|(n, _)| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

impl Template {
    /// Parses `s`. `{name}` where name is lower-case letters, digits and
    /// `_` must be a known placeholder; any other brace is literal.
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        let b = s.as_bytes();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'{' {
                let mut j = i + 1;
                while j < b.len() && is_name_byte(b[j]) {
                    j += 1;
                }
                if j > i + 1 && j < b.len() && b[j] == b'}' && b[i + 1].is_ascii_lowercase() {
                    let name = &s[i + 1..j];
                    let Some((_, v)) = VARS.iter().find(|(n, _)| *n == name) else {
                        return Err(TemplateError::Unknown {
                            name: name.to_string(),
                            at: i,
                        });
                    };
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(*v));
                    i = j + 1;
                    continue;
                }
            }
            // Whole characters: `s` is UTF-8 and `{` is ASCII.
            let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
            lit.push(ch);
            i += ch.len_utf8().max(1);
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Self { parts })
    }

    /// The placeholders it uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Lit(_) => None,
        })
    }

    pub fn uses(&self, v: Var) -> bool {
        self.vars().any(|x| x == v)
    }

    /// The literal text (placeholders left out): for checks such as "a
    /// secret written into the URL".
    pub fn literal_text(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.as_str(),
                Part::Var(_) => "",
            })
            .collect()
    }

    /// Renders with every placeholder encoded for `place`; literal text is
    /// taken as written.
    pub fn render(&self, place: Place, values: &Values<'_>) -> Result<String, TemplateError> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    let raw = values.get(*v);
                    match place {
                        Place::Path => out.push_str(&percent(raw, false)),
                        Place::Query => out.push_str(&percent(raw, false)),
                        Place::Form => out.push_str(&percent(raw, true)),
                        Place::Json => out.push_str(&json_inner(raw)),
                        Place::Header => {
                            if raw.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
                                return Err(TemplateError::BadHeader(v.name()));
                            }
                            out.push_str(raw);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Renders a URL: placeholders before the `?` are path-encoded, after
    /// it query-encoded (the same set here: everything but RFC 3986's
    /// unreserved characters is percent-encoded, space as `%20`).
    pub fn render_url(&self, values: &Values<'_>) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut in_query = false;
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    in_query |= s.contains('?');
                    out.push_str(s);
                }
                Part::Var(v) => {
                    let place = if in_query { Place::Query } else { Place::Path };
                    let one = Template {
                        parts: vec![Part::Var(*v)],
                    };
                    out.push_str(&one.render(place, values)?);
                }
            }
        }
        Ok(out)
    }
}

/// Where a rendered placeholder stands, which decides its encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A URL path segment: percent-encoded but for unreserved characters.
    Path,
    /// A URL query component: the same (space `%20`, `+` `%2B`, `&` `%26`).
    Query,
    /// `application/x-www-form-urlencoded`: space `+`, the rest as WHATWG
    /// (alphanumerics and `*-._` kept, everything else `%XX` of UTF-8).
    Form,
    /// Inside a JSON string: JSON escaping, no surrounding quotes.
    Json,
    /// A header value: as is; a CR, LF or NUL is refused.
    Header,
}

/// The values placeholders take for one message.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub number: &'a str,
    pub text: &'a str,
    pub sender: &'a str,
    pub message_id: &'a str,
    pub user: &'a str,
    pub password: &'a str,
    pub token: &'a str,
    pub port: &'a str,
    pub port1: &'a str,
    pub provider_id: &'a str,
}

impl Values<'_> {
    pub fn get(&self, v: Var) -> &str {
        match v {
            Var::Number => self.number,
            Var::Text => self.text,
            Var::Sender => self.sender,
            Var::MessageId => self.message_id,
            Var::User => self.user,
            Var::Password => self.password,
            Var::Token => self.token,
            Var::Port => self.port,
            Var::Port1 => self.port1,
            Var::ProviderId => self.provider_id,
        }
    }
}

/// Values that stress every encoding, for checking templates at load: a
/// JSON template must still be JSON once rendered with them.
pub fn sample_values() -> Values<'static> {
    Values {
        number: "+59899123456",
        text: "a&b \"c\" +1 ñ\\\nline 😀 {x} %20",
        sender: "Sender &\"",
        message_id: "12345",
        user: "user&\"",
        password: "p&ss\"word",
        token: "tok\"en",
        port: "0",
        port1: "1",
        provider_id: "prov-1",
    }
}

fn percent(s: &str, form: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        let keep = if form {
            b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_')
        } else {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
        };
        if keep {
            out.push(b as char);
        } else if form && b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes `s` as a URL query component (what `{x}` in a query
/// becomes).
pub fn query_encode(s: &str) -> String {
    percent(s, false)
}

/// Encodes `s` as `application/x-www-form-urlencoded` does.
pub fn form_encode(s: &str) -> String {
    percent(s, true)
}

fn json_inner(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    quoted[1..quoted.len() - 1].to_string()
}

/// How a provider wants the destination written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberFormat {
    /// `+59899123456`
    #[default]
    E164,
    /// `59899123456` (also called `digits`)
    E164NoPlus,
    /// `099123456`: the national form, digits only.
    National,
}

impl NumberFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "e164" => Self::E164,
            "e164_no_plus" | "digits" => Self::E164NoPlus,
            "national" => Self::National,
            _ => return None,
        })
    }

    /// `e164` is an E.164 number (`+` and digits). The national form comes
    /// from the numbering plan of its country; a number the plan does not
    /// know keeps its E.164 digits.
    pub fn format(self, e164: &str) -> String {
        match self {
            Self::E164 => e164.to_string(),
            Self::E164NoPlus => e164.trim_start_matches('+').to_string(),
            Self::National => match phonenumber::parse(None, e164) {
                Ok(n) => n
                    .format()
                    .mode(phonenumber::Mode::National)
                    .to_string()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect(),
                Err(_) => e164.trim_start_matches('+').to_string(),
            },
        }
    }
}

/// How a reply is read: what is success, where the id is, which failures
/// are temporary or refused credentials.
#[derive(Debug, Clone, Default)]
pub struct ReplyRules {
    /// Inclusive ranges of success statuses; empty: 200 to 299.
    pub success_status: Vec<(u16, u16)>,
    /// A JSON pointer into the reply whose value must equal
    /// `success_value` (as text).
    pub success_pointer: Option<(String, String)>,
    /// A pattern the reply body must match.
    pub success_pattern: Option<regex::Regex>,
    pub id_pointer: Option<String>,
    /// The id is the pattern's first group (or whole match).
    pub id_pattern: Option<regex::Regex>,
    /// Statuses that mean refused credentials; empty: 401 and 403.
    pub auth_status: Vec<u16>,
    /// A refused-credentials body under a success status.
    pub auth_pattern: Option<regex::Regex>,
    /// A failed body that is worth retrying.
    pub temporary_pattern: Option<regex::Regex>,
}

/// What a provider's reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken; the provider's id for it, when the rules find one.
    Accepted { id: Option<String> },
    /// Retry later (5xx, 408, 425, 429, `temporary_pattern`).
    Temporary { reason: String },
    /// 401/403 or `auth_pattern`: every channel stops.
    Auth { reason: String },
    /// The provider refused this message: the reason in its words.
    Permanent { reason: String },
}

/// The longest part of a provider's body quoted in a reason.
pub const QUOTE_MAX: usize = 300;

/// The body in words: UTF-8 (lossy), trimmed, at most [`QUOTE_MAX`] bytes.
pub fn quote(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.len() <= QUOTE_MAX {
        return s.to_string();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn value_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Judges a reply.
pub fn judge(rules: &ReplyRules, status: u16, body: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(body);
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let words = |what: &str| {
        let q = quote(body);
        if q.is_empty() {
            format!("{what} (HTTP {status}, empty body)")
        } else {
            format!("{what} (HTTP {status}): {q}")
        }
    };
    let auth = if rules.auth_status.is_empty() {
        matches!(status, 401 | 403)
    } else {
        rules.auth_status.contains(&status)
    };
    if auth
        || rules
            .auth_pattern
            .as_ref()
            .is_some_and(|r| r.is_match(&text))
    {
        return Verdict::Auth {
            reason: words("the provider refused our credentials"),
        };
    }
    let status_ok = if rules.success_status.is_empty() {
        (200..=299).contains(&status)
    } else {
        rules
            .success_status
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&status))
    };
    let pointer_ok = rules.success_pointer.as_ref().is_none_or(|(p, want)| {
        json.as_ref()
            .and_then(|j| j.pointer(p))
            .and_then(value_text)
            .is_some_and(|got| got == *want)
    });
    let pattern_ok = rules
        .success_pattern
        .as_ref()
        .is_none_or(|r| r.is_match(&text));
    if status_ok && pointer_ok && pattern_ok {
        let id = match (&rules.id_pointer, &rules.id_pattern) {
            (Some(p), _) => json
                .as_ref()
                .and_then(|j| j.pointer(p))
                .and_then(value_text),
            (None, Some(r)) => r.captures(&text).and_then(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map(|m| m.as_str().to_string())
            }),
            (None, None) => None,
        }
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
        return Verdict::Accepted { id };
    }
    let temporary = matches!(status, 408 | 425 | 429 | 500..=599)
        || rules
            .temporary_pattern
            .as_ref()
            .is_some_and(|r| r.is_match(&text));
    if temporary {
        let what = if status == 429 {
            "the provider asks us to slow down"
        } else {
            "the provider failed for now"
        };
        return Verdict::Temporary {
            reason: words(what),
        };
    }
    Verdict::Permanent {
        reason: words("the provider refused the message"),
    }
}

/// The fields of a callback body: JSON (an object) or form-encoded.
#[derive(Debug, Clone)]
pub enum Fields {
    Json(serde_json::Value),
    Form(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldsError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("the body is not form-encoded UTF-8")]
    Form,
}

impl Fields {
    /// Reads a body by its content type: JSON when it says json (or the
    /// body starts with `{`), form-encoded otherwise.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, FieldsError> {
        let json = content_type.is_some_and(|c| c.to_ascii_lowercase().contains("json"))
            || body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if json {
            return serde_json::from_slice(body)
                .map(Fields::Json)
                .map_err(|e| FieldsError::Json(e.to_string()));
        }
        form_decode(body).map(Fields::Form).ok_or(FieldsError::Form)
    }

    /// A field: a JSON pointer (`/data/id`) or a top-level name.
    pub fn get(&self, field: &str) -> Option<String> {
        match self {
            Fields::Json(v) => {
                if field.starts_with('/') {
                    v.pointer(field).and_then(value_text)
                } else {
                    v.get(field).and_then(value_text)
                }
            }
            Fields::Form(pairs) => {
                let name = field.trim_start_matches('/');
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            }
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` (also a URL's query): `+`
/// is a space, `%XX` a byte; None if the result is not UTF-8.
pub fn form_decode(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for pair in body.split(|b| *b == b'&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        out.push((unpercent(k)?, unpercent(v)?));
    }
    Some(out)
}

fn unpercent(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => {
                let hex = std::str::from_utf8(&s[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Replaces each secret (as written, and as each encoding writes it) in
/// `s` by `***`: a provider may echo a request back in an error.
pub fn redact(s: &str, secrets: &[&str]) -> String {
    let mut out = s.to_string();
    for secret in secrets.iter().filter(|x| x.len() >= 3) {
        for form in [
            secret.to_string(),
            percent(secret, false),
            percent(secret, true),
            json_inner(secret),
        ] {
            if !form.is_empty() && out.contains(&form) {
                out = out.replace(&form, "***");
            }
        }
    }
    out
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "a&b \"c\" +1 ñ\nline 😀";

    fn vals() -> Values<'static> {
        Values {
            number: "+59899123456",
            text: TEXT,
            sender: "ACME",
            message_id: "42",
            user: "acc",
            password: "s3cr&t",
            token: "tk",
            port: "1",
            port1: "2",
            provider_id: "p1",
        }
    }

    #[test]
    fn each_place_has_its_encoding() {
        let t = Template::parse("{text}").unwrap();
        assert_eq!(
            t.render(Place::Query, &vals()).unwrap(),
            "a%26b%20%22c%22%20%2B1%20%C3%B1%0Aline%20%F0%9F%98%80"
        );
        assert_eq!(
            t.render(Place::Form, &vals()).unwrap(),
            "a%26b+%22c%22+%2B1+%C3%B1%0Aline+%F0%9F%98%80"
        );
        assert_eq!(
            t.render(Place::Json, &vals()).unwrap(),
            "a&b \\\"c\\\" +1 ñ\\nline 😀"
        );
        assert_eq!(
            t.render(Place::Header, &vals()),
            Err(TemplateError::BadHeader("text"))
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_are_literal() {
        let t = Template::parse(r#"{"to":"{number}","x":{ "n": 1 }}"#).unwrap();
        assert_eq!(
            t.render(Place::Json, &vals()).unwrap(),
            r#"{"to":"+59899123456","x":{ "n": 1 }}"#
        );
        assert_eq!(
            Template::parse("a {nope} b"),
            Err(TemplateError::Unknown {
                name: "nope".into(),
                at: 2
            })
        );
    }

    #[test]
    fn a_url_encodes_its_path_and_query() {
        let t = Template::parse("http://h/p/{user}?to={number}&m={text}&pass={password}").unwrap();
        assert_eq!(
            t.render_url(&vals()).unwrap(),
            "http://h/p/acc?to=%2B59899123456&m=a%26b%20%22c%22%20%2B1%20%C3%B1%0Aline%20%F0%9F%98%80&pass=s3cr%26t"
        );
    }

    #[test]
    fn numbers_in_each_format() {
        assert_eq!(NumberFormat::E164.format("+59899123456"), "+59899123456");
        assert_eq!(
            NumberFormat::E164NoPlus.format("+59899123456"),
            "59899123456"
        );
        assert_eq!(NumberFormat::National.format("+59899123456"), "099123456");
    }

    #[test]
    fn replies_are_judged() {
        let rules = ReplyRules {
            success_pointer: Some(("/status".into(), "ok".into())),
            id_pointer: Some("/data/id".into()),
            ..Default::default()
        };
        assert_eq!(
            judge(&rules, 200, br#"{"status":"ok","data":{"id":77}}"#),
            Verdict::Accepted {
                id: Some("77".into())
            }
        );
        assert!(matches!(
            judge(&rules, 200, br#"{"status":"error","msg":"bad number"}"#),
            Verdict::Permanent { reason } if reason.contains("bad number")
        ));
        assert!(matches!(judge(&rules, 503, b""), Verdict::Temporary { .. }));
        assert!(matches!(judge(&rules, 429, b""), Verdict::Temporary { .. }));
        assert!(matches!(judge(&rules, 401, b"no"), Verdict::Auth { .. }));
        let pat = ReplyRules {
            success_pattern: Some(regex::Regex::new(r"^OK").unwrap()),
            id_pattern: Some(regex::Regex::new(r"^OK (\S+)").unwrap()),
            auth_pattern: Some(regex::Regex::new(r"(?i)login").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            judge(&pat, 200, b"OK abc-1\n"),
            Verdict::Accepted {
                id: Some("abc-1".into())
            }
        );
        assert!(matches!(
            judge(&pat, 200, b"ERR bad login"),
            Verdict::Auth { .. }
        ));
    }

    #[test]
    fn callbacks_are_read_as_form_or_json() {
        let f =
            Fields::parse(None, b"id=a%2Bb&status=DELIVRD&text=hola+mundo%F0%9F%98%80").unwrap();
        assert_eq!(f.get("id").as_deref(), Some("a+b"));
        assert_eq!(f.get("text").as_deref(), Some("hola mundo😀"));
        let j = Fields::parse(Some("application/json"), br#"{"d":{"id":5},"s":"x"}"#).unwrap();
        assert_eq!(j.get("/d/id").as_deref(), Some("5"));
        assert_eq!(j.get("s").as_deref(), Some("x"));
        assert!(Fields::parse(None, b"a=%FF").is_err());
    }

    #[test]
    fn secrets_are_redacted_in_every_encoding() {
        assert_eq!(redact("x s3cr%26t y s3cr&t", &["s3cr&t"]), "x *** y ***");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What the fuzz target checks, on any text: query and form
        /// encodings decode back to the text, a JSON string reads back as it.
        #[test]
        fn every_encoding_reads_back(text in any::<String>()) {
            let values = Values { text: &text, ..Values::default() };
            let one = Template::parse("{text}").unwrap();
            for place in [Place::Query, Place::Form] {
                let enc = one.render(place, &values).unwrap();
                let pairs = form_decode(format!("x={enc}").as_bytes()).unwrap();
                prop_assert_eq!(pairs, vec![("x".to_string(), text.clone())]);
            }
            let json = one.render(Place::Json, &values).unwrap();
            let back: String = serde_json::from_str(&format!("\"{json}\"")).unwrap();
            prop_assert_eq!(back, text.clone());
        }

        #[test]
        fn any_template_parses_or_names_its_placeholder(t in any::<String>()) {
            if let Ok(tpl) = Template::parse(&t) {
                let _ = tpl.render_url(&sample_values());
            }
        }
    }
}
