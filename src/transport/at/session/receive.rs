//! Receiving: reading announced or stored messages off the SIM, joining
//! multi-part ones, handing them to the engine and deleting them once
//! stored, and matching status reports to the messages sent. Its own file
//! because it is the inbound half of the session, with its own
//! store-then-delete ordering.

use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    Broken, Part, STORE_ACK_TIMEOUT, Session, Tracked, digits, record_header, same_number,
};
use crate::transport::{Event, Received, StoredAck};
use smsgate_proto::sms::{
    self, ConcatKey, DeliveryOutcome, Reassembly, SmsDeliver, SmsStatusReport, Tpdu,
};

impl<T: AsyncRead + AsyncWrite + Send + 'static> Session<'_, T> {
    /// Makes `mem` the storage that CMGR/CMGD act on.
    async fn select_mem(&mut self, mem: &str) -> Result<bool, Broken> {
        if self.read_mem.as_deref() == Some(mem) || mem.is_empty() {
            return Ok(true);
        }
        let r = self
            .command(&format!("AT+CPMS=\"{mem}\""), self.timeout())
            .await?;
        if r.ok() {
            self.read_mem = Some(mem.to_string());
        }
        Ok(r.ok())
    }

    pub(super) async fn read_slot(&mut self, mem: &str, index: u32) -> Result<(), Broken> {
        if !self.select_mem(mem).await? {
            tracing::warn!(gateway = %self.m.name, port = 0u32, mem = %mem, index, "cannot select the storage a message was announced in");
            self.rescan = true;
            return Ok(());
        }
        let r = self
            .command(&format!("AT+CMGR={index}"), self.timeout())
            .await?;
        // An empty slot: +CMS ERROR: 321, a bare OK, or a zero-length
        // record (at-modems.md §1.7).
        for (header, pdu) in r.records {
            if let Some(pdu) = pdu {
                let (_, length) = record_header(&header);
                self.record(Some((mem.to_string(), index)), &pdu, length)
                    .await?;
            }
        }
        Ok(())
    }

