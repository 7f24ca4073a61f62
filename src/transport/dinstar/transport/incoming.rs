//! Received messages: turning the gateway's incoming SMS into
//! [`Received`], and the poller that fetches them above the persisted
//! high-water mark and moves the mark only once they are stored. Its own
//! file because that store-before-mark ordering is what keeps a received
//! message from being lost.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{Inner, STORE_WAIT, lock};
use crate::transport::{Event, Received, StoredAck};
use smsgate_proto::dinstar::wire::IncomingSms;

impl Inner {
    pub(super) fn inbound(&self, sn: &str, m: &IncomingSms) -> Option<Received> {
        let id = m.incoming_sms_id?;
        let port = m.port.map(u32::from);
        let recipient = port.and_then(|p| {
            lock(&self.state)
                .ports
                .get(&p)
                .and_then(|h| h.number.clone())
                .filter(|n| !n.is_empty())
        });
        Some(Received {
            gateway: self.name.clone(),
            port,
            source_key: format!("{sn}:{id}"),
            sender: m.number.clone().unwrap_or_default(),
            // Short codes and alphanumeric senders have no E.164 form.
            number: m.number.as_deref().and_then(|n| {
                smsgate_proto::sms::phone::normalise(n, &self.default_country)
                    .ok()
                    .map(|p| p.into_string())
            }),
            recipient,
            text: m.text.clone(),
            sent_at: m.timestamp.clone(),
        })
    }

    /// The serial number to key received messages with: the one the reply
    /// or push gave, else the last one learned, else the gateway's name.
    pub(super) fn sn_or(&self, given: Option<&str>) -> String {
        given
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| lock(&self.state).sn.clone())
            .unwrap_or_else(|| self.name.clone())
    }

    /// Hands received messages to the engine and waits (at most
    /// [`STORE_WAIT`]) for each to be on disk; returns how many of them,
    /// from the first, are.
    async fn store_in_order(&self, messages: Vec<Received>) -> usize {
        let mut answers = Vec::with_capacity(messages.len());
        for message in messages {
            let (ask, answer) = StoredAck::ask(message);
            // Waits for room: the gateway keeps what is not stored yet.
            let _ = self.events.send_waiting(ask).await;
            answers.push(answer);
        }
        let deadline = tokio::time::Instant::now() + STORE_WAIT;
        let mut n = 0;
        for answer in answers {
            if !answer.stored_by(deadline).await {
                break;
            }
            n += 1;
        }
        n
    }

    pub(super) async fn incoming_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut hwm: u64 = self
            .inbound_mark
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        let mut last_error = String::new();
        if !self.after_first_poll(&stop).await {
            return;
        }
        loop {
            if self.auth_blocked() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.incoming_poll) => {}
                }
                continue;
            }
            match self.client.query_incoming_sms(hwm, &[]).await {
                Ok(batch) => {
                    last_error.clear();
                    self.learn_sn(batch.sn.as_deref());
                    let sn = self.sn_or(batch.sn.as_deref());
                    let mut ids = Vec::new();
                    let mut received = Vec::new();
                    for m in &batch.sms {
                        if let Some(new) = self.inbound(&sn, m) {
                            ids.push(m.incoming_sms_id.unwrap_or(0));
                            received.push(new);
                        }
                    }
                    if !ids.is_empty() {
                        let n = self.store_in_order(received).await;
                        if n > 0 {
                            let top = ids[n - 1];
                            if top > hwm {
                                hwm = top;
                                self.emit(Event::InboundMark {
                                    gateway: self.name.clone(),
                                    mark: i64::try_from(top).unwrap_or(i64::MAX),
                                });
                            }
                        }
                        if n < ids.len() {
                            tracing::warn!(gateway = %self.name, "some received messages are not stored yet; fetching them again next time");
                        }
                    }
                }
                Err(e) => {
                    let s = e.to_string();
                    if s != last_error {
                        tracing::warn!(gateway = %self.name, error = %s, "cannot fetch received messages now");
                        last_error = s;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.incoming_poll) => {}
            }
        }
    }
}
