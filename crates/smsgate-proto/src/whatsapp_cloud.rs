//! Meta's WhatsApp Business Cloud API, sans IO: the send bodies, the reading
//! of its replies and error objects, what each error code means for us, the
//! webhook verification handshake, the `X-Hub-Signature-256` check, and the
//! webhook events (received messages and statuses).
//!
//! Numbers: Meta writes a customer as digits without '+' (its `wa_id`); the
//! rest of smsgate writes E.164 with '+'. The conversion happens here only.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::whatsapp_rules::MessageTemplate;

type HmacSha256 = Hmac<Sha256>;

/// The header Meta signs its webhooks with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// `+59899123456` → `59899123456`: Meta's form of a number.
pub fn to_wa_id(e164: &str) -> String {
    e164.chars().filter(char::is_ascii_digit).collect()
}

/// `59899123456` → `+59899123456`; None when it holds no digit or
/// anything but digits (and one leading '+').
pub fn from_wa_id(wa_id: &str) -> Option<String> {
    let d = wa_id.trim().trim_start_matches('+');
    (!d.is_empty() && d.len() <= 20 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("+{d}"))
}

/// The body of a free-text message.
pub fn text_body(to_e164: &str, text: &str) -> String {
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to_wa_id(to_e164),
        "type": "text",
        "text": {"preview_url": false, "body": text},
    })
    .to_string()
}

/// The language a template goes in when none was given.
pub const DEFAULT_LANGUAGE: &str = "en_US";

/// The body of a template message: its name, language and body parameters
/// in the order of `variables`.
pub fn template_body(to_e164: &str, t: &MessageTemplate) -> String {
    let mut template = json!({
        "name": t.name,
        "language": {"code": t.language.as_deref().unwrap_or(DEFAULT_LANGUAGE)},
    });
    if !t.variables.is_empty() {
        let params: Vec<Value> = t
            .variables
            .iter()
            .map(|v| json!({"type": "text", "text": v}))
            .collect();
        template["components"] = json!([{"type": "body", "parameters": params}]);
    }
    json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to_wa_id(to_e164),
        "type": "template",
        "template": template,
    })
    .to_string()
}

/// Meta's error object (`{"error": {...}}`), what of it we keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiError {
    pub message: String,
    pub kind: String,
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub details: String,
    pub fbtrace_id: String,
}

impl ApiError {
    /// `131047 Re-engagement message (details...)`, for a message's record.
    pub fn describe(&self) -> String {
        let mut s = match self.code {
            Some(c) => format!("Meta error {c}"),
            None => "Meta error".to_string(),
        };
        if let Some(sc) = self.subcode {
            s.push_str(&format!("/{sc}"));
        }
        if !self.message.is_empty() {
            s.push_str(": ");
            s.push_str(&clip(&self.message, 300));
        }
        if !self.details.is_empty() && self.details != self.message {
            s.push_str(" (");
            s.push_str(&clip(&self.details, 300));
            s.push(')');
        }
        s
    }
}

fn clip(s: &str, max: usize) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() <= max {
        s
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

fn str_at(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default()
}

fn int_at(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The error object of a reply, when it has one.
pub fn parse_error(body: &[u8]) -> Option<ApiError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    if !e.is_object() {
        return None;
    }
    Some(ApiError {
        message: str_at(e, "message"),
        kind: str_at(e, "type"),
        code: int_at(e, "code"),
        subcode: int_at(e, "error_subcode"),
        details: e
            .get("error_data")
            .map(|d| str_at(d, "details"))
            .unwrap_or_default(),
        fbtrace_id: str_at(e, "fbtrace_id"),
    })
}

/// What a send's reply means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Taken: Meta's message id (`wamid....`).
    Accepted { id: String },
    /// The message cannot go, anywhere, as it is.
    Permanent { reason: String },
    /// Try again later (rate limits, Meta's own trouble).
    Temporary { reason: String },
    /// The token or the account is refused: every channel stops.
    Auth { reason: String },
    /// A success without a message id: it may have been taken.
    Unknown { reason: String },
}

