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

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use smsgate_proto::http_api::{self, Fields, Place, Values, Verdict};

use super::{
    Accepted, BoxFuture, Capabilities, Event, Events, Outbound, PortHealth, Received, Reconciled,
    SendError, Transport, TransportError, WebhookReply, WebhookRequest,
};
use crate::config::{HttpAuth, HttpBody, HttpSettings};

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
        resume_window: None,
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
    auth_failed: Mutex<Option<(Instant, String)>>,
    received: AtomicU64,
}

impl HttpTransport {
    pub fn new(
        name: &str,
        ports: u32,
        s: &HttpSettings,
        events: Events,
        default_country: &str,
    ) -> Result<Self, TransportError> {
        let setup = |reason: String| TransportError::Setup {
            gateway: name.to_string(),
            reason,
        };
        let tls = crate::tls::client_config(&crate::tls::TlsVerify::System)
            .map_err(|e| setup(format!("cannot set up TLS: {e}")))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .connect_timeout(s.timeout.min(Duration::from_secs(10)))
            .timeout(s.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(ports.max(1) as usize)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("smsgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            ports,
            s: s.clone(),
            client,
            events,
            default_country: default_country.to_string(),
            auth_failed: Mutex::new(None),
            received: AtomicU64::new(0),
        })
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

    fn auth_refused(&self) -> Option<String> {
        let g = self.auth_failed.lock().ok()?;
        g.as_ref()
            .filter(|(at, _)| at.elapsed() < AUTH_HOLD)
            .map(|(_, why)| why.clone())
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
            sender: &self.s.sender,
            message_id: &message_id,
            user: &self.s.user,
            password: self.s.password.as_ref().map_or("", |p| p.expose()),
            token: self.s.token.as_ref().map_or("", |p| p.expose()),
            port: &port,
            port1: &port1,
        };
        let permanent = |e: http_api::TemplateError| SendError::Permanent {
            reason: format!("the message cannot be written into the request: {e}"),
        };
        let url = self.s.url.render_url(&values).map_err(permanent)?;
        let mut rb = self.client.request(self.s.method.clone(), url);
        let mut has_type = false;
        for (name, t) in &self.s.headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            rb = rb.header(name, t.render(Place::Header, &values).map_err(permanent)?);
        }
        rb = match self.s.auth {
            HttpAuth::None => rb,
            HttpAuth::Basic => rb.basic_auth(&self.s.user, Some(values.password)),
            HttpAuth::Bearer => rb.bearer_auth(values.token),
        };
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
        let mut resp = match rb.send().await {
            Ok(r) => r,
            // Never the URL in words: it may hold the password.
            Err(e) if e.is_connect() => {
                return Err(SendError::Temporary {
                    reason: self.clean(&format!(
                        "cannot connect to the provider: {}",
                        e.without_url()
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
                    reason: self.clean(&format!("the request failed: {}", e.without_url())),
                });
            }
        };
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() > REPLY_MAX {
                        body.truncate(REPLY_MAX);
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(SendError::Unknown {
                        reason: self.clean(&format!(
                            "the provider's answer (HTTP {status}) broke off: {}",
                            e.without_url()
                        )),
                    });
                }
            }
        }
        match http_api::judge(&self.s.reply, status, &body) {
            Verdict::Accepted { id } => {
                if let Ok(mut g) = self.auth_failed.lock() {
                    *g = None;
                }
                let gateway_ref = match id {
                    Some(id) => id,
                    None => {
                        if self.s.reply.id_pointer.is_some() || self.s.reply.id_pattern.is_some() {
                            tracing::warn!(gateway = %self.name, message = msg.message_id, "the provider took the message but its answer has no id where id_pointer/id_pattern say; our message id stands for it");
                        }
                        message_id_ref(msg.message_id)
                    }
                };
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
                if let Ok(mut g) = self.auth_failed.lock() {
                    *g = Some((Instant::now(), reason.clone()));
                }
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
            if let Some(id) = fields.get(&rep.id_field) {
                let status = fields.get(&rep.status_field).unwrap_or_default();
                let is = |list: &[String]| list.iter().any(|v| v.eq_ignore_ascii_case(&status));
                let delivered = if is(&rep.delivered) {
                    true
                } else if is(&rep.undelivered) {
                    false
                } else {
                    tracing::debug!(gateway = %self.name, id = %id, status = %status, "report with a status that is not final; ignored");
                    return Ok((1, None));
                };
                let detail = rep
                    .detail_field
                    .as_ref()
                    .and_then(|f| fields.get(f))
                    .map_or(status.clone(), |d| format!("{status}: {d}"));
                return Ok((
                    1,
                    Some(Event::Delivered {
                        gateway: self.name.clone(),
                        gateway_ref: id,
                        delivered,
                        detail: self.clean(&detail),
                    }),
                ));
            }
        }
        let mut wanted = Vec::new();
        if let Some(r) = &self.s.reports {
            wanted.push(format!("a delivery report needs {:?}", r.id_field));
        }
        if let Some(i) = &self.s.inbound {
            wanted.push(format!(
                "a received message needs {:?} and {:?}",
                i.from_field, i.text_field
            ));
        }
        if wanted.is_empty() {
            return Err(TransportError::NotTaken(format!(
                "provider {} has neither [gateway.reports] nor [gateway.inbound]: it takes no callbacks",
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

    fn reconcile<'a>(&'a self, _port: u32, _reference: i64) -> BoxFuture<'a, Reconciled> {
        // Not asked (capabilities say so): a provider cannot be asked.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        if port >= self.ports {
            return PortHealth {
                usable: false,
                reason: "no such channel".into(),
                ..Default::default()
            };
        }
        match self.auth_refused() {
            Some(why) => PortHealth {
                usable: false,
                reason: why,
                ..Default::default()
            },
            None => PortHealth {
                usable: true,
                ..Default::default()
            },
        }
    }

    /// A provider cannot be asked without sending: after refused
    /// credentials the breaker waits [`AUTH_HOLD`], then the next send is
    /// the test.
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.auth_refused() {
                Some(why) => Err(why),
                None => Ok(()),
            }
        })
    }

    fn accept_webhook(&self, request: WebhookRequest) -> Result<WebhookReply, TransportError> {
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
            events: n,
        })
    }
}
