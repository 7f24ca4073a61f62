//! Sending one message: encoding its parts, each part's `AT+CMGS` prompt
//! and answer, and what a failure at each step means (not sent, or maybe
//! sent and never resent). Its own file because that crash-safety reasoning
//! is the riskiest part of the session and reads best on its own.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};

use super::super::framing::{FinalResult, Frame};
use super::super::{SendRequest, errors};
use super::{Broken, CTRL_Z, ESC, Session, TRACKED_MAX, Tracked, cmgs_reference, digits};
use crate::transport::{Accepted, Outbound, SendError};
use smsgate_proto::sms::{self, Address, ServiceCentre, SubmitOptions};

impl<T: AsyncRead + AsyncWrite + Send + 'static> Session<'_, T> {
    pub(super) async fn serve_send(&mut self, r: SendRequest) -> Result<(), Broken> {
        if !self.sim_ready || self.needs_setup {
            let reason = if self.sim_reason.is_empty() {
                "the modem is not ready".to_string()
            } else {
                self.sim_reason.clone()
            };
            let _ = r.reply.send(Err(SendError::PortUnusable { reason }));
            return Ok(());
        }
        let (result, broken) = self.send(&r.msg).await;
        if let Ok(a) = &result {
            tracing::info!(gateway = %self.m.name, port = 0u32, message = r.msg.message_id, gateway_ref = %a.gateway_ref, "sent");
        }
        let _ = r.reply.send(result);
        match broken {
            Some(b) => Err(b),
            None => Ok(()),
        }
    }

