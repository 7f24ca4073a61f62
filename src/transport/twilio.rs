//! `twilio`: Twilio's Messages API, for SMS or WhatsApp. What goes on the
//! wire and what comes back means is pure code in `smsgate_proto::twilio`;
//! this file makes the requests, follows what it sent (status callbacks on
//! the push route, or polling when Twilio cannot reach the box), takes
//! customers' messages (the incoming-message webhook, or polling), and
//! applies WhatsApp's rules before a send.
//!
//! Twilio cannot be asked by our id, so after an unclear send (a timeout,
//! a connection reset after the request left) the message in doubt is
//! looked for in the account's list: same number, same body, created since
//! the attempt began. Our id also rides on the status callback URL
//! (`?m=<id>`), so a callback names our message even when the create's
//! answer was lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smsgate_proto::twilio::{self as tw, Channel, Content, Create, Failure, StatusClass, Webhook};

use super::whatsapp::WhatsAppRules;
use super::{
    Accepted, Asked, BoxFuture, BuildContext, Capabilities, Event, Events, Outbound, PortHealth,
    Received, ReconcileTiming, Reconciled, SendError, StoredAck, Transport, TransportError,
    WebhookReply, WebhookRequest,
};
use crate::config::TwilioSettings;

/// How long an incoming-message webhook waits for its message to be on
/// disk before it is answered 503 (the store stalled).
const WEBHOOK_STORE_WAIT: Duration = Duration::from_secs(5);

/// After refused credentials or a suspended account, the channels stay out
/// of use this long; then the next send (or the breaker's probe) tries.
const AUTH_HOLD: Duration = Duration::from_secs(60);
/// The most of an answer read (a page of 50 messages is ~50 KiB).
const REPLY_MAX: usize = 4 * 1024 * 1024;
/// A 429 without Retry-After: wait this long before the next request.
const RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause a Retry-After can impose.
const RATE_LIMIT_MAX: Duration = Duration::from_secs(300);
/// Pages of a list followed at most, when looking for a message in doubt
/// or listing received messages.
const MAX_PAGES: usize = 20;
const PAGE_SIZE: u32 = 50;
/// Clock difference tolerated between us and Twilio when comparing a
/// message's creation with our attempt's start.
const CLOCK_SLACK_MS: i64 = 120_000;
/// A first start lists received messages from this long before it.
const FIRST_MARK_BACK_MS: i64 = 60_000;
/// Twilio's longest body, in characters.
const BODY_LIMIT: usize = 1600;

