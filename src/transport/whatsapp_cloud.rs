//! `whatsapp-cloud`: Meta's WhatsApp Business Cloud API, reached directly.
//! Bodies, replies, error codes, the webhook handshake, signature and
//! events are pure code in `smsgate_proto::whatsapp_cloud`; this file makes
//! the requests and turns what Meta posts into events.
//!
//! Its `ports` are logical channels: how many sends may be in flight, each
//! paced by the dialer. WhatsApp's rules (the 24-hour window, templates,
//! the messaging limit) are checked before a send by [`WhatsAppRules`].
//!
//! Meta cannot be asked about a message by our id, so a send whose answer
//! was lost (a timeout after the request left) ends UNKNOWN, or is resent
//! with the dialer's `resend_unknown`, as on the http kind.

use std::time::Duration;

use smsgate_proto::whatsapp_cloud::{self as wa, Handshake, StatusOutcome, Verdict};

use super::whatsapp::WhatsAppRules;
use super::{
    Accepted, BoxFuture, BuildContext, Capabilities, Event, Events, Outbound, PortHealth, Received,
    Reconciled, SendError, StoredAck, Transport, TransportError, WebhookReply, WebhookRequest,
};
use crate::config::WhatsappCloudSettings;

/// After Meta refused our token or account (190, 10, 200, 131031, 368),
/// every channel is unusable this long; then the next send is the test. A
/// new token takes effect at once with a reload.
const AUTH_HOLD: Duration = Duration::from_secs(300);
/// The most of a reply read: Meta answers with ids or an error object.
const REPLY_MAX: usize = 256 * 1024;
/// How long a webhook with messages waits for them to be on disk before
/// it is answered 503 (Meta then sends it again).
const STORE_WAIT: Duration = Duration::from_secs(5);

pub fn capabilities(ports: u32) -> Capabilities {
    Capabilities {
        ports,
        // Meta takes 4096 characters of text; the SMS parts limit does not
        // apply, but one text is one message.
        text_limit: Some(4096),
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: None,
        receives: true,
        resume_window: None,
        whatsapp: true,
    }
}

pub struct WhatsappCloudTransport {
    name: String,
    ports: u32,
    s: WhatsappCloudSettings,
    client: reqwest::Client,
    events: Events,
    rules: WhatsAppRules,
    /// When and why Meta last refused our token or account.
    auth: super::provider::AuthHold,
}

impl WhatsappCloudTransport {
    pub fn start(
        name: &str,
        ports: u32,
        s: &WhatsappCloudSettings,
        ctx: BuildContext,
    ) -> Result<std::sync::Arc<Self>, TransportError> {
        let client = super::provider::client(name, s.timeout, ports)?;
        let rules = WhatsAppRules::new(name, s.messaging_limit, &ctx);
        Ok(std::sync::Arc::new(Self {
            name: name.to_string(),
            ports,
            s: s.clone(),
            client,
            events: ctx.events,
            rules,
            auth: super::provider::AuthHold::new(AUTH_HOLD),
        }))
    }

    /// A reason fit for a message's record and the journal: no secret.
    fn clean(&self, reason: &str) -> String {
        smsgate_proto::http_api::redact(reason, &self.s.secrets())
    }

