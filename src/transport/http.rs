//! `http`: a provider (an aggregator, or a gateway's HTTP API) that takes
//! one templated HTTP request per message. The templates, the reading of
//! replies and of callbacks are pure code in `smsgate_proto::http_api`;
//! this file makes the requests and turns what comes back into sends,
//! delivery reports and received messages.
//!
//! A provider has no ports: its `ports` are logical channels, each sending
//! one message at a time, so `ports` is how many requests may be in flight
//! and the dialers' pacing and round robin work as on a gateway.
//!
//! After a crash it cannot be asked what left (no provider here promises a
//! lookup by our id), so a message in doubt ends UNKNOWN, or is resent
//! with the dialer's `resend_unknown`, as on a modem.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smsgate_proto::http_api::{self, Fields, Place, Values, Verdict};

use super::{
    Accepted, BoxFuture, Capabilities, Event, Events, Outbound, PortHealth, Received, Reconciled,
    SendError, Transport, TransportError, WebhookReply, WebhookRequest,
};
use crate::config::{HttpAuth, HttpBody, HttpPoll, HttpReports, HttpSettings};

/// After refused credentials, the provider's channels are unusable this
/// long; then the next send tries again (and the breaker's probe says so).
const AUTH_HOLD: Duration = Duration::from_secs(60);
/// The most of a reply read: a provider's answer is a status and an id.
const REPLY_MAX: usize = 256 * 1024;

pub fn capabilities(ports: u32, s: &HttpSettings) -> Capabilities {
    Capabilities {
        ports,
        text_limit: None,
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: None,
        receives: s.inbound.is_some(),
        // A status poll follows what an earlier run sent, too.
        resume_window: s
            .reports
            .as_ref()
            .and_then(|r| r.poll.as_ref())
            .map(|p| p.window),
        whatsapp: false,
    }
}

pub struct HttpTransport {
    name: String,
    ports: u32,
    s: HttpSettings,
    client: reqwest::Client,
    events: Events,
    default_country: String,
    /// When and why the provider last refused our credentials.
    auth: super::provider::AuthHold,
    received: AtomicU64,
    /// Sent messages whose final report a status poll still waits for,
    /// by the provider's id.
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    message_id: i64,
    since: Instant,
}

