//! Twilio's Messages API (SMS and WhatsApp), as pure code: the create
//! request's form, the message resource and error JSON, Twilio's dates,
//! what a status means for us, what an error code means for the gateway,
//! and the signature of Twilio's webhooks. The daemon's transport and the
//! simulator share it, so both sign and read the same way.
//!
//! Our side always speaks plain E.164; the `whatsapp:` prefix is added on
//! the way out and stripped on the way in, here and nowhere else.

use std::time::Duration;

use base64::Engine as _;

/// Where Twilio's REST API lives.
pub const API_BASE: &str = "https://api.twilio.com";
/// The header that carries a webhook's signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
/// The WhatsApp address prefix.
pub const WHATSAPP_PREFIX: &str = "whatsapp:";
/// The query parameter of our status callback URL that names our message,
/// so a callback is ours even if the create's answer was lost.
pub const MESSAGE_PARAM: &str = "m";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    WhatsApp,
}

/// An E.164 number as Twilio wants it on `channel`.
pub fn address(channel: Channel, e164: &str) -> String {
    match channel {
        Channel::Sms => e164.to_string(),
        Channel::WhatsApp => format!("{WHATSAPP_PREFIX}{e164}"),
    }
}

/// A Twilio address without its channel prefix, and whether it had one.
pub fn strip_address(addr: &str) -> (&str, bool) {
    match addr.strip_prefix(WHATSAPP_PREFIX) {
        Some(rest) => (rest, true),
        None => (addr, false),
    }
}

/// `/2010-04-01/Accounts/{sid}/Messages.json`.
pub fn messages_path(account_sid: &str) -> String {
    format!(
        "/2010-04-01/Accounts/{}/Messages.json",
        encode_component(account_sid)
    )
}

/// `/2010-04-01/Accounts/{sid}/Messages/{message}.json`.
pub fn message_path(account_sid: &str, message_sid: &str) -> String {
    format!(
        "/2010-04-01/Accounts/{}/Messages/{}.json",
        encode_component(account_sid),
        encode_component(message_sid)
    )
}

fn encode_component(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Who the message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// Our number, E.164.
    From(String),
    /// A Messaging Service (`MG...`) picks the number.
    Service(String),
}

/// What the message says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    Text(&'a str),
    /// A Content API template (`HX...`) and its variables in order.
    Template {
        sid: &'a str,
        variables: &'a [String],
    },
}

/// One Messages create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Create<'a> {
    pub channel: Channel,
    /// E.164.
    pub to: &'a str,
    pub sender: &'a Sender,
    pub content: Content<'a>,
    /// Where Twilio posts the message's statuses, already naming our
    /// message ([`status_callback`]).
    pub status_callback: Option<&'a str>,
}

/// `ContentVariables`: `{"1": v1, "2": v2, ...}`.
pub fn content_variables(variables: &[String]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = variables
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// Our status callback URL for message `message_id`: the configured public
/// URL with `m=<id>` added to its query.
pub fn status_callback(base: &str, message_id: i64) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{MESSAGE_PARAM}={message_id}")
}

impl Create<'_> {
    /// The form fields, in the order sent.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("To", address(self.channel, self.to))];
        match self.sender {
            Sender::From(n) => f.push(("From", address(self.channel, n))),
            Sender::Service(s) => f.push(("MessagingServiceSid", s.clone())),
        }
        match self.content {
            Content::Text(t) => f.push(("Body", t.to_string())),
            Content::Template { sid, variables } => {
                f.push(("ContentSid", sid.to_string()));
                if !variables.is_empty() {
                    f.push(("ContentVariables", content_variables(variables)));
                }
            }
        }
        if let Some(cb) = self.status_callback {
            f.push(("StatusCallback", cb.to_string()));
        }
        f
    }

    /// The form-encoded body.
    pub fn body(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.fields() {
            s.append_pair(k, &v);
        }
        s.finish()
    }
}