/// What an error code means for the message and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Permanent,
    Temporary,
    Auth,
}

/// Meta's codes (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
pub fn classify(http_status: u16, code: Option<i64>) -> Class {
    match code {
        // Access token expired or invalid, permissions, account locked or
        // restricted, policy blocks on the account.
        Some(0 | 190 | 10 | 200..=299 | 131031 | 368 | 3 | 131005) => Class::Auth,
        // Pair rate limit, throughput, spam rate limit, app rate limits,
        // Meta's temporary trouble.
        Some(131056 | 130429 | 131048 | 80007 | 4 | 17 | 32 | 613 | 1 | 2 | 131000 | 131016) => {
            Class::Temporary
        }
        // Outside the window, undeliverable, unsupported type, invalid
        // parameter, templates (132000-132999), recipient not a WhatsApp
        // user, and the rest of the 13xxxx message errors.
        Some(131047 | 131026 | 131051 | 100 | 132000..=132999 | 131008 | 131009 | 131021) => {
            Class::Permanent
        }
        _ if http_status == 429 => Class::Temporary,
        _ if http_status >= 500 => Class::Temporary,
        _ if http_status == 401 => Class::Auth,
        Some(_) => Class::Permanent,
        None if (400..500).contains(&http_status) => Class::Permanent,
        None => Class::Temporary,
    }
}

/// Reads a send's reply: HTTP status and body.
pub fn judge(http_status: u16, body: &[u8]) -> Verdict {
    if (200..300).contains(&http_status) {
        let id = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
            v.get("messages")?
                .as_array()?
                .first()?
                .get("id")?
                .as_str()
                .map(str::to_string)
        });
        return match id {
            Some(id) if !id.is_empty() && id.len() <= 512 => Verdict::Accepted { id },
            // Taken or not: Meta said yes without saying what. Sending
            // again could send twice.
            _ => Verdict::Unknown {
                reason: format!("HTTP {http_status} without a message id in the reply"),
            },
        };
    }
    let err = parse_error(body);
    let reason = match &err {
        Some(e) => format!("HTTP {http_status}, {}", e.describe()),
        None => format!("HTTP {http_status} without Meta's error object"),
    };
    match classify(http_status, err.as_ref().and_then(|e| e.code)) {
        Class::Permanent => Verdict::Permanent { reason },
        Class::Temporary => Verdict::Temporary { reason },
        Class::Auth => Verdict::Auth { reason },
    }
}

/// A webhook verification GET, answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// The token matched: answer 200 with this text.
    Challenge(String),
    /// It is a handshake, with the wrong token (or mode): answer 403.
    Refused,
    /// The query has no `hub.mode`: not a handshake.
    NotOne,
}

/// `hub.mode=subscribe&hub.verify_token=...&hub.challenge=...` against our
/// verify token, compared in constant time.
pub fn handshake(query: &str, verify_token: &str) -> Handshake {
    let mut mode = None;
    let mut token = None;
    let mut challenge = None;
    for (k, v) in form_pairs(query) {
        match k.as_str() {
            "hub.mode" => mode = Some(v),
            "hub.verify_token" => token = Some(v),
            "hub.challenge" => challenge = Some(v),
            _ => {}
        }
    }
    let Some(mode) = mode else {
        return Handshake::NotOne;
    };
    let token_ok = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(verify_token.as_bytes())));
    match challenge {
        Some(c) if mode == "subscribe" && token_ok && c.len() <= 1024 => Handshake::Challenge(c),
        _ => Handshake::Refused,
    }
}

/// `a=b&c=d` percent-decoded ('+' is a space), without panics on any input.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
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
    String::from_utf8_lossy(&out).into_owned()
}