pub fn capabilities(ports: u32, s: &TwilioSettings) -> Capabilities {
    Capabilities {
        ports,
        text_limit: Some(BODY_LIMIT),
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: Some(ReconcileTiming {
            // Twilio creates the message before it answers; a request we
            // stopped waiting for is created by then or never.
            grace: s.timeout + Duration::from_secs(10),
            patience: Duration::from_secs(3600),
        }),
        receives: true,
        resume_window: s.status_poll.map(|_| s.status_poll_for),
        whatsapp: s.channel == Channel::WhatsApp,
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    since: Instant,
}

pub struct TwilioTransport {
    name: String,
    ports: u32,
    s: TwilioSettings,
    client: reqwest::Client,
    events: Events,
    default_country: String,
    /// When and why Twilio last refused the account.
    auth: super::provider::AuthHold,
    /// No request before this (a 429's Retry-After).
    paused_until: Mutex<Option<Instant>>,
    /// Messages whose final status a poll still waits for, by sid.
    pending: Mutex<HashMap<String, Pending>>,
    rules: Option<WhatsAppRules>,
}

impl TwilioTransport {
    pub fn start(
        name: &str,
        ports: u32,
        s: &TwilioSettings,
        ctx: BuildContext,
    ) -> Result<Arc<Self>, TransportError> {
        let client = super::provider::client(name, s.timeout, ports)?;
        let rules = (s.channel == Channel::WhatsApp)
            .then(|| WhatsAppRules::new(name, s.messaging_limit, &ctx));
        let now_ms = crate::now_ms();
        let mut pending = HashMap::new();
        if s.status_poll.is_some() {
            for a in &ctx.awaiting {
                let age = Duration::from_millis(now_ms.saturating_sub(a.sent_at).max(0) as u64);
                if age < s.status_poll_for {
                    let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                    pending.insert(a.gateway_ref.clone(), Pending { since });
                }
            }
        }
        let t = Arc::new(Self {
            name: name.to_string(),
            ports,
            s: s.clone(),
            client,
            events: ctx.events.clone(),
            default_country: ctx.default_country.clone(),
            auth: super::provider::AuthHold::new(AUTH_HOLD),
            paused_until: Mutex::new(None),
            pending: Mutex::new(pending),
            rules,
        });
        if let Some(every) = s.status_poll {
            tokio::spawn(t.clone().poll_statuses(every, ctx.stop.clone()));
        }
        if let Some(every) = s.inbound_poll {
            // Without a mark, from a minute before now: a first start does
            // not import the number's whole history, and Twilio's dates
            // have whole seconds.
            let mark = ctx.inbound_mark.unwrap_or(now_ms - FIRST_MARK_BACK_MS);
            tokio::spawn(t.clone().poll_inbound(every, mark, ctx.stop.clone()));
        }
        Ok(t)
    }

    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.s.url)
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.s.api_key, &self.s.auth_token) {
            (Some((sid, secret)), _) => rb.basic_auth(sid, Some(secret.expose())),
            (None, Some(token)) => rb.basic_auth(&self.s.account_sid, Some(token.expose())),
            (None, None) => rb,
        }
    }

    /// A reason fit for the journal and the message's record: no secret.
    fn clean(&self, text: &str) -> String {
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(t) = &self.s.auth_token {
            secrets.push(t.expose());
        }
        if let Some((_, k)) = &self.s.api_key {
            secrets.push(k.expose());
        }
        smsgate_proto::http_api::redact(text, &secrets)
    }

    async fn wait_for_rate_limit(&self) {
        let until = self.paused_until.lock().ok().and_then(|g| *g);
        if let Some(until) = until {
            if until > Instant::now() {
                tokio::time::sleep_until(until.into()).await;
            }
        }
    }

    fn our_number(&self) -> Option<&str> {
        match &self.s.sender {
            tw::Sender::From(n) => Some(n),
            tw::Sender::Service(_) => None,
        }
    }

    /// A GET to Twilio, read whole: status and body.
    async fn get(&self, url: &str) -> Result<(u16, Vec<u8>), String> {
        self.wait_for_rate_limit().await;
        let resp = self
            .authed(self.client.get(url))
            .send()
            .await
            .map_err(|e| self.clean(&super::provider::words(e)))?;
        let status = resp.status().as_u16();
        let body = super::provider::read_capped(resp, REPLY_MAX).await?;
        Ok((status, body))
    }

    async fn send_one(&self, msg: &Outbound) -> Result<Accepted, SendError> {
        if msg.port >= self.ports {
            return Err(SendError::PortUnusable {
                reason: format!(
                    "channel {} does not exist on gateway {}",
                    msg.port, self.name
                ),
            });
        }
        if let Some(why) = self.auth.refused() {
            return Err(SendError::Auth { reason: why });
        }
        if let Some(rules) = &self.rules {
            rules.check(msg)?;
        }
        self.wait_for_rate_limit().await;
        let callback = self
            .s
            .status_callback_url
            .as_deref()
            .map(|u| tw::status_callback(u, msg.message_id));
        let content = match &msg.template {
            Some(t) => Content::Template {
                sid: &t.name,
                variables: &t.variables,
            },
            None => Content::Text(&msg.text),
        };
        let create = Create {
            channel: self.s.channel,
            to: &msg.to,
            sender: &self.s.sender,
            content,
            status_callback: callback.as_deref(),
        };
        let rb = self
            .authed(
                self.client
                    .post(self.api(&tw::messages_path(&self.s.account_sid))),
            )
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(create.body());
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                return Err(SendError::Temporary {
                    reason: self.clean(&format!(
                        "cannot connect to Twilio: {}",
                        super::provider::words(e)
                    )),
                });
            }
            Err(e) if e.is_timeout() => {
                return Err(SendError::Unknown {
                    reason: format!(
                        "no answer from Twilio within {} ms; it may have taken the message",
                        self.s.timeout.as_millis()
                    ),
                });
            }
            Err(e) => {
                return Err(SendError::Unknown {
                    reason: self.clean(&format!(
                        "the request to Twilio broke off: {}",
                        super::provider::words(e)
                    )),
                });
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = super::provider::read_capped(resp, REPLY_MAX)
            .await
            .map_err(|e| SendError::Unknown {
                reason: self.clean(&format!("Twilio's answer (HTTP {status}) broke off: {e}")),
            })?;
        if (200..300).contains(&status) {
            let m = tw::parse_message(&body).map_err(|e| SendError::Unknown {
                reason: format!("Twilio answered HTTP {status} but {e}"),
            })?;
            self.auth.accepted();
            if let Some(rules) = &self.rules {
                rules.sent(msg);
            }
            if self.s.status_poll.is_some() {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(
                        m.sid.clone(),
                        Pending {
                            since: Instant::now(),
                        },
                    );
                }
            }
            return Ok(Accepted { gateway_ref: m.sid });
        }
        let err = tw::parse_error(&body).unwrap_or_default();
        let text = self.clean(err.message.as_deref().unwrap_or("no error text"));
        let reason = match err.code {
            Some(c) => format!("Twilio refused it: HTTP {status}, error {c}: {text}"),
            None => format!("Twilio refused it: HTTP {status}: {text}"),
        };
        match tw::classify_error(status, err.code, retry_after.as_deref()) {
            Failure::Permanent => Err(SendError::Permanent { reason }),
            Failure::OptedOut => Err(SendError::OptedOut { reason }),
            Failure::Temporary => Err(SendError::Temporary { reason }),
            Failure::RateLimited { retry_after } => {
                let pause = retry_after.unwrap_or(RATE_LIMIT_PAUSE).min(RATE_LIMIT_MAX);
                if let Ok(mut g) = self.paused_until.lock() {
                    *g = Some(Instant::now() + pause);
                }
                tracing::warn!(gateway = %self.name, twilio_code = ?err.code, pause_ms = pause.as_millis() as u64, "Twilio says too many requests: every channel of the gateway waits, the message is retried");
                Err(SendError::Temporary {
                    reason: format!("{reason} (waiting {} ms)", pause.as_millis()),
                })
            }
            Failure::StopGateway => {
                let code = err.code.map_or("none".to_string(), |c| c.to_string());
                let why = format!(
                    "Twilio refused account {} (error {code}: {text}); every channel of gateway {} is out of use until Twilio accepts it again: check account_sid, auth_token_file or the API key, and the account's status",
                    self.s.account_sid, self.name
                );
                tracing::error!(gateway = %self.name, twilio_code = %code, twilio_message = %text, http_status = status, "{why}");
                self.auth.refuse(&why);
                Err(SendError::Auth { reason: why })
            }
        }
    }

    async fn reconcile_one(&self, asked: &Asked) -> Reconciled {
        let to = tw::address(self.s.channel, &asked.to);
        let from = self.our_number().map(|n| tw::address(self.s.channel, n));
        let since = asked.started_ms - CLOCK_SLACK_MS;
        let query = tw::list_query(Some(&to), from.as_deref(), Some(&tw::day(since)), PAGE_SIZE);
        let mut url = format!(
            "{}?{query}",
            self.api(&tw::messages_path(&self.s.account_sid))
        );
        // A template's body is Twilio's rendering of it: only the number
        // and the time can be compared.
        let text = (!asked.text.is_empty() && !asked.text.starts_with("[template "))
            .then_some(asked.text.as_str());
        for _ in 0..MAX_PAGES {
            let (status, body) = match self.get(&url).await {
                Ok(x) => x,
                Err(e) => {
                    return Reconciled::Unanswered {
                        reason: format!("cannot list Twilio's messages: {e}"),
                    };
                }
            };
            if status != 200 {
                return Reconciled::Unanswered {
                    reason: format!("Twilio answered the list with HTTP {status}"),
                };
            }
            let page = match tw::parse_page(&body) {
                Ok(p) => p,
                Err(e) => {
                    return Reconciled::Unanswered {
                        reason: e.to_string(),
                    };
                }
            };
            if let Some(m) = tw::find_sent(&page.messages, &asked.to, text, since) {
                // Followed from here like any message sent.
                if self.s.status_poll.is_some() {
                    if let Ok(mut p) = self.pending.lock() {
                        p.insert(
                            m.sid.clone(),
                            Pending {
                                since: Instant::now(),
                            },
                        );
                    }
                }
                return Reconciled::Sent {
                    gateway_ref: m.sid.clone(),
                };
            }
            // Newest first: a page that reaches before the attempt ends it.
            let older = page
                .messages
                .iter()
                .filter_map(|m| m.created_ms())
                .any(|c| c < since);
            match page.next_page_uri.filter(|u| !u.is_empty()) {
                Some(next) if !older => url = self.api(&next),
                _ => return Reconciled::NotSent,
            }
        }
        Reconciled::Unanswered {
            reason: format!("no answer within {MAX_PAGES} pages of Twilio's list"),
        }
    }

    /// The event for a message's status, and whether it is final.
    fn status_event(
        &self,
        sid: &str,
        status: &str,
        code: Option<i64>,
        text: Option<&str>,
    ) -> Option<(Event, bool)> {
        let detail = self.clean(&tw::status_detail(status, code, text));
        match tw::classify_status(status) {
            StatusClass::Intermediate => Some((
                Event::Noted {
                    gateway: self.name.clone(),
                    gateway_ref: sid.to_string(),
                    detail,
                },
                false,
            )),
            StatusClass::Delivered | StatusClass::NotDelivered => Some((
                Event::Delivered {
                    gateway: self.name.clone(),
                    gateway_ref: sid.to_string(),
                    delivered: tw::classify_status(status) == StatusClass::Delivered,
                    detail,
                },
                true,
            )),
            StatusClass::Other => None,
        }
    }

    async fn poll_statuses(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let due: Vec<String> = match self.pending.lock() {
                Ok(mut p) => {
                    let window = self.s.status_poll_for;
                    p.retain(|_, x| x.since.elapsed() < window);
                    p.keys().cloned().collect()
                }
                Err(_) => return,
            };
            for sid in due {
                if stop.is_cancelled() {
                    return;
                }
                let url = self.api(&tw::message_path(&self.s.account_sid, &sid));
                let m = match self.get(&url).await {
                    Ok((200, body)) => tw::parse_message(&body).ok(),
                    Ok((404, _)) => {
                        tracing::warn!(gateway = %self.name, sid = %sid, "Twilio does not know this message any more; no longer polled");
                        if let Ok(mut p) = self.pending.lock() {
                            p.remove(&sid);
                        }
                        None
                    }
                    Ok((status, _)) => {
                        tracing::debug!(gateway = %self.name, sid = %sid, status, "status poll answered with an error; asked again next round");
                        None
                    }
                    Err(e) => {
                        tracing::debug!(gateway = %self.name, sid = %sid, error = %e, "status poll failed; asked again next round");
                        None
                    }
                };
                let Some(m) = m else { continue };
                let status = m.status.clone().unwrap_or_default();
                if let Some((ev, true)) =
                    self.status_event(&sid, &status, m.error_code, m.error_message.as_deref())
                {
                    if let Ok(mut p) = self.pending.lock() {
                        p.remove(&sid);
                    }
                    if self.events.send_waiting(ev).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn received(
        &self,
        sid: &str,
        from: &str,
        to: &str,
        body: &str,
        sent_at: Option<String>,
    ) -> Received {
        let number = smsgate_proto::sms::phone::normalise(from, &self.default_country)
            .ok()
            .map(|p| p.into_string());
        if let (Some(rules), Some(n)) = (&self.rules, &number) {
            rules.inbound(n);
        }
        Received {
            gateway: self.name.clone(),
            port: None,
            source_key: format!("twilio:{sid}"),
            sender: from.to_string(),
            number,
            recipient: (!to.is_empty()).then(|| to.to_string()),
            text: body.to_string(),
            sent_at,
        }
    }

    /// Lists the messages sent to our number since `mark` (unix ms), oldest
    /// first, stores each, and moves the mark past those stored.
    async fn poll_inbound(
        self: Arc<Self>,
        every: Duration,
        mut mark: i64,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let Some(ours) = self.our_number().map(|n| tw::address(self.s.channel, n)) else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Stored messages of the mark's second: listed again (dates have
        // whole seconds) but not handed over again.
        let mut at_mark: std::collections::HashSet<String> = Default::default();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let query = tw::list_query(Some(&ours), None, Some(&tw::day(mark)), PAGE_SIZE);
            let mut url = format!(
                "{}?{query}",
                self.api(&tw::messages_path(&self.s.account_sid))
            );
            let mut found = Vec::new();
            let mut complete = false;
            for _ in 0..MAX_PAGES {
                let page = match self.get(&url).await {
                    Ok((200, body)) => tw::parse_page(&body).ok(),
                    _ => None,
                };
                let Some(page) = page else { break };
                let older = page
                    .messages
                    .iter()
                    .filter_map(|m| m.sent_ms())
                    .any(|t| t < mark);
                found.extend(
                    page.messages
                        .into_iter()
                        .filter(|m| m.is_inbound() && m.sent_ms().is_some_and(|t| t >= mark)),
                );
                match page.next_page_uri.filter(|u| !u.is_empty()) {
                    Some(next) if !older => url = self.api(&next),
                    _ => {
                        complete = true;
                        break;
                    }
                }
            }
            if !complete {
                tracing::debug!(gateway = %self.name, "listing received messages failed; asked again next round");
                continue;
            }
            found.sort_by_key(|m| m.sent_ms());
            for m in found {
                let at = m.sent_ms().unwrap_or(mark);
                if at_mark.contains(&m.sid) {
                    continue;
                }
                let (from, _) = tw::strip_address(m.from.as_deref().unwrap_or(""));
                let (to, _) = tw::strip_address(m.to.as_deref().unwrap_or(""));
                let r = self.received(
                    &m.sid,
                    from,
                    to,
                    m.body.as_deref().unwrap_or(""),
                    m.date_sent.clone(),
                );
                let (ev, answer) = StoredAck::ask(r);
                if self.events.send_waiting(ev).await.is_err() {
                    return;
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                if !answer.stored_by(deadline).await {
                    break;
                }
                if at > mark {
                    at_mark.clear();
                }
                at_mark.insert(m.sid.clone());
                if at > mark {
                    mark = at;
                    let _ = self.events.send(Event::InboundMark {
                        gateway: self.name.clone(),
                        mark,
                    });
                }
            }
        }
    }

    fn refuse(&self, why: &str) -> WebhookReply {
        WebhookReply {
            status: http::StatusCode::FORBIDDEN,
            body: serde_json::json!({
                "type": "urn:smsgate:problem:forbidden",
                "title": "Bad signature",
                "status": 403,
                "code": "forbidden",
                "detail": why,
            }),
            raw: None,
            events: 0,
        }
    }

    async fn webhook(&self, request: WebhookRequest) -> Result<WebhookReply, TransportError> {
        let query = request.uri.query();
        let params = if request.method == http::Method::POST {
            tw::parse_form(&request.body)
        } else {
            Vec::new()
        };
        let Some(public) = self.s.status_callback_url.as_deref() else {
            tracing::warn!(gateway = %self.name, "webhook refused: the gateway has no status_callback_url, so Twilio's signature cannot be checked");
            return Ok(
                self.refuse("this gateway has no status_callback_url to check signatures against")
            );
        };
        let Some(token) = self.s.auth_token.as_ref() else {
            return Ok(self.refuse("this gateway has no auth_token to check signatures with"));
        };
        let url = tw::called_url(public, query);
        let given = request
            .headers
            .get(tw::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if given.is_empty() || !tw::verify(token.expose(), &url, &params, given) {
            let peer = request.peer.map(|p| p.ip().to_string()).unwrap_or_default();
            tracing::warn!(gateway = %self.name, peer = %peer, url = %url, signed = !given.is_empty(), "webhook refused: X-Twilio-Signature does not match (wrong auth token, or status_callback_url is not the URL Twilio called)");
            return Ok(self.refuse("X-Twilio-Signature does not match this request"));
        }
        let fields = if request.method == http::Method::POST {
            params
        } else {
            tw::parse_form(query.unwrap_or("").as_bytes())
        };
        let hook = tw::parse_webhook(&fields, query)
            .map_err(|e| TransportError::NotUnderstood(e.to_string()))?;
        let busy = || {
            TransportError::Busy(format!(
                "gateway {}: smsgate's event queue is full; Twilio retries",
                self.name
            ))
        };
        match hook {
            Webhook::Status(s) => {
                let ev = self.status_event(
                    &s.message_sid,
                    &s.status,
                    s.error_code,
                    s.error_message.as_deref(),
                );
                let n = usize::from(ev.is_some());
                if let Some((ev, fin)) = ev {
                    let mut room = self.events.reserve(1).ok_or_else(busy)?;
                    let _ = room.send(ev);
                    if fin {
                        if let Ok(mut p) = self.pending.lock() {
                            p.remove(&s.message_sid);
                        }
                    }
                }
                Ok(WebhookReply {
                    status: http::StatusCode::OK,
                    body: serde_json::json!({"ok": true, "events": n}),
                    raw: None,
                    events: n,
                })
            }
            Webhook::Incoming(i) => {
                let mut room = self.events.reserve(1).ok_or_else(busy)?;
                let r = self.received(&i.message_sid, &i.from, &i.to, &i.body, None);
                if i.num_media > 0 {
                    tracing::info!(gateway = %self.name, sid = %i.message_sid, media = i.num_media, "received message has media; only its text is kept");
                }
                // Twilio does not send an incoming message again after a
                // 200: answer only once it is on disk.
                let (ev, answer) = StoredAck::ask(r);
                let _ = room.send(ev);
                drop(room);
                let deadline = tokio::time::Instant::now() + WEBHOOK_STORE_WAIT;
                if !answer.stored_by(deadline).await {
                    return Err(TransportError::Busy(format!(
                        "gateway {}: the received message was not stored in time",
                        self.name
                    )));
                }
                Ok(WebhookReply {
                    status: http::StatusCode::OK,
                    body: serde_json::Value::Null,
                    raw: Some(("text/xml", tw::EMPTY_TWIML.to_string())),
                    events: 1,
                })
            }
        }
    }
}

impl Transport for TwilioTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn ports(&self) -> u32 {
        self.ports
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(self.send_one(msg))
    }

    fn reconcile<'a>(&'a self, asked: &'a Asked) -> BoxFuture<'a, Reconciled> {
        Box::pin(self.reconcile_one(asked))
    }

    fn health(&self, port: u32) -> PortHealth {
        self.auth
            .health(self.ports, port, self.our_number().map(str::to_string))
    }

    fn window(&self, number: &str) -> Option<smsgate_proto::whatsapp_rules::WindowState> {
        self.rules.as_ref().map(|r| r.window(number))
    }

    fn messaging_limit(&self) -> Option<(usize, Option<u32>)> {
        self.rules.as_ref().map(|r| r.usage())
    }

    /// After a refusal the breaker waits [`AUTH_HOLD`]; then the next send
    /// is the test (asking Twilio without sending would need a request of
    /// its own against the account's rate limit).
    fn probe<'a>(&'a self) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(std::future::ready(self.auth.probe()))
    }

    fn accept_webhook<'a>(
        &'a self,
        request: WebhookRequest,
    ) -> BoxFuture<'a, Result<WebhookReply, TransportError>> {
        Box::pin(self.webhook(request))
    }
}
