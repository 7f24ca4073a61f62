//! Sending and reconciling: one `send_sms` on the channel's port, what each
//! failure means for the message, and asking the gateway by user_id when a
//! reply was lost or a crash left a message in SENDING. Its own file
//! because this is where a message could be sent twice, and every path
//! that avoids it is here.

use std::time::Duration;

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
            Err(e) => self.send_failed(port, user_id, &msg.to, e).await,
        }
    }

    async fn send_failed(
        &self,
        port: u8,
        user_id: u32,
        to: &str,
        e: DinstarError,
    ) -> Result<Accepted, SendError> {
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
                ref reason,
                never_left,
                gateway_code,
            } => {
                if never_left || gateway_code.is_some() {
                    return Err(SendError::Temporary {
                        reason: reason.clone(),
                    });
                }
                // A timeout or an unreadable reply: the gateway may have
                // queued it. Ask before anything is sent again, so a
                // message is never sent twice.
                tokio::time::sleep(Duration::from_millis(500)).await;
                match self.client.query_sms_result(&[user_id]).await {
                    Ok(rs) if rs.iter().any(|r| r.user_id == Some(user_id)) => {
                        tracing::info!(gateway = %self.name, port, user_id, "the reply was lost but the gateway has the message");
                        self.track(user_id, port, to);
                        if let Some(r) = rs.iter().find(|r| r.user_id == Some(user_id)) {
                            self.apply_result(user_id, r);
                        }
                        Ok(Accepted {
                            gateway_ref: user_id.to_string(),
                        })
                    }
                    Ok(_) => Err(SendError::Temporary {
                        reason: format!("{reason}; the gateway does not have it"),
                    }),
                    Err(e2) => Err(SendError::Unknown {
                        reason: format!(
                            "{reason}; and the gateway cannot be asked whether it took it ({e2})"
                        ),
                    }),
                }
            }
        }
    }

    pub(super) async fn reconcile(&self, port: u32, reference: i64) -> Reconciled {
        let Ok(user_id) = u32::try_from(reference) else {
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
                    tracing::info!(gateway = %self.name, port = p, user_id, status = r.status.as_wire(), "message left in SENDING was taken by the gateway");
                    // The result loop turns a FAILED or DELIVERED status
                    // into its event once the engine has marked it SENT.
                    self.wake_results.notify_one();
                    Reconciled::Sent {
                        gateway_ref: user_id.to_string(),
                    }
                }
                None => {
                    tracing::info!(gateway = %self.name, port, user_id, "message left in SENDING never reached the gateway");
                    Reconciled::NotSent
                }
            },
            Err(e) => {
                tracing::warn!(gateway = %self.name, port, user_id, error = %e, "cannot ask the gateway about a message left in SENDING");
                Reconciled::Unknown
            }
        }
    }
}
