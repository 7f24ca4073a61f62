//! Port health: the state each port is in, the gateway-wide overrides
//! (unreachable, credentials refused), and the `get_port_info` poller that
//! keeps it current. Its own file because it is the one loop that decides
//! whether channels may be used, and the only one that retries refused
//! credentials.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{DOWN_REPOLL, Inner, lock};
use crate::transport::dinstar::client::DinstarError;
use crate::transport::{Event, PortHealth};
use smsgate_proto::dinstar::wire::{PortInfo, RegStatus};

impl Inner {
    pub(super) fn health(&self, port: u32) -> PortHealth {
        if port >= self.ports {
            return PortHealth {
                usable: false,
                reason: format!("port {port} does not exist on gateway {}", self.name),
                ..Default::default()
            };
        }
        let st = lock(&self.state);
        let mut h = st.ports.get(&port).cloned().unwrap_or_else(|| PortHealth {
            usable: false,
            reason: format!("port {port}: state not read from the gateway yet"),
            ..Default::default()
        });
        let in_backoff = self.client.backoff().is_some();
        if in_backoff || st.auth_failed {
            h.usable = false;
            drop(st);
            h.reason = self.auth_reason();
        } else if let Some(why) = &st.down {
            h.usable = false;
            h.reason = why.clone();
        }
        h
    }

    /// Records a port's new health; tells the engine when usability or the
    /// reason changed.
    pub(super) fn set_port(&self, port: u32, h: PortHealth) {
        let changed = {
            let mut st = lock(&self.state);
            let old = st.ports.insert(port, h.clone());
            old.is_none_or(|o| o.usable != h.usable || o.reason != h.reason)
        };
        if changed {
            if h.usable {
                tracing::info!(gateway = %self.name, port, signal = ?h.signal, "port usable");
            } else {
                tracing::warn!(gateway = %self.name, port, reason = %h.reason, "port not usable");
            }
            self.emit(Event::PortHealth {
                gateway: self.name.clone(),
                port,
                health: h,
            });
        }
    }

    /// Every port's health after a gateway-wide change (down, auth).
    fn announce_all(&self) {
        for port in 0..self.ports {
            self.emit(Event::PortHealth {
                gateway: self.name.clone(),
                port,
                health: self.health(port),
            });
        }
    }

    fn set_down(&self, why: Option<String>) {
        let changed = {
            let mut st = lock(&self.state);
            let changed = st.down != why;
            st.down = why.clone();
            changed
        };
        if changed {
            match &why {
                Some(w) => tracing::warn!(gateway = %self.name, reason = %w, "gateway not usable"),
                None => tracing::info!(gateway = %self.name, "gateway reachable again"),
            }
            self.announce_all();
        }
    }

    pub(super) fn set_auth_failed(&self, failed: bool) {
        let changed = {
            let mut st = lock(&self.state);
            let changed = st.auth_failed != failed;
            st.auth_failed = failed;
            changed
        };
        if changed {
            if failed {
                tracing::warn!(gateway = %self.name, reason = %self.auth_reason(), "gateway refused our credentials; its channels are out of use");
            } else {
                tracing::info!(gateway = %self.name, "gateway accepts our credentials again");
            }
            self.announce_all();
        }
    }

    pub(super) fn port_health_from(info: &PortInfo) -> PortHealth {
        let port = info.port;
        let registered = info.reg.as_ref().map(|r| *r == RegStatus::RegisterOk);
        let sim = info.reg.as_ref().map(|r| !matches!(r, RegStatus::NoSim));
        let reason = match &info.reg {
            Some(RegStatus::RegisterOk) | None => String::new(),
            Some(RegStatus::NoSim) => format!("no SIM in port {port}"),
            Some(RegStatus::PowerOff) => format!("port {port} is powered off"),
            Some(RegStatus::PinRequired) => format!("the SIM in port {port} asks for its PIN"),
            Some(RegStatus::PukRequired) => format!("the SIM in port {port} asks for its PUK"),
            Some(RegStatus::Searching) => {
                format!("port {port} not registered (searching for a network)")
            }
            Some(other) => format!("port {port} not registered ({})", other.as_wire()),
        };
        PortHealth {
            usable: info.looks_usable(),
            reason,
            sim,
            imsi: info.imsi.clone(),
            number: info.number.clone(),
            registered,
            signal: info.signal.map(i32::from),
            operator: None,
        }
    }

    async fn poll_ports(&self) {
        let ports: Vec<u8> = (0..self.ports)
            .filter_map(|p| u8::try_from(p).ok())
            .collect();
        match self.client.get_port_info(&ports, &[]).await {
            Ok(infos) => {
                self.set_auth_failed(false);
                self.set_down(None);
                for port in 0..self.ports {
                    let h = match infos.iter().find(|i| u32::from(i.port) == port) {
                        Some(info) => Self::port_health_from(info),
                        None => PortHealth {
                            usable: false,
                            reason: format!("port {port} is not reported by the gateway"),
                            ..Default::default()
                        },
                    };
                    self.set_port(port, h);
                }
            }
            Err(DinstarError::Auth { .. } | DinstarError::BackingOff { .. }) => {
                self.set_auth_failed(true);
            }
            Err(e) => self.set_down(Some(format!("gateway unreachable: {e}"))),
        }
    }

    pub(super) async fn port_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.poll_ports().await;
            self.first_poll.send_replace(true);
            let wait = if lock(&self.state).down.is_some() {
                self.port_poll.min(DOWN_REPOLL)
            } else {
                self.port_poll
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake_ports.notified() => {}
            }
        }
    }
}