    /// Sends every part; the error (if any) and whether the port broke.
    async fn send(&mut self, msg: &Outbound) -> (Result<Accepted, SendError>, Option<Broken>) {
        let destination = match Address::parse(&msg.to) {
            Ok(a) => a,
            Err(e) => {
                return (
                    Err(SendError::Permanent {
                        reason: format!("the destination {:?} cannot be encoded: {e}", msg.to),
                    }),
                    None,
                );
            }
        };
        let options = SubmitOptions {
            // Derived from the attempt's persistent reference: a different
            // reference for consecutive messages, with no counter to keep.
            concat_reference: (msg.reference.rem_euclid(256)) as u16,
            // "00": the modem's SMSC (set with AT+CSCA when configured).
            service_centre: ServiceCentre::ModemDefault,
            ..SubmitOptions::default()
        };
        let pdus = match sms::encode_submit(&destination, &msg.text, &options) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Err(SendError::Permanent {
                        reason: format!("the text cannot be encoded: {e}"),
                    }),
                    None,
                );
            }
        };
        let total = pdus.len();
        let mut mrs: Vec<Option<u8>> = Vec::with_capacity(total);
        for (i, pdu) in pdus.iter().enumerate() {
            let left_before = i > 0;
            let unknown = |why: String| SendError::Unknown {
                reason: format!("part {} of {total}: {why}; earlier parts left", i + 1),
            };
            match self.send_part(pdu).await {
                PartOutcome::Sent(mr) => mrs.push(mr),
                PartOutcome::NotSent(result, broken) => {
                    let err = if left_before {
                        unknown(format!("the modem answered {result}"))
                    } else {
                        errors::send_error(&result)
                    };
                    if matches!(errors::classify(&result), errors::ErrorClass::OurBug) {
                        tracing::error!(gateway = %self.m.name, port = 0u32, message = msg.message_id, answer = %result, "the modem refused our PDU: a bug in smsgate's encoder");
                    }
                    if matches!(errors::classify(&result), errors::ErrorClass::PortUnusable) {
                        // Find out what is wrong before the next message.
                        self.needs_setup = true;
                        self.sim_reason = format!("the modem answered {result}");
                        self.publish_health();
                    }
                    return (Err(err), broken);
                }
                PartOutcome::NotSentBroken(b) => {
                    let err = if left_before {
                        unknown(b.to_string())
                    } else {
                        SendError::PortUnusable {
                            reason: format!(
                                "the modem failed before the message was handed over: {b}"
                            ),
                        }
                    };
                    return (Err(err), Some(b));
                }
                PartOutcome::MaybeSent(why, broken) => {
                    return (
                        Err(SendError::Unknown {
                            reason: format!("part {} of {total}: {why}", i + 1),
                        }),
                        broken,
                    );
                }
            }
        }
        let gateway_ref = format!(
            "{}/{}",
            msg.reference,
            mrs.iter()
                .map(|m| m.map_or_else(|| "?".to_string(), |m| m.to_string()))
                .collect::<Vec<_>>()
                .join(".")
        );
        if options.status_report_request {
            if self.m.tracked.len() >= TRACKED_MAX {
                self.m.tracked.pop_front();
            }
            self.m.tracked.push_back(Tracked {
                gateway_ref: gateway_ref.clone(),
                to_digits: digits(&msg.to),
                parts: mrs.iter().map(|m| (*m, false)).collect(),
                at: Instant::now(),
            });
        }
        (Ok(Accepted { gateway_ref }), None)
    }

    async fn send_part(&mut self, pdu: &sms::SubmitPdu) -> PartOutcome {
        if let Err(b) = self
            .write(format!("AT+CMGS={}\r", pdu.tpdu_length).as_bytes())
            .await
        {
            return PartOutcome::NotSentBroken(b);
        }
        // Up to the prompt nothing can have left.
        let deadline = tokio::time::Instant::now() + self.timeout().max(Duration::from_secs(1));
        loop {
            match self.next_frame(deadline, "AT+CMGS").await {
                Ok(Frame::Prompt) => break,
                // An OK before the prompt answers something older (an ESC
                // or a resync): not ours.
                Ok(Frame::Final(FinalResult::Ok)) => {}
                Ok(Frame::Final(r)) => return PartOutcome::NotSent(r, None),
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => {
                    // A stuck prompt: ESC abandons it (Telit, Quectel); then
                    // check that the modem still answers.
                    if let Err(b) = self.write(&[ESC]).await {
                        return PartOutcome::NotSentBroken(b);
                    }
                    let r = FinalResult::Error("no prompt for the PDU".into());
                    return match self.resync().await {
                        Ok(()) => PartOutcome::NotSent(r, None),
                        Err(b) => PartOutcome::NotSentBroken(b),
                    };
                }
                Err(b) => return PartOutcome::NotSentBroken(b),
            }
        }
        let mut body = pdu.hex.clone().into_bytes();
        body.push(CTRL_Z);
        if let Err(b) = self.write(&body).await {
            // Some bytes may have reached the modem, Ctrl-Z included.
            return PartOutcome::MaybeSent(
                format!("the port failed while the PDU was written: {b}"),
                Some(b),
            );
        }
        // From here the part may have left.
        let t = self.m.settings.send_timeout;
        let deadline = tokio::time::Instant::now() + t;
        let mut mr = None;
        loop {
            match self.next_frame(deadline, "+CMGS").await {
                Ok(Frame::Line(l)) => {
                    if let Some(v) = l.strip_prefix("+CMGS:") {
                        mr = cmgs_reference(v);
                    }
                }
                Ok(Frame::Final(FinalResult::Ok)) => return PartOutcome::Sent(mr),
                Ok(Frame::Final(r)) => return PartOutcome::NotSent(r, None),
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => {
                    // Never resend blindly: the network may have it. ESC and
                    // a resync leave the modem usable for the next message.
                    let why = format!("no +CMGS within {t:?}");
                    let broken = match self.write(&[ESC]).await {
                        Ok(()) => self.resync().await.err(),
                        Err(b) => Some(b),
                    };
                    return PartOutcome::MaybeSent(why, broken);
                }
                Err(b) => {
                    return PartOutcome::MaybeSent(
                        format!("the modem went away after the PDU: {b}"),
                        Some(b),
                    );
                }
            }
        }
    }
}

enum PartOutcome {
    Sent(Option<u8>),
    /// Refused before it left (an error before the prompt, or the network
    /// refused it after the PDU).
    NotSent(FinalResult, Option<Broken>),
    /// The port broke before the PDU was written.
    NotSentBroken(Broken),
    /// The PDU was written and no answer came.
    MaybeSent(String, Option<Broken>),
}