impl HttpTransport {
    pub fn new(
        name: &str,
        ports: u32,
        s: &HttpSettings,
        events: Events,
        default_country: &str,
    ) -> Result<Self, TransportError> {
        let client = super::provider::client(name, s.timeout, ports)?;
        Ok(Self {
            name: name.to_string(),
            ports,
            s: s.clone(),
            client,
            events,
            default_country: default_country.to_string(),
            auth: super::provider::AuthHold::new(AUTH_HOLD),
            received: AtomicU64::new(0),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The transport, and with `reports.poll_url` its status poller (which
    /// takes over what an earlier run sent and still awaits), until the
    /// gateway stops.
    pub fn start(
        name: &str,
        ports: u32,
        s: &HttpSettings,
        ctx: super::BuildContext,
    ) -> Result<Arc<Self>, TransportError> {
        let t = Arc::new(Self::new(name, ports, s, ctx.events, &ctx.default_country)?);
        if let Some(poll) = s.reports.as_ref().and_then(|r| r.poll.clone()) {
            let now_ms = crate::now_ms();
            if let Ok(mut p) = t.pending.lock() {
                for a in ctx.awaiting {
                    let age = Duration::from_millis(now_ms.saturating_sub(a.sent_at).max(0) as u64);
                    if age < poll.window {
                        let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                        p.insert(
                            a.gateway_ref,
                            Pending {
                                message_id: a.message_id,
                                since,
                            },
                        );
                    }
                }
            }
            tokio::spawn(t.clone().poll_reports(poll, ctx.stop.clone()));
        }
        Ok(t)
    }

    /// Every `poll.every`, asks for the status of each message still
    /// awaiting its final report, one request at a time.
    async fn poll_reports(
        self: Arc<Self>,
        poll: HttpPoll,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + poll.every, poll.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let due: Vec<(String, Pending)> = match self.pending.lock() {
                Ok(mut p) => {
                    p.retain(|_, x| x.since.elapsed() < poll.window);
                    p.iter().map(|(k, v)| (k.clone(), *v)).collect()
                }
                Err(_) => return,
            };
            for (gateway_ref, p) in due {
                if stop.is_cancelled() {
                    return;
                }
                if let Some(ev) = self.poll_one(&poll, &gateway_ref, p).await {
                    if let Ok(mut m) = self.pending.lock() {
                        m.remove(&gateway_ref);
                    }
                    if self.events.send_waiting(ev).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn poll_one(&self, poll: &HttpPoll, gateway_ref: &str, p: Pending) -> Option<Event> {
        let rep = self.s.reports.as_ref()?;
        let message_id = p.message_id.to_string();
        let values = Values {
            message_id: &message_id,
            provider_id: gateway_ref,
            ..self.values()
        };
        let url = poll.url.render_url(&values).ok()?;
        let (rb, _) = self.common(self.client.get(url), &values).ok()?;
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(gateway = %self.name, error = %self.clean(&e.without_url().to_string()), "status poll failed; asked again next round");
                return None;
            }
        };
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.ok()?;
        if !status.is_success() {
            tracing::debug!(gateway = %self.name, status = status.as_u16(), "status poll answered with an error; asked again next round");
            return None;
        }
        let fields = Fields::parse(content_type.as_deref(), &body).ok()?;
        let state = fields.get(&rep.status_field)?;
        self.report_event(rep, gateway_ref.to_string(), &state, &fields)
    }

    /// A report's event when `status` is final (delivered or undelivered).
    fn report_event(
        &self,
        rep: &HttpReports,
        gateway_ref: String,
        status: &str,
        fields: &Fields,
    ) -> Option<Event> {
        let is = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(status));
        let delivered = if is(&rep.delivered) {
            true
        } else if is(&rep.undelivered) {
            false
        } else {
            tracing::debug!(gateway = %self.name, id = %gateway_ref, status = %status, "report with a status that is not final; ignored");
            return None;
        };
        let detail = rep
            .detail_field
            .as_ref()
            .and_then(|f| fields.get(f))
            .map_or(status.to_string(), |d| format!("{status}: {d}"));
        Some(Event::Delivered {
            gateway: self.name.clone(),
            gateway_ref,
            delivered,
            detail: self.clean(&detail),
        })
    }

    /// The values every template of this provider shares.
    fn values(&self) -> Values<'_> {
        Values {
            sender: &self.s.sender,
            user: &self.s.user,
            password: self.s.password.as_ref().map_or("", |p| p.expose()),
            token: self.s.token.as_ref().map_or("", |p| p.expose()),
            ..Values::default()
        }
    }

    /// Headers and authentication, on a send or a status poll.
    fn common(
        &self,
        mut rb: reqwest::RequestBuilder,
        values: &Values<'_>,
    ) -> Result<(reqwest::RequestBuilder, bool), http_api::TemplateError> {
        let mut has_type = false;
        for (name, t) in &self.s.headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            rb = rb.header(name, t.render(Place::Header, values)?);
        }
        rb = match self.s.auth {
            HttpAuth::None => rb,
            HttpAuth::Basic => rb.basic_auth(&self.s.user, Some(values.password)),
            HttpAuth::Bearer => rb.bearer_auth(values.token),
        };
        Ok((rb, has_type))
    }

    fn secrets(&self) -> Vec<&str> {
        [&self.s.password, &self.s.token]
            .into_iter()
            .flatten()
            .map(|s| s.expose())
            .collect()
    }

    /// A reason fit for the message's record and the journal: no secret.
    fn clean(&self, reason: &str) -> String {
        http_api::redact(reason, &self.secrets())
    }

    /// The request for one message: URL, headers, body.
    fn request(&self, msg: &Outbound) -> Result<reqwest::RequestBuilder, SendError> {
        let number = self.s.number_format.format(&msg.to);
        let message_id = msg.message_id.to_string();
        let port = msg.port.to_string();
        let port1 = (msg.port + 1).to_string();
        let values = Values {
            number: &number,
            text: &msg.text,
            message_id: &message_id,
            port: &port,
            port1: &port1,
            ..self.values()
        };
        let permanent = |e: http_api::TemplateError| SendError::Permanent {
            reason: format!("the message cannot be written into the request: {e}"),
        };
        let url = self.s.url.render_url(&values).map_err(permanent)?;
        let (mut rb, has_type) = self
            .common(self.client.request(self.s.method.clone(), url), &values)
            .map_err(permanent)?;
        let (body, content_type) = match &self.s.body {
            HttpBody::None => return Ok(rb),
            HttpBody::Form(t) => (
                t.render(Place::Form, &values).map_err(permanent)?,
                "application/x-www-form-urlencoded",
            ),
            HttpBody::Json(t) => (
                t.render(Place::Json, &values).map_err(permanent)?,
                "application/json",
            ),
        };
        if !has_type {
            rb = rb.header(http::header::CONTENT_TYPE, content_type);
        }
        Ok(rb.body(body))
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
        let rb = self.request(msg)?;
        let resp = match rb.send().await {
            Ok(r) => r,
            // Never the URL in words: it may hold the password.
            Err(e) if e.is_connect() => {
                return Err(SendError::Temporary {
                    reason: self.clean(&format!(
                        "cannot connect to the provider: {}",
                        super::provider::words(e)
                    )),
                });
            }
            Err(e) if e.is_timeout() => {
                return Err(SendError::Unknown {
                    reason: format!(
                        "no answer from the provider within {} ms",
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
                reason: self.clean(&format!(
                    "the provider's answer (HTTP {status}) broke off: {e}"
                )),
            })?;
        match http_api::judge(&self.s.reply, status, &body) {
            Verdict::Accepted { id } => {
                self.auth.accepted();
                let gateway_ref = match id {
                    Some(id) => id,
                    None => {
                        if self.s.reply.id_pointer.is_some() || self.s.reply.id_pattern.is_some() {
                            tracing::warn!(gateway = %self.name, message = msg.message_id, "the provider took the message but its answer has no id where id_pointer/id_pattern say; our message id stands for it");
                        }
                        message_id_ref(msg.message_id)
                    }
                };
                if self.s.reports.as_ref().is_some_and(|r| r.poll.is_some()) {
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(
                            gateway_ref.clone(),
                            Pending {
                                message_id: msg.message_id,
                                since: Instant::now(),
                            },
                        );
                    }
                }
                Ok(Accepted { gateway_ref })
            }
            Verdict::Temporary { reason } => Err(SendError::Temporary {
                reason: self.clean(&reason),
            }),
            Verdict::Permanent { reason } => Err(SendError::Permanent {
                reason: self.clean(&reason),
            }),
            Verdict::Auth { reason } => {
                let reason = self.clean(&reason);
                tracing::error!(gateway = %self.name, reason = %reason, "the provider refused our credentials: its channels stop until they are accepted again");
                self.auth.refuse(&reason);
                Err(SendError::Auth { reason })
            }
        }
    }

    fn callback(&self, fields: &Fields) -> Result<(usize, Option<Event>), TransportError> {
        if let Some(inb) = &self.s.inbound {
            if let (Some(from), Some(text)) =
                (fields.get(&inb.from_field), fields.get(&inb.text_field))
            {
                let to = inb.to_field.as_ref().and_then(|f| fields.get(f));
                let n = self.received.fetch_add(1, Ordering::Relaxed);
                let source_key = match inb.id_field.as_ref().and_then(|f| fields.get(f)) {
                    Some(id) => format!("http:{id}"),
                    // Without an id a callback sent twice is two messages.
                    None => format!("http:{}:{n}", crate::now_ms()),
                };
                let number = smsgate_proto::sms::phone::normalise(&from, &self.default_country)
                    .ok()
                    .map(|p| p.into_string());
                let recipient = to.map(|t| {
                    smsgate_proto::sms::phone::normalise(&t, &self.default_country)
                        .map(|p| p.into_string())
                        .unwrap_or(t)
                });
                return Ok((
                    1,
                    Some(Event::Inbound(Received {
                        gateway: self.name.clone(),
                        // A provider's messages all arrive on its first
                        // channel: `did_ports` name it "<name>:0", or
                        // better our number (`to_field`).
                        port: Some(0),
                        source_key,
                        sender: from,
                        number,
                        recipient,
                        text,
                        sent_at: None,
                    })),
                ));
            }
        }
        if let Some(rep) = &self.s.reports {
            if let Some(id) = rep.id_field.as_ref().and_then(|f| fields.get(f)) {
                let status = fields.get(&rep.status_field).unwrap_or_default();
                let event = self.report_event(rep, id.clone(), &status, fields);
                if event.is_some() {
                    if let Ok(mut p) = self.pending.lock() {
                        p.remove(&id);
                    }
                }
                return Ok((1, event));
            }
        }
        let mut wanted = Vec::new();
        if let Some(f) = self.s.reports.as_ref().and_then(|r| r.id_field.as_ref()) {
            wanted.push(format!("a delivery report needs {f:?}"));
        }
        if let Some(i) = &self.s.inbound {
            wanted.push(format!(
                "a received message needs {:?} and {:?}",
                i.from_field, i.text_field
            ));
        }
        if wanted.is_empty() {
            return Err(TransportError::NotTaken(format!(
                "provider {} takes no callbacks: it has no [gateway.inbound], and no [gateway.reports] with an id_field",
                self.name
            )));
        }
        Err(TransportError::NotUnderstood(format!(
            "the callback has none of the configured fields ({})",
            wanted.join("; ")
        )))
    }
}

/// The reference of a message whose provider gives no id of its own.
pub fn message_id_ref(message_id: i64) -> String {
    message_id.to_string()
}

impl Transport for HttpTransport {
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
        // Not asked (capabilities say so): a provider cannot be asked.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        self.auth.health(self.ports, port, None)
    }

    /// A provider cannot be asked without sending: after refused
    /// credentials the breaker waits [`AUTH_HOLD`], then the next send is
    /// the test.
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(self.auth.probe()))
    }

    fn accept_webhook<'a>(
        &'a self,
        request: WebhookRequest,
    ) -> BoxFuture<'a, Result<WebhookReply, TransportError>> {
        Box::pin(std::future::ready(self.take_push(request)))
    }
}

impl HttpTransport {
    fn take_push(&self, request: WebhookRequest) -> Result<WebhookReply, TransportError> {
        let content_type = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let fields = Fields::parse(content_type, &request.body).map_err(|e| {
            tracing::warn!(gateway = %self.name, error = %e, "callback not understood");
            TransportError::NotUnderstood(e.to_string())
        })?;
        let (n, event) = self.callback(&fields)?;
        if let Some(ev) = event {
            let Some(mut room) = self.events.reserve(1) else {
                return Err(TransportError::Busy(format!(
                    "provider {}: smsgate's event queue is full; call again later",
                    self.name
                )));
            };
            let _ = room.send(ev);
        }
        Ok(WebhookReply {
            status: http::StatusCode::OK,
            body: serde_json::json!({"ok": true, "events": n}),
            raw: None,
            events: n,
        })
    }
}
