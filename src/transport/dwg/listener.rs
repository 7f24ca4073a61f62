//! Accepting the gateway: the listening socket (retried while the address
//! is busy), the authentication handshake with its limit on connections
//! waiting to authenticate, and installing or removing the one live
//! session. Its own file because it is the part exposed to anyone who can
//! reach the port, before any credentials are checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::codec::{Ack, AuthRequest, Body};
use super::{Conn, Inner, MAX_HANDSHAKES, NOT_CONNECTED, Session, unusable};
use crate::transport::PortHealth;

impl Inner {
    pub(super) async fn listen_loop(self: Arc<Self>, bound: watch::Sender<Option<SocketAddr>>) {
        let mut warned = false;
        let listener = loop {
            match TcpListener::bind(self.listen).await {
                Ok(l) => break l,
                Err(e) => {
                    if !warned {
                        tracing::warn!(gateway = %self.name, listen = %self.listen, error = %e, "cannot listen for the DWG gateway yet; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(self.options.bind_retry) => {}
                    }
                }
            }
        };
        let addr = listener.local_addr().unwrap_or(self.listen);
        let _ = bound.send(Some(addr));
        tracing::info!(gateway = %self.name, listen = %addr, "listening for the DWG gateway");
        loop {
            let (stream, peer) = tokio::select! {
                _ = self.stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather
                        // than spin.
                        tracing::warn!(gateway = %self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if self.handshakes.fetch_add(1, Ordering::AcqRel) >= MAX_HANDSHAKES {
                self.handshakes.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(gateway = %self.name, peer = %peer, "too many connections waiting to authenticate; closed");
                continue;
            }
            tokio::spawn(self.clone().serve(stream, peer));
        }
        tracing::debug!(gateway = %self.name, "DWG listener stopped");
    }

    /// Authenticates one connection, then runs it as the session.
    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let mut framed = Conn::new(stream);
        let first = tokio::select! {
            _ = self.stop.cancelled() => None,
            r = tokio::time::timeout(self.options.auth_timeout, framed.next()) => Some(r.map(Result::transpose)),
        };
        self.handshakes.fetch_sub(1, Ordering::AcqRel);
        let frame = match first {
            None => return,
            Some(Ok(Some(Ok(f)))) => f,
            Some(Err(_)) => {
                tracing::warn!(gateway = %self.name, peer = %peer, "DWG connection sent no authentication in time; closed");
                return;
            }
            Some(Ok(Some(Err(e)))) => {
                tracing::warn!(gateway = %self.name, peer = %peer, error = %e, "DWG connection sent garbage; closed");
                return;
            }
            Some(Ok(None)) => return,
        };
        let Body::Auth(auth) = &frame.body else {
            tracing::warn!(gateway = %self.name, peer = %peer, kind = frame.body.kind(), "DWG connection did not start with authentication; closed");
            return;
        };
        if !self.credentials_match(auth) {
            // The password is never logged, not even the one offered.
            tracing::warn!(gateway = %self.name, peer = %peer, user = %auth.user_lossy(), "DWG gateway refused: wrong user or password");
            let _ = framed
                .send(frame.reply(Body::AuthResponse(Ack::FAIL)))
                .await;
            framed.shutdown().await;
            return;
        }
        if framed
            .send(frame.reply(Body::AuthResponse(Ack::OK)))
            .await
            .is_err()
        {
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        let cancel = self.stop.child_token();
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        self.install(Session {
            id,
            tx,
            mac: frame.id.mac,
            cancel: cancel.clone(),
        });
        tracing::info!(gateway = %self.name, peer = %peer, mac = %frame.id.mac_string(), "DWG gateway connected");
        let why = self.run_session(&mut framed, rx, &cancel).await;
        self.uninstall(id, &why);
        tracing::warn!(gateway = %self.name, peer = %peer, reason = %why, "DWG gateway disconnected");
    }

    fn credentials_match(&self, auth: &AuthRequest) -> bool {
        // Both compared in full, whatever the first says: the time taken
        // tells nothing about which field or byte was wrong.
        let u = auth.user.ct_eq(&self.user);
        let p = auth.password.ct_eq(&self.password);
        bool::from(u & p)
    }

    fn install(&self, session: Session) {
        let mut st = self.lock();
        if let Some(old) = st.session.take() {
            tracing::warn!(gateway = %self.name, "a new DWG connection replaces the old one");
            old.cancel.cancel();
        }
        // Waiters of the old session get no response now.
        st.pending.clear();
        st.session = Some(session);
        // Usable until the gateway's status report says otherwise (it comes
        // right after authentication): a gateway that never reports still
        // gets its messages, and a bad port answers "port unavailable".
        let fresh = PortHealth {
            usable: true,
            ..Default::default()
        };
        st.health = vec![fresh.clone(); self.ports as usize];
        drop(st);
        for port in 0..self.ports {
            self.emit_health(port, fresh.clone());
        }
    }

    fn uninstall(&self, id: u64, why: &str) {
        let mut st = self.lock();
        if st.session.as_ref().map(|s| s.id) != Some(id) {
            // Replaced by a newer session: that one owns the ports now.
            return;
        }
        st.session = None;
        st.pending.clear();
        st.health = vec![unusable(NOT_CONNECTED); self.ports as usize];
        drop(st);
        tracing::debug!(gateway = %self.name, reason = %why, "every port unusable until the gateway reconnects");
        for port in 0..self.ports {
            self.emit_health(port, unusable(NOT_CONNECTED));
        }
    }
}
