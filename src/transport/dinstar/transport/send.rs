//! Sending and reconciling: one `send_sms` on the channel's port, what each
//! failure means for the message, and asking the gateway by user_id about
//! a message in doubt. Its own file because this is where a message could
//! be sent twice.
//!
//! A send whose answer never came (a timeout, a broken connection, an
//! unreadable reply) is not asked about here: a gateway too slow to
//! answer in time may still be acting on the request, so an immediate
//! "no such user_id" proves nothing. It comes back as
//! [`SendError::Unknown`]; the channel keeps the message SENDING and the
//! gateways' reconciler asks through [`Inner::reconcile`] until the
//! gateway's grace has passed (`reconcile_grace_ms`).

use super::Inner;
use crate::transport::dinstar::client::DinstarError;
use crate::transport::{Accepted, Outbound, Reconciled, SendError};
use smsgate_proto::dinstar::wire::{self, Encoding};
use smsgate_proto::sms::gsm7::is_gsm7;

impl Inner {
    pub(super) async fn send(&self, msg: &Outbound) -> Result<Accepted, SendError> {
        let Some(port) = u8::try_from(msg.port)
            .ok()
            .filter(|p| *p <= wire::MAX_PORT && msg.port < self.ports)
        else {
            return Err(SendError::PortUnusable {
                reason: format!("port {} does not exist on gateway {}", msg.port, self.name),
            });
        };
        let Some(user_id) = u32::try_from(msg.reference)
            .ok()
            .filter(|u| (1..=i32::MAX as u32).contains(u))
        else {
            return Err(SendError::Permanent {
                reason: format!(
                    "internal reference {} is outside Dinstar's user_id range",
                    msg.reference
                ),
            });
        };
        let length = wire::text_length(&msg.text);
        if length > wire::MAX_TEXT_CHARS {
            return Err(SendError::Permanent {
                reason: format!(
                    "the text is {length} characters long; Dinstar gateways take at most {} (not sent)",
                    wire::MAX_TEXT_CHARS
                ),
            });
        }
        let encoding = if is_gsm7(&msg.text) {
            Encoding::Gsm7Bit
        } else {
            Encoding::Unicode
        };
        match self
            .client
            .send_sms(port, user_id, &msg.to, &msg.text, encoding)
            .await
        {
            Ok(acc) => {
                self.set_auth_failed(false);
                self.track(user_id, port, &msg.to);
                tracing::debug!(gateway = %self.name, port, user_id, task_id = ?acc.task_id, encoding = encoding.as_wire(), "gateway accepted the message");
                Ok(Accepted {
                    gateway_ref: user_id.to_string(),
                })
            }
            Err(e) => self.send_failed(port, user_id, e),
        }
    }

    fn send_failed(&self, port: u8, user_id: u32, e: DinstarError) -> Result<Accepted, SendError> {
        match e {
            DinstarError::TextTooLong { .. } | DinstarError::InvalidRequest(_) => {
                Err(SendError::Permanent {
                    reason: e.to_string(),
                })
            }
            DinstarError::Permanent { .. } => Err(SendError::Permanent {
                reason: e.to_string(),
            }),
            DinstarError::PortUnusable => {
                // Something changed on the port: read the state now.
                self.wake_ports.notify_one();
                Err(SendError::PortUnusable {
                    reason: format!("the gateway cannot send on port {port} now (error 550)"),
                })
            }
            DinstarError::Auth { .. } | DinstarError::BackingOff { .. } => {
                self.set_auth_failed(true);
                Err(SendError::Auth {
                    reason: self.auth_reason(),
                })
            }
            DinstarError::Setup(reason) => Err(SendError::Temporary { reason }),
            DinstarError::Temporary {
                reason,
                never_left,
                gateway_code,
            } => {
                // Never connected, or the gateway answered with an error
                // code: it did not take the message.
                if never_left || gateway_code.is_some() {
                    return Err(SendError::Temporary { reason });
                }
                // A timeout or an unreadable reply: the gateway may have
                // taken it, or may still take it. Asked about later, never
                // sent again from here.
                tracing::debug!(gateway = %self.name, port, user_id, "send_sms unanswered; the message is in doubt");
                Err(SendError::Unknown {
                    reason: format!("{reason}; the gateway may have taken it"),
                })
            }
        }
    }

    /// What the gateway says of one user_id now. The caller (the
    /// gateways' reconciler) decides what "not found" means by the time
    /// that passed, and writes the journal line.
    pub(super) async fn reconcile(&self, port: u32, reference: i64) -> Reconciled {
        let Some(user_id) = u32::try_from(reference)
            .ok()
            .filter(|u| (1..=i32::MAX as u32).contains(u))
        else {
            return Reconciled::Unknown;
        };
        match self.client.query_sms_result(&[user_id]).await {
            Ok(rs) => match rs.iter().find(|r| r.user_id == Some(user_id)) {
                Some(r) => {
                    let p = r
                        .port
                        .or_else(|| u8::try_from(port).ok())
                        .unwrap_or_default();
                    self.track(user_id, p, r.number.as_deref().unwrap_or(""));
                    tracing::debug!(gateway = %self.name, port = p, user_id, status = r.status.as_wire(), "the gateway has the message in doubt");
                    // The result loop turns a FAILED or DELIVERED status
                    // into its event once the engine has marked it SENT.
                    self.wake_results.notify_one();
                    Reconciled::Sent {
                        gateway_ref: user_id.to_string(),
                    }
                }
                None => Reconciled::NotSent,
            },
            Err(e) => Reconciled::Unanswered {
                reason: e.to_string(),
            },
        }
    }
}