/// The query of a Messages list: `To`, `From`, `DateSent>=` (a day,
/// `YYYY-MM-DD`) and `PageSize`.
pub fn list_query(
    to: Option<&str>,
    from: Option<&str>,
    sent_on_or_after: Option<&str>,
    page_size: u32,
) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(to) = to {
        s.append_pair("To", to);
    }
    if let Some(from) = from {
        s.append_pair("From", from);
    }
    if let Some(day) = sent_on_or_after {
        s.append_pair("DateSent>", day);
    }
    s.append_pair("PageSize", &page_size.to_string());
    s.finish()
}

/// A message resource as Twilio answers it (create, fetch, list). Only
/// what smsgate reads; every field may be missing or null.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Message {
    #[serde(default)]
    pub sid: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub date_sent: Option<String>,
    #[serde(default)]
    pub error_code: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
    #[serde(default)]
    pub num_media: Option<String>,
}

impl Message {
    /// When Twilio created it, unix ms.
    pub fn created_ms(&self) -> Option<i64> {
        self.date_created.as_deref().and_then(parse_date)
    }

    /// When it was sent (received, for an inbound one), else created.
    pub fn sent_ms(&self) -> Option<i64> {
        self.date_sent
            .as_deref()
            .and_then(parse_date)
            .or_else(|| self.created_ms())
    }

    pub fn is_inbound(&self) -> bool {
        self.direction.as_deref() == Some("inbound")
    }
}

/// One page of a Messages list.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Page {
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub next_page_uri: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("Twilio's answer is not the JSON expected: {0}")]
    Json(String),
    #[error("Twilio's answer has no message sid")]
    NoSid,
}

/// A create's or fetch's answer.
pub fn parse_message(body: &[u8]) -> Result<Message, ParseError> {
    let m: Message = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if m.sid.is_empty() {
        return Err(ParseError::NoSid);
    }
    Ok(m)
}

/// A list's answer.
pub fn parse_page(body: &[u8]) -> Result<Page, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))
}

/// Twilio's error answer: `{code, message, more_info, status}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub more_info: Option<String>,
    #[serde(default)]
    pub status: Option<i64>,
}

/// The error in an error answer, when it is one.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    serde_json::from_slice::<ApiError>(body)
        .ok()
        .filter(|e| e.code.is_some() || e.message.is_some())
}

/// Twilio's dates are RFC 2822 (`Thu, 30 Jul 2015 20:12:31 +0000`): unix ms.
pub fn parse_date(s: &str) -> Option<i64> {
    jiff::fmt::rfc2822::parse(s.trim())
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

/// A date in Twilio's format, for the simulator's answers.
pub fn format_date(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default()
}

/// The UTC day of unix ms, `YYYY-MM-DD`: a list's `DateSent>` filter.
pub fn day(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| "1970-01-01".into())
}

/// What a message's status means for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// On its way (queued, accepted, scheduled, sending, sent): noted.
    Intermediate,
    /// Delivered (or read, on WhatsApp): final.
    Delivered,
    /// Undelivered or failed: final.
    NotDelivered,
    /// Not an outbound status (received, receiving) or unknown: ignored.
    Other,
}

pub fn classify_status(status: &str) -> StatusClass {
    match status.trim().to_ascii_lowercase().as_str() {
        "queued" | "accepted" | "scheduled" | "sending" | "sent" => StatusClass::Intermediate,
        "delivered" | "read" => StatusClass::Delivered,
        "undelivered" | "failed" | "canceled" => StatusClass::NotDelivered,
        _ => StatusClass::Other,
    }
}

/// A status in words for a message's history, with Twilio's error.
pub fn status_detail(status: &str, code: Option<i64>, message: Option<&str>) -> String {
    match (code, message.filter(|m| !m.is_empty())) {
        (Some(c), Some(m)) => format!("twilio {status} (error {c}: {m})"),
        (Some(c), None) => format!("twilio {status} (error {c})"),
        (None, _) => format!("twilio {status}"),
    }
}