    async fn send_one(&self, msg: &Outbound) -> Result<Accepted, SendError> {
        if msg.port >= self.ports {
            return Err(SendError::PortUnusable {
                reason: format!(
                    "channel {} does not exist on provider {}",
                    msg.port, self.name
                ),
            });
        }
        if let Some(why) = self.auth.refused() {
            return Err(SendError::Auth { reason: why });
        }
        self.rules.check(msg)?;
        let body = match &msg.template {
            Some(t) => wa::template_body(&msg.to, t),
            None => wa::text_body(&msg.to, &msg.text),
        };
        let sent = self
            .client
            .post(self.s.messages_url())
            .bearer_auth(self.s.access_token.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(SendError::Temporary {
                    reason: self.clean(&format!(
                        "cannot connect to Meta: {}",
                        super::provider::words(e)
                    )),
                });
            }
            Err(e) if e.is_timeout() => {
                return Err(SendError::Unknown {
                    reason: format!(
                        "no answer from Meta within {} ms (the message may have gone; Meta cannot be asked by our id)",
                        self.s.timeout.as_millis()
                    ),
                });
            }
            Err(e) => {
                return Err(SendError::Unknown {
                    reason: self.clean(&format!(
                        "the request failed: {}",
                        super::provider::words(e)
                    )),
                });
            }
        };
        let status = resp.status().as_u16();
        let body = super::provider::read_capped(resp, REPLY_MAX)
            .await
            .map_err(|e| SendError::Unknown {
                reason: self.clean(&format!("Meta's answer (HTTP {status}) broke off: {e}")),
            })?;
        match wa::judge(status, &body) {
            Verdict::Accepted { id } => {
                self.auth.accepted();
                self.rules.sent(msg);
                Ok(Accepted { gateway_ref: id })
            }
            Verdict::Permanent { reason } => Err(SendError::Permanent {
                reason: self.clean(&reason),
            }),
            Verdict::Temporary { reason } => Err(SendError::Temporary {
                reason: self.clean(&reason),
            }),
            Verdict::Unknown { reason } => Err(SendError::Unknown {
                reason: self.clean(&reason),
            }),
            Verdict::Auth { reason } => {
                let reason = format!(
                    "Meta refused the access token or the account ({}); renew access_token_file and reload",
                    self.clean(&reason)
                );
                tracing::error!(gateway = %self.name, reason = %reason, "WhatsApp Cloud API refused our credentials: every channel of the gateway stops until they are accepted again");
                self.auth.refuse(&reason);
                Err(SendError::Auth { reason })
            }
        }
    }

    fn handshake(&self, request: &WebhookRequest) -> Result<WebhookReply, TransportError> {
        let query = request.uri.query().unwrap_or_default();
        match wa::handshake(query, self.s.verify_token.expose()) {
            Handshake::Challenge(c) => {
                tracing::info!(gateway = %self.name, "Meta's webhook verification answered");
                Ok(WebhookReply {
                    status: http::StatusCode::OK,
                    body: serde_json::Value::Null,
                    raw: Some(("text/plain; charset=utf-8", c)),
                    events: 0,
                })
            }
            Handshake::Refused => {
                tracing::warn!(gateway = %self.name, peer = ?request.peer, "webhook verification refused: hub.verify_token is not our verify_token (or hub.mode is not subscribe)");
                Ok(WebhookReply {
                    status: http::StatusCode::FORBIDDEN,
                    body: serde_json::Value::Null,
                    raw: Some((
                        "text/plain; charset=utf-8",
                        "verify token mismatch".into(),
                    )),
                    events: 0,
                })
            }
            Handshake::NotOne => Err(TransportError::NotUnderstood(
                "a GET here is Meta's webhook verification: it needs hub.mode, hub.verify_token and hub.challenge".into(),
            )),
        }
    }

    fn refused(why: &str) -> WebhookReply {
        WebhookReply {
            status: http::StatusCode::FORBIDDEN,
            body: serde_json::json!({"error": "bad_signature", "detail": why}),
            raw: None,
            events: 0,
        }
    }

    async fn notification(&self, request: &WebhookRequest) -> Result<WebhookReply, TransportError> {
        let header = request
            .headers
            .get(wa::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = wa::verify(self.s.app_secret.expose().as_bytes(), header, &request.body) {
            tracing::warn!(gateway = %self.name, peer = ?request.peer, error = %e, "webhook refused: its X-Hub-Signature-256 does not verify with app_secret (wrong app secret, or not from Meta)");
            return Ok(Self::refused(&e.to_string()));
        }
        let n = wa::parse_webhook(&request.body).map_err(|e| {
            tracing::warn!(gateway = %self.name, error = %e, "webhook not understood");
            TransportError::NotUnderstood(e.to_string())
        })?;
        let ours = |id: &str| id.is_empty() || id == self.s.phone_number_id;
        let statuses: Vec<_> = n
            .statuses
            .iter()
            .filter(|s| ours(&s.phone_number_id))
            .collect();
        let messages: Vec<_> = n
            .messages
            .iter()
            .filter(|m| ours(&m.phone_number_id))
            .collect();
        let other = n.statuses.len() + n.messages.len() - statuses.len() - messages.len();
        if other > 0 {
            tracing::warn!(gateway = %self.name, skipped = other, "webhook events for another phone_number_id skipped: give each number's app its own webhook URL");
        }
        let total = statuses.len() + messages.len();
        // Taken whole or not at all, so that an answered 200 never drops
        // what the queue had no room for.
        let Some(mut room) = self.events.reserve(total) else {
            return Err(TransportError::Busy(format!(
                "gateway {}: smsgate's event queue is full; Meta will send it again",
                self.name
            )));
        };
        for s in &statuses {
            let ev = match s.outcome() {
                StatusOutcome::Final { delivered, detail } => Event::Delivered {
                    gateway: self.name.clone(),
                    gateway_ref: s.id.clone(),
                    delivered,
                    detail,
                },
                StatusOutcome::Noted { detail } => Event::Noted {
                    gateway: self.name.clone(),
                    gateway_ref: s.id.clone(),
                    detail,
                },
            };
            let _ = room.send(ev);
        }
        let mut answers = Vec::new();
        for m in &messages {
            let number = wa::from_wa_id(&m.from);
            let written_ms = m
                .timestamp
                .parse::<i64>()
                .ok()
                .and_then(|s| s.checked_mul(1000));
            if let Some(n) = &number {
                match written_ms {
                    Some(at) => self.rules.inbound_at(n, at),
                    None => self.rules.inbound(n),
                }
            }
            let recipient = self
                .s
                .number
                .clone()
                .or_else(|| wa::from_wa_id(&m.display_phone_number.replace([' ', '-'], "")));
            let sent_at = m
                .timestamp
                .parse::<i64>()
                .ok()
                .and_then(|t| jiff::Timestamp::from_second(t).ok())
                .map(|t| t.to_string());
            let (ev, answer) = StoredAck::ask(Received {
                gateway: self.name.clone(),
                port: None,
                source_key: format!("wa:{}", m.id),
                sender: number.clone().unwrap_or_else(|| m.from.clone()),
                number,
                recipient,
                text: m.text.clone(),
                sent_at,
            });
            let _ = room.send(ev);
            answers.push(answer);
        }
        drop(room);
        if !answers.is_empty() && !wait_stored(answers).await {
            return Err(TransportError::Busy(format!(
                "gateway {}: the received messages were not stored in time; Meta will send them again",
                self.name
            )));
        }
        Ok(WebhookReply {
            status: http::StatusCode::OK,
            body: serde_json::json!({"ok": true, "events": total}),
            raw: None,
            events: total,
        })
    }
}