/// `sha256=<hex>` for `body` with the app secret: what Meta sends.
pub fn sign(app_secret: &[u8], body: &[u8]) -> String {
    let mut m = HmacSha256::new_from_slice(app_secret).expect("HMAC accepts any key length");
    m.update(body);
    let mac = m.finalize().into_bytes();
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request has no X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body and the app secret")]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` over the raw bytes, in constant time.
pub fn verify(app_secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let h = header.ok_or(SignatureError::Missing)?.trim();
    let hex = h
        .strip_prefix("sha256=")
        .filter(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(SignatureError::Malformed)?;
    let want = sign(app_secret, body);
    let got = format!("sha256={}", hex.to_ascii_lowercase());
    if bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A message a customer sent us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Our number's id at Meta.
    pub phone_number_id: String,
    /// Our number as Meta shows it (digits, maybe with spaces).
    pub display_phone_number: String,
    /// The customer's wa_id (digits).
    pub from: String,
    /// Meta's id of it (`wamid...`): the same on every retry.
    pub id: String,
    /// Unix seconds, as Meta wrote it.
    pub timestamp: String,
    /// The text, or a readable stand-in for media (`[image] caption`).
    pub text: String,
}

/// Meta's word on a message we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub phone_number_id: String,
    /// The wamid of our message.
    pub id: String,
    pub status: String,
    pub recipient_id: String,
    /// `code title: message` of each error, for a failed one.
    pub errors: String,
}

/// What a status means for our message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusOutcome {
    /// Final: delivered (read and played imply it) or not.
    Final { delivered: bool, detail: String },
    /// Not a change (sent, or a status we do not know): history only.
    Noted { detail: String },
}

impl StatusUpdate {
    /// sent → noted; delivered, read, played → delivered (read may come
    /// with no "delivered" before it, and statuses come in any order: the
    /// first final one wins on our side); failed → not delivered.
    pub fn outcome(&self) -> StatusOutcome {
        let detail = if self.errors.is_empty() {
            format!("whatsapp {}", self.status)
        } else {
            format!("whatsapp {}: {}", self.status, self.errors)
        };
        match self.status.as_str() {
            "delivered" | "read" | "played" => StatusOutcome::Final {
                delivered: true,
                detail,
            },
            "failed" => StatusOutcome::Final {
                delivered: false,
                detail,
            },
            _ => StatusOutcome::Noted { detail },
        }
    }
}

/// One webhook's content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notification {
    pub messages: Vec<Incoming>,
    pub statuses: Vec<StatusUpdate>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a WhatsApp Business Account notification (object {0:?})")]
    NotWhatsApp(String),
}