/// What a refused request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The message cannot be sent, anywhere (21211 invalid To, 21408,
    /// 21612, 21614, 63016 outside the WhatsApp window, other 21xxx).
    Permanent,
    /// The recipient replied STOP (21610).
    OptedOut,
    /// Our account cannot send at all (20003 bad credentials, 20005 or
    /// 30002 account not active or suspended): every channel stops.
    StopGateway,
    /// Too many requests (HTTP 429, 20429, 63018): wait, then again.
    RateLimited { retry_after: Option<Duration> },
    /// Twilio's trouble (5xx, an unreadable answer): again later.
    Temporary,
}

/// Classifies an error answer by HTTP status and Twilio's code.
pub fn classify_error(http_status: u16, code: Option<i64>, retry_after: Option<&str>) -> Failure {
    let retry_after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match code {
        Some(21610) => return Failure::OptedOut,
        Some(20003 | 20005 | 30002 | 20008) => return Failure::StopGateway,
        Some(20429 | 63018) => return Failure::RateLimited { retry_after },
        Some(63016) => return Failure::Permanent,
        Some(c) if (21000..22000).contains(&c) => return Failure::Permanent,
        _ => {}
    }
    match http_status {
        429 => Failure::RateLimited { retry_after },
        401 | 403 => Failure::StopGateway,
        500..=599 => Failure::Temporary,
        400..=499 => Failure::Permanent,
        _ => Failure::Temporary,
    }
}

/// The string Twilio signs: the URL it called, then each POST parameter
/// sorted by name (and value) as name+value, with no separator.
pub fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut s = String::from(url);
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// `X-Twilio-Signature` for a request to `url` with `params`:
/// base64(HMAC-SHA1(auth token, signed string)).
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.as_bytes(),
    );
    let tag = ring::hmac::sign(&key, signed_string(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// Whether `header` is Twilio's signature of this request, compared in
/// constant time.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], header: &str) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(header.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        auth_token.as_bytes(),
    );
    ring::hmac::verify(&key, signed_string(url, params).as_bytes(), &given).is_ok()
}

/// The URL Twilio signed: the public URL we gave it (scheme, host, path,
/// without its own query) with the query the request arrived with.
pub fn called_url(public_url: &str, received_query: Option<&str>) -> String {
    let base = public_url.split('?').next().unwrap_or(public_url);
    match received_query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}?{q}"),
        None => base.to_string(),
    }
}

/// A form body's parameters, in order (invalid UTF-8 replaced).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A status callback: one message's new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    pub message_sid: String,
    pub status: String,
    pub error_code: Option<i64>,
    pub error_message: Option<String>,
    /// Our message id, from our callback URL's `m=`.
    pub message_id: Option<i64>,
}

/// A customer's message (the number's incoming-message webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub message_sid: String,
    /// E.164 (prefix stripped).
    pub from: String,
    /// Our number, E.164 (prefix stripped).
    pub to: String,
    pub body: String,
    pub num_media: u32,
    pub whatsapp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    Status(StatusCallback),
    Incoming(Incoming),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("not a Twilio message webhook: {0} is missing")]
    Missing(&'static str),
}

/// Reads a webhook's form parameters (and the query we put on the URL).
pub fn parse_webhook(
    params: &[(String, String)],
    query: Option<&str>,
) -> Result<Webhook, WebhookError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or(WebhookError::Missing("MessageSid"))?;
    if let Some(status) = get("MessageStatus").filter(|s| s != "received" && s != "receiving") {
        let message_id = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == MESSAGE_PARAM)
                .and_then(|(_, v)| v.parse().ok())
        });
        return Ok(Webhook::Status(StatusCallback {
            message_sid: sid,
            status,
            error_code: get("ErrorCode").and_then(|c| c.trim().parse().ok()),
            error_message: get("ErrorMessage").filter(|m| !m.is_empty()),
            message_id,
        }));
    }
    let from = get("From").ok_or(WebhookError::Missing("From"))?;
    let to = get("To").unwrap_or_default();
    let (from, wa) = strip_address(&from);
    let (to, _) = strip_address(&to);
    Ok(Webhook::Incoming(Incoming {
        message_sid: sid,
        from: from.to_string(),
        to: to.to_string(),
        body: get("Body").unwrap_or_default(),
        num_media: get("NumMedia")
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0),
        whatsapp: wa,
    }))
}

