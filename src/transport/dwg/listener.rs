//! Accepting the gateway: the listening socket (retried while the address
//! is busy), admission by [`super::guard`] before anything is read, the
//! authentication handshake, and installing or removing the one live
//! session. Its own file because it is the part exposed to anyone who can
//! reach the port, before any credentials are checked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::codec::{Ack, AuthRequest, Body, MsgId};
use super::guard::{self, Admission, Failure, Notice};
use super::{Conn, Inner, NOT_CONNECTED, Session, unusable};
use crate::transport::PortHealth;

/// A handshake that ended without a first message: timed out, or dropped
/// for a newcomer.
struct Evicted;

/// Who holds the session a newcomer was refused.
struct LiveSession {
    peer: SocketAddr,
    mac: String,
}

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
        {
            let g = self.guard();
            if g.allow().is_empty() {
                tracing::info!(gateway = %self.name, listen = %addr, "listening for the DWG gateway");
            } else {
                tracing::info!(gateway = %self.name, listen = %addr, allow = %g.allow(), "listening for the DWG gateway");
            }
        }
        // Lockouts end and summaries are written on this beat, so nothing
        // depends on a connection arriving to notice the time.
        let mut beat = tokio::time::interval(Duration::from_secs(1));
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (stream, peer) = tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = beat.tick() => {
                    let notices = self.guard().tick(Instant::now());
                    self.report(notices);
                    continue;
                }
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
            // Decided before anything is read: a refused connection costs
            // one accept and one close (the stream dropped), and is told
            // nothing.
            let admission = self.guard().admit(peer.ip(), Instant::now());
            match admission {
                Admission::Admit => {
                    let (id, evict) = self.guard().start_handshake(peer.ip());
                    tokio::spawn(self.clone().serve(stream, peer, id, evict));
                }
                Admission::NotAllowed { name_it: true } => {
                    tracing::warn!(gateway = %self.name, peer = %peer.ip(), allow = %self.guard().allow(), "DWG connection refused: the address is not in allow; further refusals are summed up once a minute");
                }
                Admission::NotAllowed { name_it: false } | Admission::LockedOut => {}
            }
        }
        let last = self.guard().flush(Instant::now());
        self.report(last.into_iter().collect());
        tracing::debug!(gateway = %self.name, "DWG listener stopped");
    }

    /// Writes what the guard's beat has to say.
    fn report(&self, notices: Vec<Notice>) {
        for n in notices {
            match n {
                Notice::LockoutOver(source) => {
                    tracing::info!(gateway = %self.name, source = %source, "DWG lockout over: logins from this address are checked again");
                }
                Notice::Summary(s) => {
                    tracing::warn!(gateway = %self.name, "DWG listener, {s}");
                }
            }
        }
    }

    /// A failed login: counted against the address, and a line when it is
    /// the first of its window or the one that locks the address out.
    fn login_failed(&self, peer: SocketAddr, why: &str) {
        let outcome = self.guard().failed(peer.ip(), Instant::now());
        let max = self.options.guard.max_failures;
        let window = self.options.guard.failure_window.as_secs() / 60;
        match outcome {
            Failure::First => {
                tracing::warn!(gateway = %self.name, peer = %peer, "DWG login refused: {why}; {max} failures within {window} min lock the address out for a while");
            }
            Failure::Counted | Failure::AlreadyLocked | Failure::LockedOutQuietly => {
                tracing::debug!(gateway = %self.name, peer = %peer, "DWG login refused: {why}");
            }
            Failure::LockedOut { failures, lockout } => {
                tracing::warn!(gateway = %self.name, source = %guard::Source::of(peer.ip()), failures = failures, lockout_s = lockout.as_secs(), "DWG logins from {} locked out for {} s after {failures} failures (last: {why}); its connections are closed unread until then", guard::Source::of(peer.ip()), lockout.as_secs());
            }
        }
    }

    /// Authenticates one connection, then runs it as the session.
    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        handshake: u64,
        evict: CancellationToken,
    ) {
        let _ = stream.set_nodelay(true);
        let mut framed = Conn::new(stream);
        let first = tokio::select! {
            _ = self.stop.cancelled() => None,
            _ = evict.cancelled() => Some(Err(Evicted)),
            r = tokio::time::timeout(self.options.auth_timeout, framed.next()) => Some(r.map_err(|_| Evicted).map(Result::transpose)),
        };
        self.guard().end_handshake(handshake);
        let frame = match first {
            None => return,
            Some(Ok(Some(Ok(f)))) => f,
            Some(Err(Evicted)) | Some(Ok(None)) => {
                // Timed out, dropped for a newcomer, or closed: a port scan
                // or a health check as often as not; only counted.
                self.guard().unauthenticated();
                tracing::debug!(gateway = %self.name, peer = %peer, "DWG connection closed before authenticating");
                return;
            }
            Some(Ok(Some(Err(e)))) => {
                self.login_failed(peer, &format!("unreadable message ({e})"));
                return;
            }
        };
        let Body::Auth(auth) = &frame.body else {
            self.login_failed(
                peer,
                &format!(
                    "message type {} instead of authentication",
                    frame.body.kind()
                ),
            );
            return;
        };
        if !self.guard().may_check(peer.ip(), Instant::now()) {
            // Locked out while this handshake waited: not checked at all,
            // so parallel connections cannot get more guesses in.
            return;
        }
        if !self.credentials_match(auth) {
            // The password is never logged, not even the one offered.
            self.login_failed(
                peer,
                &format!("wrong user or password (user {:?})", auth.user_lossy()),
            );
            let _ = framed
                .send(frame.reply(Body::AuthResponse(Ack::FAIL)))
                .await;
            framed.shutdown().await;
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        let cancel = self.stop.child_token();
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            id,
            tx,
            mac: frame.id.mac,
            peer,
            cancel: cancel.clone(),
        };
        if let Err(live) = self.install(session) {
            let first = self.guard().takeover_refused();
            if first {
                tracing::warn!(gateway = %self.name, peer = %peer, mac = %frame.id.mac_string(), live_peer = %live.peer, live_mac = %live.mac, "a second DWG gateway tried to take over the session: right credentials, another MAC; refused, the connected gateway keeps the session (further attempts are counted in the summary)");
            } else {
                tracing::debug!(gateway = %self.name, peer = %peer, mac = %frame.id.mac_string(), "DWG session takeover refused");
            }
            let _ = framed
                .send(frame.reply(Body::AuthResponse(Ack::FAIL)))
                .await;
            framed.shutdown().await;
            return;
        }
        self.guard().succeeded(peer.ip());
        if framed
            .send(frame.reply(Body::AuthResponse(Ack::OK)))
            .await
            .is_err()
        {
            self.uninstall(id, "the authentication response could not be written");
            return;
        }
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

    /// Makes `session` the live one, unless another gateway holds it: then
    /// says who does. The same MAC replaces its own old session (its old
    /// connection died unseen); a live session of another MAC is kept
    /// until it ends by itself (closed, unwritable, or silent for
    /// [`super::DwgOptions::silence`]).
    fn install(&self, session: Session) -> Result<(), LiveSession> {
        let mut st = self.lock();
        if let Some(old) = st.session.as_ref() {
            // The last two bytes of the field are padding.
            if old.mac[..6] != session.mac[..6] {
                return Err(LiveSession {
                    peer: old.peer,
                    mac: MsgId {
                        mac: old.mac,
                        ..Default::default()
                    }
                    .mac_string(),
                });
            }
        }
        if let Some(old) = st.session.take() {
            tracing::warn!(gateway = %self.name, old_peer = %old.peer, peer = %session.peer, "the DWG gateway logged in again; its new connection replaces the old one");
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
        Ok(())
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