/// The text that stands for a message: its text, or for other types a
/// bracketed type and whatever readable part it has, so nothing is dropped.
fn message_text(m: &Value) -> String {
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("unknown");
    let part = |obj: &str, key: &str| -> String {
        m.get(obj)
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let tagged = |extra: String| -> String {
        let extra = extra.trim().to_string();
        if extra.is_empty() {
            format!("[{kind}]")
        } else {
            format!("[{kind}] {extra}")
        }
    };
    match kind {
        "text" => part("text", "body"),
        "image" | "video" | "document" => {
            let mut s = part(kind, "caption");
            if s.is_empty() {
                s = part(kind, "filename");
            }
            tagged(s)
        }
        "button" => tagged(part("button", "text")),
        "reaction" => tagged(part("reaction", "emoji")),
        "location" => {
            let loc = m.get("location");
            let num = |k: &str| {
                loc.and_then(|l| l.get(k))
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            let name = loc
                .and_then(|l| l.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            tagged(format!("{},{} {name}", num("latitude"), num("longitude")))
        }
        "interactive" => {
            let i = m.get("interactive");
            let title = i
                .and_then(|i| i.get("button_reply").or_else(|| i.get("list_reply")))
                .and_then(|r| r.get("title"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            tagged(title.to_string())
        }
        _ => tagged(String::new()),
    }
}

/// Reads a webhook body. Unknown fields and changes are skipped; a message
/// without an id or a sender is skipped (it cannot be stored once).
pub fn parse_webhook(body: &[u8]) -> Result<Notification, WebhookError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    let object = v.get("object").and_then(Value::as_str).unwrap_or_default();
    if object != "whatsapp_business_account" {
        return Err(WebhookError::NotWhatsApp(clip(object, 64)));
    }
    let mut out = Notification::default();
    let empty = Vec::new();
    let arr = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    for entry in v.get("entry").and_then(Value::as_array).unwrap_or(&empty) {
        for change in entry
            .get("changes")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
        {
            let Some(value) = change.get("value") else {
                continue;
            };
            let meta = value.get("metadata");
            let phone_number_id = meta
                .map(|m| match m.get("phone_number_id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                })
                .unwrap_or_default();
            let display = meta
                .map(|m| str_at(m, "display_phone_number"))
                .unwrap_or_default();
            for m in arr(value.get("messages")) {
                let (from, id) = (str_at(&m, "from"), str_at(&m, "id"));
                if from.is_empty() || id.is_empty() {
                    continue;
                }
                out.messages.push(Incoming {
                    phone_number_id: phone_number_id.clone(),
                    display_phone_number: display.clone(),
                    from,
                    id,
                    timestamp: str_at(&m, "timestamp"),
                    text: message_text(&m),
                });
            }
            for s in arr(value.get("statuses")) {
                let id = str_at(&s, "id");
                if id.is_empty() {
                    continue;
                }
                let errors: Vec<String> = arr(s.get("errors"))
                    .iter()
                    .map(|e| {
                        let code = int_at(e, "code").map(|c| c.to_string()).unwrap_or_default();
                        let title = str_at(e, "title");
                        let msg = str_at(e, "message");
                        let mut t = format!("{code} {title}").trim().to_string();
                        if !msg.is_empty() && msg != title {
                            t.push_str(": ");
                            t.push_str(&msg);
                        }
                        clip(&t, 300)
                    })
                    .collect();
                out.statuses.push(StatusUpdate {
                    phone_number_id: phone_number_id.clone(),
                    id,
                    status: str_at(&s, "status"),
                    recipient_id: str_at(&s, "recipient_id"),
                    errors: errors.join("; "),
                });
            }
        }
    }
    Ok(out)
}

/// `v21.0`: what `api_version` must look like.
pub fn valid_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    let num = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    num(major) && num(minor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bodies_carry_digits_and_escape_the_text() {
        let b: Value =
            serde_json::from_str(&text_body("+59899123456", "hola \"ñ\" 😀\n&")).unwrap();
        assert_eq!(b["to"], "59899123456");
        assert_eq!(b["type"], "text");
        assert_eq!(b["recipient_type"], "individual");
        assert_eq!(b["text"]["body"], "hola \"ñ\" 😀\n&");
        assert_eq!(b["text"]["preview_url"], false);
        let t = MessageTemplate {
            name: "order_update".into(),
            language: Some("es".into()),
            variables: vec!["Ana".into(), "12".into()],
        };
        let b: Value = serde_json::from_str(&template_body("+1555", &t)).unwrap();
        assert_eq!(b["type"], "template");
        assert_eq!(b["template"]["name"], "order_update");
        assert_eq!(b["template"]["language"]["code"], "es");
        assert_eq!(b["template"]["components"][0]["type"], "body");
        assert_eq!(
            b["template"]["components"][0]["parameters"][1],
            json!({"type": "text", "text": "12"})
        );
        let bare = MessageTemplate {
            name: "hello_world".into(),
            language: None,
            variables: vec![],
        };
        let b: Value = serde_json::from_str(&template_body("+1555", &bare)).unwrap();
        assert!(b["template"].get("components").is_none());
        assert_eq!(b["template"]["language"]["code"], DEFAULT_LANGUAGE);
    }

    #[test]
    fn replies_and_errors_are_classified() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"598","wa_id":"598"}],"messages":[{"id":"wamid.ABC="}]}"#;
        assert_eq!(
            judge(200, ok),
            Verdict::Accepted {
                id: "wamid.ABC=".into()
            }
        );
        let err = |code: i64, status: u16| {
            let body = format!(
                r#"{{"error":{{"message":"m{code}","type":"OAuthException","code":{code},"error_subcode":2494010,"error_data":{{"messaging_product":"whatsapp","details":"d{code}"}},"fbtrace_id":"Ab"}}}}"#
            );
            judge(status, body.as_bytes())
        };
        for c in [131047, 131026, 131051, 132000, 132001, 132012, 100] {
            assert!(matches!(err(c, 400), Verdict::Permanent { .. }), "{c}");
        }
        for c in [131056, 130429, 131048, 80007] {
            assert!(matches!(err(c, 400), Verdict::Temporary { .. }), "{c}");
        }
        for c in [190, 10, 200, 131031, 368] {
            assert!(matches!(err(c, 401), Verdict::Auth { .. }), "{c}");
        }
        assert!(matches!(judge(503, b"<html>"), Verdict::Temporary { .. }));
        assert!(matches!(judge(429, b""), Verdict::Temporary { .. }));
        assert!(matches!(judge(200, b"{}"), Verdict::Unknown { .. }));
        let Verdict::Permanent { reason } = err(131047, 400) else {
            panic!()
        };
        assert_eq!(
            reason,
            "HTTP 400, Meta error 131047/2494010: m131047 (d131047)"
        );
        let e = parse_error(br#"{"error":{"code":"190","message":"x"}}"#).unwrap();
        assert_eq!(e.code, Some(190));
    }

    #[test]
    fn the_handshake_answers_the_challenge_only_to_our_token() {
        let q = "hub.mode=subscribe&hub.verify_token=s%C3%AD+ok&hub.challenge=1158201444";
        assert_eq!(
            handshake(q, "sí ok"),
            Handshake::Challenge("1158201444".into())
        );
        assert_eq!(handshake(q, "other"), Handshake::Refused);
        assert_eq!(
            handshake(
                "hub.mode=unsubscribe&hub.verify_token=t&hub.challenge=1",
                "t"
            ),
            Handshake::Refused
        );
        assert_eq!(
            handshake("hub.mode=subscribe&hub.challenge=1", "t"),
            Handshake::Refused
        );
        assert_eq!(handshake("", "t"), Handshake::NotOne);
        assert_eq!(decode("%"), "%");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("%41%zz"), "A%zz");
    }

    #[test]
    fn signatures_are_over_the_raw_bytes() {
        let body = "{\"text\":\"Año café 😀 ñandú\"}".as_bytes();
        let sig = sign(b"app-secret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 71);
        assert_eq!(verify(b"app-secret", Some(&sig), body), Ok(()));
        assert_eq!(
            verify(
                b"app-secret",
                Some(&sig.to_uppercase().replace("SHA256", "sha256")),
                body
            ),
            Ok(())
        );
        // The same JSON re-serialised with escapes is other bytes.
        let escaped = br#"{"text":"A\u00f1o caf\u00e9 \ud83d\ude00 \u00f1and\u00fa"}"#;
        assert_eq!(
            verify(b"app-secret", Some(&sig), escaped),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&sig), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"app-secret", None, body),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(b"app-secret", Some("sha1=abc"), body),
            Err(SignatureError::Malformed)
        );
        // Known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn webhooks_give_messages_of_every_type_and_statuses() {
        let body = json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"},
                "contacts": [{"profile": {"name": "Ana"}, "wa_id": "59899000001"}],
                "messages": [
                    {"from": "59899000001", "id": "wamid.1", "timestamp": "1700000000", "type": "text", "text": {"body": "Hola ñ 😀"}},
                    {"from": "59899000001", "id": "wamid.2", "timestamp": "1700000001", "type": "image", "image": {"caption": "my cat", "mime_type": "image/jpeg", "id": "m"}},
                    {"from": "59899000001", "id": "wamid.3", "timestamp": "1700000002", "type": "audio", "audio": {"id": "a"}},
                    {"from": "59899000001", "id": "wamid.4", "type": "location", "location": {"latitude": -34.9, "longitude": -56.1, "name": "Montevideo"}},
                    {"from": "59899000001", "id": "wamid.5", "type": "interactive", "interactive": {"type": "button_reply", "button_reply": {"id": "b", "title": "Yes"}}},
                    {"from": "59899000001", "id": "wamid.6", "type": "button", "button": {"text": "Stop promotions", "payload": "x"}},
                    {"id": "wamid.7", "type": "text", "text": {"body": "no sender"}}
                ],
                "statuses": [
                    {"id": "wamid.OUT1", "status": "read", "timestamp": "1", "recipient_id": "59899000001"},
                    {"id": "wamid.OUT2", "status": "failed", "recipient_id": "59899000001",
                     "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}]}
                ]
            }}]}]
        })
        .to_string();
        let n = parse_webhook(body.as_bytes()).unwrap();
        let texts: Vec<&str> = n.messages.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Hola ñ 😀",
                "[image] my cat",
                "[audio]",
                "[location] -34.9,-56.1 Montevideo",
                "[interactive] Yes",
                "[button] Stop promotions"
            ]
        );
        assert_eq!(n.messages[0].phone_number_id, "1234");
        assert_eq!(n.messages[0].display_phone_number, "15550001111");
        assert_eq!(
            from_wa_id(&n.messages[0].from).as_deref(),
            Some("+59899000001")
        );
        assert_eq!(
            n.statuses[0].outcome(),
            StatusOutcome::Final {
                delivered: true,
                detail: "whatsapp read".into()
            }
        );
        assert_eq!(
            n.statuses[1].outcome(),
            StatusOutcome::Final {
                delivered: false,
                detail: "whatsapp failed: 131026 Message undeliverable".into()
            }
        );
        let sent = StatusUpdate {
            status: "sent".into(),
            ..n.statuses[0].clone()
        };
        assert!(matches!(sent.outcome(), StatusOutcome::Noted { .. }));
        assert!(matches!(
            parse_webhook(br#"{"object":"page"}"#),
            Err(WebhookError::NotWhatsApp(_))
        ));
        assert!(matches!(
            parse_webhook(b"\xff"),
            Err(WebhookError::NotJson(_))
        ));
    }

    #[test]
    fn api_versions() {
        assert!(valid_api_version("v21.0"));
        assert!(valid_api_version("v9.10"));
        for bad in ["21.0", "v21", "v.0", "v21.x", "v21.0.1", ""] {
            assert!(!valid_api_version(bad), "{bad}");
        }
        assert_eq!(from_wa_id("+123").as_deref(), Some("+123"));
        assert_eq!(from_wa_id("12a"), None);
        assert_eq!(from_wa_id(""), None);
    }

    proptest! {
        #[test]
        fn no_panic_on_any_bytes(body in proptest::collection::vec(any::<u8>(), 0..512), q in ".{0,64}") {
            let _ = parse_webhook(&body);
            let _ = judge(400, &body);
            let _ = judge(200, &body);
            let _ = parse_error(&body);
            let _ = verify(b"k", std::str::from_utf8(&body).ok(), &body);
            let _ = handshake(&q, "t");
            let _ = from_wa_id(&q);
        }

        #[test]
        fn any_text_survives_the_body(text in ".{0,200}") {
            let b: Value = serde_json::from_str(&text_body("+1", &text)).unwrap();
            prop_assert_eq!(b["text"]["body"].as_str(), Some(text.as_str()));
        }

        #[test]
        fn a_signature_verifies_over_its_own_bytes(body in proptest::collection::vec(any::<u8>(), 0..256), secret in ".{1,32}") {
            let sig = sign(secret.as_bytes(), &body);
            prop_assert_eq!(verify(secret.as_bytes(), Some(&sig), &body), Ok(()));
        }
    }
}