/// The message we look for after an unclear send: outbound, to `to`,
/// created at or after `since_ms`, with this body (a template's body is
/// Twilio's rendering, so for a template only the time counts). Twilio
/// lists newest first; the oldest match is ours (a later one is a later
/// send).
pub fn find_sent<'a>(
    messages: &'a [Message],
    to: &str,
    text: Option<&str>,
    since_ms: i64,
) -> Option<&'a Message> {
    messages
        .iter()
        .filter(|m| !m.is_inbound())
        .filter(|m| m.to.as_deref().map(|t| strip_address(t).0) == Some(to))
        .filter(|m| m.created_ms().is_some_and(|c| c >= since_ms))
        .filter(|m| text.is_none_or(|t| m.body.as_deref() == Some(t)))
        .min_by_key(|m| m.created_ms())
}

/// The empty TwiML answer to an incoming-message webhook: no reply.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    /// Twilio's documented example (docs "Webhooks security").
    #[test]
    fn signature_matches_twilios_documented_example() {
        let params = vec![
            p("CallSid", "CA1234567890ABCDE"),
            p("Caller", "+12349013030"),
            p("Digits", "1234"),
            p("From", "+12349013030"),
            p("To", "+18005551212"),
        ];
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let sig = signature("12345", url, &params);
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert!(verify("12345", url, &params, &sig));
        assert!(!verify("12346", url, &params, &sig), "another token");
        assert!(!verify("12345", url, &params[1..], &sig), "a param less");
        assert!(!verify("12345", url, &params, "not base64!"));
        let mut shuffled = params.clone();
        shuffled.reverse();
        assert!(
            verify("12345", url, &shuffled, &sig),
            "order does not matter"
        );
    }

    #[test]
    fn create_form_for_sms_whatsapp_and_templates() {
        let from = Sender::From("+15005550006".into());
        let c = Create {
            channel: Channel::Sms,
            to: "+59899000001",
            sender: &from,
            content: Content::Text("a & b = ñ 👍"),
            status_callback: Some("https://x.example/push?m=7"),
        };
        assert_eq!(
            c.body(),
            "To=%2B59899000001&From=%2B15005550006&Body=a+%26+b+%3D+%C3%B1+%F0%9F%91%8D&StatusCallback=https%3A%2F%2Fx.example%2Fpush%3Fm%3D7"
        );
        let svc = Sender::Service("MG123".into());
        let vars = vec!["Ana".to_string(), "3 \"pm\"".to_string()];
        let c = Create {
            channel: Channel::WhatsApp,
            to: "+59899000001",
            sender: &svc,
            content: Content::Template {
                sid: "HXabc",
                variables: &vars,
            },
            status_callback: None,
        };
        let f = c.fields();
        assert_eq!(f[0], ("To", "whatsapp:+59899000001".to_string()));
        assert_eq!(f[1], ("MessagingServiceSid", "MG123".to_string()));
        assert_eq!(f[2], ("ContentSid", "HXabc".to_string()));
        assert_eq!(
            f[3],
            (
                "ContentVariables",
                r#"{"1":"Ana","2":"3 \"pm\""}"#.to_string()
            )
        );
        assert_eq!(f.len(), 4);
    }

    #[test]
    fn prefixes_paths_and_callback_urls() {
        assert_eq!(strip_address("whatsapp:+1555"), ("+1555", true));
        assert_eq!(strip_address("+1555"), ("+1555", false));
        assert_eq!(
            messages_path("AC1"),
            "/2010-04-01/Accounts/AC1/Messages.json"
        );
        assert_eq!(
            message_path("AC1", "SM/../x"),
            "/2010-04-01/Accounts/AC1/Messages/SM%2F..%2Fx.json"
        );
        assert_eq!(status_callback("https://h/p", 5), "https://h/p?m=5");
        assert_eq!(status_callback("https://h/p?a=1", 5), "https://h/p?a=1&m=5");
        assert_eq!(
            called_url("https://h/p?x=1", Some("m=5")),
            "https://h/p?m=5"
        );
        assert_eq!(called_url("https://h/p", None), "https://h/p");
        assert_eq!(
            list_query(Some("whatsapp:+1"), None, Some("2026-12-07"), 50),
            "To=whatsapp%3A%2B1&DateSent%3E=2026-12-07&PageSize=50"
        );
    }

    #[test]
    fn dates_in_twilios_format() {
        let ms = parse_date("Thu, 30 Jul 2015 20:12:31 +0000").unwrap();
        assert_eq!(ms, 1_438_287_151_000);
        assert_eq!(format_date(ms), "Thu, 30 Jul 2015 20:12:31 +0000");
        assert_eq!(day(ms), "2015-07-30");
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn statuses_map_onto_ours() {
        for s in ["queued", "accepted", "scheduled", "sending", "sent"] {
            assert_eq!(classify_status(s), StatusClass::Intermediate, "{s}");
        }
        assert_eq!(classify_status("delivered"), StatusClass::Delivered);
        assert_eq!(classify_status("read"), StatusClass::Delivered);
        assert_eq!(classify_status("undelivered"), StatusClass::NotDelivered);
        assert_eq!(classify_status("failed"), StatusClass::NotDelivered);
        assert_eq!(classify_status("received"), StatusClass::Other);
        assert_eq!(
            status_detail("undelivered", Some(30003), Some("Unreachable")),
            "twilio undelivered (error 30003: Unreachable)"
        );
    }

    #[test]
    fn errors_are_classified_by_code_then_status() {
        assert_eq!(classify_error(400, Some(21211), None), Failure::Permanent);
        assert_eq!(classify_error(400, Some(21408), None), Failure::Permanent);
        assert_eq!(classify_error(400, Some(21614), None), Failure::Permanent);
        assert_eq!(classify_error(400, Some(63016), None), Failure::Permanent);
        assert_eq!(classify_error(400, Some(21610), None), Failure::OptedOut);
        assert_eq!(classify_error(401, Some(20003), None), Failure::StopGateway);
        assert_eq!(classify_error(403, Some(30002), None), Failure::StopGateway);
        assert_eq!(classify_error(401, None, None), Failure::StopGateway);
        assert_eq!(
            classify_error(429, Some(20429), Some("7")),
            Failure::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            classify_error(429, None, Some("soon")),
            Failure::RateLimited { retry_after: None }
        );
        assert_eq!(classify_error(503, None, None), Failure::Temporary);
        assert_eq!(classify_error(500, Some(20500), None), Failure::Temporary);
    }

    #[test]
    fn resources_errors_and_pages_parse() {
        let m = parse_message(br#"{"sid":"SM1","status":"queued","to":"whatsapp:+1","error_code":null,"date_created":"Thu, 30 Jul 2015 20:12:31 +0000","extra":{"x":1}}"#).unwrap();
        assert_eq!(m.sid, "SM1");
        assert_eq!(m.created_ms(), Some(1_438_287_151_000));
        assert_eq!(
            parse_message(br#"{"status":"queued"}"#),
            Err(ParseError::NoSid)
        );
        let e = parse_error(br#"{"code":21211,"message":"Invalid 'To' Phone Number","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#).unwrap();
        assert_eq!(e.code, Some(21211));
        assert_eq!(parse_error(b"<html>"), None);
        let page = parse_page(br#"{"messages":[{"sid":"SM1"}],"next_page_uri":null}"#).unwrap();
        assert_eq!(page.messages.len(), 1);
        assert_eq!(page.next_page_uri, None);
    }

    #[test]
    fn webhooks_are_told_apart() {
        let status = vec![
            p("MessageSid", "SM1"),
            p("MessageStatus", "undelivered"),
            p("SmsStatus", "undelivered"),
            p("ErrorCode", "30003"),
        ];
        match parse_webhook(&status, Some("m=42")).unwrap() {
            Webhook::Status(s) => {
                assert_eq!(s.status, "undelivered");
                assert_eq!(s.error_code, Some(30003));
                assert_eq!(s.message_id, Some(42));
            }
            other => panic!("{other:?}"),
        }
        let inbound = vec![
            p("MessageSid", "SM2"),
            p("SmsStatus", "received"),
            p("From", "whatsapp:+59899000001"),
            p("To", "whatsapp:+15005550006"),
            p("Body", "hola"),
            p("NumMedia", "0"),
        ];
        match parse_webhook(&inbound, None).unwrap() {
            Webhook::Incoming(i) => {
                assert_eq!(i.from, "+59899000001");
                assert_eq!(i.to, "+15005550006");
                assert!(i.whatsapp);
                assert_eq!(i.body, "hola");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_webhook(&[p("Body", "x")], None).is_err());
    }

    #[test]
    fn the_message_in_doubt_is_found_by_number_body_and_time() {
        let m = |sid: &str, to: &str, body: &str, at: &str, dir: &str| Message {
            sid: sid.into(),
            to: Some(to.into()),
            body: Some(body.into()),
            date_created: Some(at.into()),
            direction: Some(dir.into()),
            ..Default::default()
        };
        let list = vec![
            m(
                "SM3",
                "+1",
                "hi",
                "Thu, 30 Jul 2015 20:12:40 +0000",
                "outbound-api",
            ),
            m(
                "SM2",
                "+1",
                "hi",
                "Thu, 30 Jul 2015 20:12:35 +0000",
                "outbound-api",
            ),
            m(
                "SM1",
                "+1",
                "hi",
                "Thu, 30 Jul 2015 20:12:00 +0000",
                "outbound-api",
            ),
            m(
                "SM0",
                "+1",
                "hi",
                "Thu, 30 Jul 2015 20:12:36 +0000",
                "inbound",
            ),
        ];
        let since = 1_438_287_151_000;
        assert_eq!(
            find_sent(&list, "+1", Some("hi"), since).unwrap().sid,
            "SM2"
        );
        assert!(find_sent(&list, "+1", Some("other"), since).is_none());
        assert!(find_sent(&list, "+2", None, since).is_none());
        assert_eq!(find_sent(&list, "+1", None, since).unwrap().sid, "SM2");
    }

    proptest! {
        #[test]
        fn no_panic_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_message(&body);
            let _ = parse_page(&body);
            let _ = parse_error(&body);
            let params = parse_form(&body);
            let _ = parse_webhook(&params, std::str::from_utf8(&body).ok());
            let s = String::from_utf8_lossy(&body);
            let _ = parse_date(&s);
            let _ = verify("t", &s, &params, &s);
            let _ = classify_status(&s);
            let _ = classify_error(400, None, Some(&s));
        }

        #[test]
        fn a_signature_verifies_and_any_change_breaks_it(
            url in "https://[a-z]{1,10}\\.example/[a-z?=&]{0,20}",
            params in proptest::collection::vec(("[A-Za-z]{1,8}", ".{0,20}"), 0..6),
            token in "[a-f0-9]{32}",
        ) {
            let params: Vec<(String, String)> = params;
            let sig = signature(&token, &url, &params);
            prop_assert!(verify(&token, &url, &params, &sig));
            let other = format!("{url}x");
            prop_assert!(!verify(&token, &other, &params, &sig));
        }
    }
}
