//! Pushes: what the gateway posts to us (received messages, results,
//! reports, registration, device and port events), dispatched to the same
//! tables the pollers feed. Its own file because it is a dispatcher over
//! every other part (received messages, the awaiting table, port health)
//! rather than a part of its own.

use std::time::Instant;

use super::{Inner, UNMATCHED_MAX, lock};
use crate::transport::{PortHealth, Received};
use smsgate_proto::dinstar::wire::{PushEvent, PushEventKind, RegisterState};

impl Inner {
    /// Applies a push; the received messages it carries are returned, for
    /// the caller to queue in room it has taken beforehand.
    pub(super) fn push(&self, events: Vec<PushEvent>) -> (usize, Vec<Received>) {
        let n = events.len();
        let mut received = Vec::new();
        for ev in events {
            self.learn_sn(ev.sn.as_deref());
            match ev.kind {
                PushEventKind::IncomingSms(m) => {
                    let sn = self.sn_or(ev.sn.as_deref());
                    match self.inbound(&sn, &m) {
                        Some(new) => received.push(new),
                        None => {
                            tracing::warn!(gateway = %self.name, "pushed SMS without incoming_sms_id ignored; the poller fetches it")
                        }
                    }
                }
                PushEventKind::SmsResult(r) => match r.user_id {
                    Some(u) => self.apply_result(u, &r),
                    None => self.apply_anonymous_result(&r),
                },
                PushEventKind::DeliverStatus(r) => {
                    if !self.apply_report(&r) {
                        // Its send result may not be known yet.
                        let mut st = lock(&self.state);
                        if st.unmatched_reports.len() >= UNMATCHED_MAX {
                            st.unmatched_reports.remove(0);
                        }
                        st.unmatched_reports.push((Instant::now(), r));
                        drop(st);
                        self.wake_results.notify_one();
                    }
                }
                PushEventKind::Register(reg) => {
                    let Some(port) = reg.port.map(u32::from).filter(|p| *p < self.ports) else {
                        continue;
                    };
                    let old = lock(&self.state).ports.get(&port).cloned();
                    let h = match reg.status {
                        RegisterState::Up => PortHealth {
                            usable: true,
                            reason: String::new(),
                            sim: Some(true),
                            imsi: reg.imsi.clone(),
                            number: reg.number.clone(),
                            registered: Some(true),
                            signal: old.and_then(|o| o.signal),
                            operator: None,
                        },
                        RegisterState::Down => PortHealth {
                            usable: false,
                            reason: if reg.imsi.is_none() {
                                format!("no SIM in port {port}")
                            } else {
                                format!("port {port} not registered")
                            },
                            sim: reg.imsi.as_ref().map(|_| true),
                            imsi: reg.imsi.clone(),
                            number: reg.number.clone(),
                            registered: Some(false),
                            signal: Some(0),
                            operator: None,
                        },
                        RegisterState::Other(ref s) => {
                            tracing::info!(gateway = %self.name, port, status = %s, "register push with an unknown status; reading the ports");
                            self.wake_ports.notify_one();
                            continue;
                        }
                    };
                    self.set_port(port, h);
                    // Read the full state soon (signal, the exact reg).
                    self.wake_ports.notify_one();
                }
                PushEventKind::Device(d) => {
                    tracing::warn!(gateway = %self.name, status = ?d.status, ip = ?d.ip, "device event from the gateway");
                    self.wake_ports.notify_one();
                }
                PushEventKind::Exception(x) => {
                    tracing::warn!(gateway = %self.name, port = ?x.port, kind = ?x.kind, action = ?x.action, "port exception reported by the gateway");
                    self.wake_ports.notify_one();
                }
                PushEventKind::Ussd(u) => {
                    tracing::info!(gateway = %self.name, port = ?u.port, reply = ?u.text, "USSD reply pushed");
                }
                PushEventKind::Cdr(_) => {}
            }
        }
        (n, received)
    }
}