impl Transport for WhatsappCloudTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn ports(&self) -> u32 {
        self.ports
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(self.send_one(msg))
    }

    fn reconcile<'a>(&'a self, _asked: &'a super::Asked) -> BoxFuture<'a, Reconciled> {
        // Not asked (capabilities say so): Meta has no lookup by our id.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        self.auth.health(self.ports, port, self.s.number.clone())
    }

    fn window(&self, number: &str) -> Option<smsgate_proto::whatsapp_rules::WindowState> {
        Some(self.rules.window(number))
    }

    fn messaging_limit(&self) -> Option<(usize, Option<u32>)> {
        Some(self.rules.usage())
    }

    /// Meta cannot be asked without sending: after a refused token the
    /// breaker waits [`AUTH_HOLD`], then the next send is the test.
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(self.auth.probe()))
    }

    fn accept_webhook<'a>(
        &'a self,
        request: WebhookRequest,
    ) -> BoxFuture<'a, Result<WebhookReply, TransportError>> {
        Box::pin(async move {
            if request.method == http::Method::GET {
                self.handshake(&request)
            } else {
                self.notification(&request).await
            }
        })
    }
}

/// Whether every message is on disk within [`STORE_WAIT`].
async fn wait_stored(answers: Vec<super::StoredAnswer>) -> bool {
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    for a in answers {
        if !a.stored_by(deadline).await {
            return false;
        }
    }
    true
}
