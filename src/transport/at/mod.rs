//! `at`: one GSM modem on a serial port, driven with AT commands in PDU
//! mode. A modem is one channel, port 0.
//!
//! One task owns the port ([`session`]): it opens it (by its stable path,
//! in `spawn_blocking`), runs the start-up sequence, sends one message at a
//! time, reads what the modem announces (new messages, status reports) and
//! polls its health. A port that stops answering, goes away (EOF, read
//! error) or sends garbage is closed and reopened with backoff.
//!
//! Crash safety of a send: a part whose PDU was written (Ctrl-Z sent) and
//! got no `+CMGS` may have left; such a message ends in
//! [`SendError::Unknown`] and is never resent here (the engine decides by
//! the dialer's `resend_unknown`). A later part refused after an earlier
//! one left is also `Unknown`: resending would send the first part twice.
//!
//! `gateway_ref` of a sent message: `"<reference>/<mr>.<mr>..."`, the
//! attempt's persistent reference and the TP-MR `+CMGS` gave each part
//! (`?` when a modem gave none), e.g. `"42/17.18.19"`. Status reports are
//! matched on MR and recipient against the messages sent since start;
//! [`Event::Delivered`] comes when every part is delivered, or at the first
//! part that will not be. When the task starts, the messages an earlier
//! run left SENT in the store (within three days) are tracked again from
//! their `gateway_ref`, so a restart loses no status report.
//!
//! Received messages: read with `AT+CMGR` (on `+CMTI`) or `AT+CMGL=4` (at
//! start and when a store failed), joined when multi-part, handed to the
//! engine as [`Event::InboundAcked`], and deleted from the SIM only after
//! the engine answers that they are stored. Their `source_key` is
//! `at:` + MD5 of the parts' PDUs in order, so a crash between store and
//! delete stores nothing twice.

pub mod errors;
pub mod framing;
pub mod session;

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Accepted, BoxFuture, Events, Outbound, PortHealth, Reconciled, SendError, Transport};
use crate::config::AtSettings;

/// A send handed to the modem's task.
pub(crate) struct SendRequest {
    pub msg: Outbound,
    pub reply: oneshot::Sender<Result<Accepted, SendError>>,
}

/// What the modem said about itself, beyond [`PortHealth`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModemInfo {
    /// `AT+COPS?` operator name or code.
    pub operator: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// Times the port was (re)opened and started.
    pub sessions: u64,
}

/// A modem is one channel; it receives, and it cannot be asked after a
/// crash whether a message left. Its status reports are awaited again after
/// a restart for as long as it tracks them.
pub fn capabilities() -> crate::transport::Capabilities {
    crate::transport::Capabilities {
        ports: 1,
        text_limit: None,
        max_parts: smsgate_proto::sms::MAX_SEGMENTS,
        reconcile: None,
        receives: true,
        resume_window: Some(session::TRACKED_AGE),
        whatsapp: false,
    }
}

pub struct AtTransport {
    name: String,
    health: Arc<Mutex<PortHealth>>,
    info: Arc<Mutex<ModemInfo>>,
    requests: mpsc::Sender<SendRequest>,
}

impl AtTransport {
    /// Starts the modem's task; it runs until `stop` fires or the transport
    /// is dropped.
    pub fn start(
        name: &str,
        settings: AtSettings,
        events: Events,
        stop: CancellationToken,
    ) -> Self {
        Self::start_resuming(name, settings, events, stop, Vec::new())
    }

    /// [`start`](Self::start), first taking up the sent messages an earlier
    /// run left awaiting their status reports.
    pub fn start_resuming(
        name: &str,
        settings: AtSettings,
        events: Events,
        stop: CancellationToken,
        awaiting: Vec<crate::transport::Awaiting>,
    ) -> Self {
        let health = Arc::new(Mutex::new(PortHealth {
            usable: false,
            reason: "the modem is being opened".into(),
            ..Default::default()
        }));
        let info = Arc::new(Mutex::new(ModemInfo::default()));
        // One send at a time: the channel worker waits for each answer.
        let (tx, rx) = mpsc::channel(4);
        let modem = session::Modem::new(
            name.to_string(),
            settings,
            events,
            health.clone(),
            info.clone(),
            awaiting,
        );
        tokio::spawn(modem.run(rx, stop));
        Self {
            name: name.to_string(),
            health,
            info,
            requests: tx,
        }
    }

    pub fn info(&self) -> ModemInfo {
        self.info.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

impl Transport for AtTransport {
    fn name(&self) -> &str {
        &self.name
    }

    fn ports(&self) -> u32 {
        1
    }

    fn send<'a>(&'a self, msg: &'a Outbound) -> BoxFuture<'a, Result<Accepted, SendError>> {
        Box::pin(async move {
            if msg.port != 0 {
                return Err(SendError::PortUnusable {
                    reason: format!("a modem has only port 0, not {}", msg.port),
                });
            }
            let (reply, answer) = oneshot::channel();
            let request = SendRequest {
                msg: msg.clone(),
                reply,
            };
            if self.requests.send(request).await.is_err() {
                return Err(SendError::PortUnusable {
                    reason: "the modem's task has stopped".into(),
                });
            }
            // The task always answers; if it died mid-send nobody can say
            // whether the PDU left.
            answer.await.unwrap_or_else(|_| {
                Err(SendError::Unknown {
                    reason: "the modem's task ended during the send".into(),
                })
            })
        })
    }

    fn reconcile<'a>(&'a self, _asked: &'a super::Asked) -> BoxFuture<'a, Reconciled> {
        // A modem keeps no record of what it sent that we could ask for.
        Box::pin(async { Reconciled::Unknown })
    }

    fn health(&self, port: u32) -> PortHealth {
        if port != 0 {
            return PortHealth {
                usable: false,
                reason: "a modem has only port 0".into(),
                ..Default::default()
            };
        }
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }
}