    /// `AT+CMGL=4`: everything stored (start-up, and after a failed store).
    pub(super) async fn list_stored(&mut self) -> Result<(), Broken> {
        let t = self.timeout().max(Duration::from_secs(30));
        let r = self.command("AT+CMGL=4", t).await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, answer = %r.result_text(), "cannot list the stored messages");
            return Ok(());
        }
        self.rescan = false;
        let mem = self.read_mem.clone().unwrap_or_default();
        for (header, pdu) in r.records {
            let Some(pdu) = pdu else { continue };
            let (index, length) = record_header(&header);
            let slot = index.map(|i| (mem.clone(), i));
            self.record(slot, &pdu, length).await?;
        }
        Ok(())
    }

    /// One stored or delivered PDU.
    pub(super) async fn record(
        &mut self,
        slot: Option<(String, u32)>,
        pdu: &str,
        length: Option<usize>,
    ) -> Result<(), Broken> {
        let decoded = match sms::decode_hex(pdu, length) {
            Ok(d) => d,
            Err(e) => {
                // Kept on the SIM: deleting what we cannot read could lose a
                // message a later version reads.
                tracing::warn!(gateway = %self.m.name, port = 0u32, slot = ?slot, error = %e, "a stored message cannot be decoded; left on the SIM");
                return Ok(());
            }
        };
        match decoded.tpdu {
            Tpdu::Deliver(d) => self.deliver(slot, pdu, &d).await,
            Tpdu::StatusReport(r) => {
                self.status_report(&r);
                if let Some((mem, index)) = slot {
                    self.delete(&mem, index).await?;
                }
                Ok(())
            }
            // A message stored for sending (stat 2/3): not ours.
            Tpdu::Submit(_) => Ok(()),
        }
    }

    async fn deliver(
        &mut self,
        slot: Option<(String, u32)>,
        pdu: &str,
        d: &SmsDeliver,
    ) -> Result<(), Broken> {
        let part = Part {
            slot,
            pdu: pdu.trim().trim_matches('"').to_ascii_uppercase(),
        };
        let now = jiff::Timestamp::now();
        match d.user_data.concat() {
            None => {
                let text = d.user_data.body.text().unwrap_or_default();
                self.hand_over(d, text, vec![part]).await
            }
            Some(c) => {
                let key = ConcatKey {
                    sender: d.originator.to_string(),
                    reference: c.reference,
                    width: c.width,
                    total: c.total,
                };
                let entry = self.m.parts.entry(key.clone()).or_default();
                entry.entry(c.sequence).or_insert(part);
                match self.m.reassembler.push_deliver(d, now) {
                    Reassembly::Complete(a) => {
                        let parts: Vec<Part> = self
                            .m
                            .parts
                            .remove(&key)
                            .map(|p| p.into_values().collect())
                            .unwrap_or_default();
                        let text = a.text().unwrap_or_default();
                        self.hand_over(d, text, parts).await
                    }
                    Reassembly::Waiting { .. } | Reassembly::Duplicate => Ok(()),
                }
            }
        }
    }

    /// Parts that never completed are handed over as they are, so nothing
    /// stays on the SIM for ever.
    pub(super) async fn expire_parts(&mut self) -> Result<(), Broken> {
        for inc in self.m.reassembler.expire(jiff::Timestamp::now()) {
            let parts: Vec<Part> = self
                .m
                .parts
                .remove(&inc.key)
                .map(|p| p.into_values().collect())
                .unwrap_or_default();
            let missing = inc.missing();
            tracing::warn!(gateway = %self.m.name, port = 0u32, sender = %inc.key.sender, missing = ?missing, "a multi-part message never completed; storing the parts that came");
            let text = inc.text().unwrap_or_default();
            let Some(first) = parts.first() else { continue };
            let Ok(decoded) = sms::decode_hex(&first.pdu, None) else {
                continue;
            };
            if let Tpdu::Deliver(d) = decoded.tpdu {
                self.hand_over(&d, text, parts).await?;
            }
        }
        Ok(())
    }

    /// Hands a whole message to the engine, waits until it is stored, then
    /// deletes its parts from the SIM.
    async fn hand_over(
        &mut self,
        d: &SmsDeliver,
        text: String,
        parts: Vec<Part>,
    ) -> Result<(), Broken> {
        let mut h = Md5::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                h.update(b"|");
            }
            h.update(p.pdu.as_bytes());
        }
        let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let sender = d.originator.to_string();
        let message = Received {
            gateway: self.m.name.clone(),
            port: Some(0),
            source_key: format!("at:{key}"),
            number: sender.starts_with('+').then(|| sender.clone()),
            sender,
            recipient: None,
            text,
            sent_at: d.sc_timestamp.and_then(|t| t.to_rfc3339()),
        };
        let (ask, answer) = StoredAck::ask(message);
        // Waits for room: it stays on the SIM until stored anyway.
        let _ = self.m.events.send_waiting(ask).await;
        let stored = answer
            .stored_by(tokio::time::Instant::now() + STORE_ACK_TIMEOUT)
            .await;
        if !stored {
            // It stays on the SIM and is read again at the next poll.
            tracing::warn!(gateway = %self.m.name, port = 0u32, "a received message was not stored; kept on the SIM");
            self.rescan = true;
            return Ok(());
        }
        for p in parts {
            if let Some((mem, index)) = p.slot {
                self.delete(&mem, index).await?;
            }
        }
        Ok(())
    }

    async fn delete(&mut self, mem: &str, index: u32) -> Result<(), Broken> {
        if !self.select_mem(mem).await? {
            return Ok(());
        }
        let r = self
            .command(&format!("AT+CMGD={index}"), self.timeout())
            .await?;
        if !r.ok() {
            tracing::warn!(gateway = %self.m.name, port = 0u32, index, answer = %r.result_text(), "cannot delete a message from the SIM");
        }
        Ok(())
    }

    pub(super) fn status_report(&mut self, r: &SmsStatusReport) {
        let outcome = r.outcome();
        let recipient = digits(&r.recipient.to_string());
        let fits = |t: &Tracked| {
            if !same_number(&t.to_digits, &recipient) {
                return None;
            }
            t.parts
                .iter()
                .position(|(mr, done)| *mr == Some(r.message_reference) && !done)
        };
        let found = self
            .m
            .tracked
            .iter()
            .enumerate()
            .rev()
            .find_map(|(ti, t)| fits(t).map(|pi| (ti, pi)));
        let code = format!("TP-ST 0x{:02X}", r.status);
        let detail = sms::pdu::status_description(r.status).to_string();
        let Some((ti, pi)) = found else {
            // A part of a message already settled (another part failed):
            // noted, nothing else.
            let late = self
                .m
                .settled
                .iter_mut()
                .rev()
                .find_map(|(_, t)| fits(t).map(|pi| (t, pi)));
            let Some((t, pi)) = late else {
                tracing::debug!(gateway = %self.m.name, port = 0u32, mr = r.message_reference, "status report for a message not sent since start; ignored");
                return;
            };
            t.parts[pi].1 = true;
            let gateway_ref = t.gateway_ref.clone();
            let words = format!(
                "late report, {}{detail} ({code}); the message was already settled",
                part_of(pi, t.parts.len())
            );
            self.m.emit(Event::Noted {
                gateway: self.m.name.clone(),
                gateway_ref,
                detail: words,
            });
            return;
        };
        match outcome {
            // The service centre is still trying: another report follows.
            DeliveryOutcome::Temporary => {
                let t = &self.m.tracked[ti];
                let words = format!("{}{detail} ({code})", part_of(pi, t.parts.len()));
                self.m.emit(Event::Noted {
                    gateway: self.m.name.clone(),
                    gateway_ref: t.gateway_ref.clone(),
                    detail: words,
                });
            }
            DeliveryOutcome::Delivered => {
                let t = &mut self.m.tracked[ti];
                t.parts[pi].1 = true;
                if t.parts.iter().all(|(_, d)| *d) {
                    let gateway_ref = t.gateway_ref.clone();
                    // Every part reported: nothing left to match, not kept.
                    self.m.tracked.remove(ti);
                    self.m.emit(Event::Delivered {
                        gateway: self.m.name.clone(),
                        gateway_ref,
                        delivered: true,
                        detail: format!("{detail} ({code})"),
                    });
                }
            }
            DeliveryOutcome::Permanent => {
                let gateway_ref = self.m.tracked[ti].gateway_ref.clone();
                if let Some(mut t) = self.m.tracked.remove(ti) {
                    t.parts[pi].1 = true;
                    self.m.settle(t);
                }
                self.m.emit(Event::Delivered {
                    gateway: self.m.name.clone(),
                    gateway_ref,
                    delivered: false,
                    detail: format!("part {}: {detail} ({code})", pi + 1),
                });
            }
        }
    }
}

/// "part 2 of 3: " for a part of a multi-part message; nothing for a
/// message of one part.
fn part_of(index: usize, of: usize) -> String {
    if of > 1 {
        format!("part {} of {of}: ", index + 1)
    } else {
        String::new()
    }
}
