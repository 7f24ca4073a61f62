//! Talking to the modem: writing, reading frames, one command and its
//! answer, and getting back in step after an abandoned exchange. Its own
//! file because every other part of the session goes through it and it
//! knows nothing of SMS.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::super::framing::{FinalResult, Frame};
use super::{Broken, ESC, MAX_GARBAGE, Reply, Session, frame_or_broken};

impl<T: AsyncRead + AsyncWrite + Send + 'static> Session<'_, T> {
    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), Broken> {
        let t = self.timeout();
        match tokio::time::timeout(t, async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Broken::Io(e.to_string())),
            Err(_) => Err(Broken::Timeout("a write".into(), t)),
        }
    }

    pub(super) async fn next_frame(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<Frame, Broken> {
        match tokio::time::timeout_at(deadline, self.reader.next()).await {
            Ok(f) => {
                let f = frame_or_broken(f)?;
                if let Frame::Garbage(n) = f {
                    self.garbage += 1;
                    tracing::debug!(gateway = %self.m.name, port = 0u32, bytes = n, "garbage from the modem");
                    if self.garbage >= MAX_GARBAGE {
                        return Err(Broken::Garbage);
                    }
                } else {
                    self.garbage = 0;
                }
                Ok(f)
            }
            Err(_) => Err(Broken::Timeout(
                what.to_string(),
                deadline.saturating_duration_since(tokio::time::Instant::now()),
            )),
        }
    }

    pub(super) async fn command(&mut self, cmd: &str, t: Duration) -> Result<Reply, Broken> {
        tracing::trace!(gateway = %self.m.name, port = 0u32, command = %cmd, "AT");
        self.exchange(cmd, t, None).await
    }

    /// A command carrying a secret: nothing of it is logged.
    pub(super) async fn command_secret(&mut self, cmd: &str, t: Duration) -> Result<Reply, Broken> {
        self.exchange(cmd, t, None).await
    }

    /// Wavecom answers `AT+CPIN?` with no OK (python-gsmmodem fakemodems):
    /// once a line with `early` came, a short wait for the final result is
    /// enough.
    pub(super) async fn command_early(
        &mut self,
        cmd: &str,
        t: Duration,
        early: &str,
    ) -> Result<Reply, Broken> {
        self.exchange(cmd, t, Some(early)).await
    }

    async fn exchange(
        &mut self,
        cmd: &str,
        t: Duration,
        early: Option<&str>,
    ) -> Result<Reply, Broken> {
        let mut line = cmd.as_bytes().to_vec();
        line.push(b'\r');
        self.write(&line).await?;
        let shown = if cmd.to_ascii_uppercase().starts_with("AT+CPIN=") {
            "AT+CPIN=<hidden>".to_string()
        } else {
            cmd.to_string()
        };
        let mut deadline = tokio::time::Instant::now() + t;
        let mut reply = Reply::default();
        loop {
            let f = match self.next_frame(deadline, &shown).await {
                Ok(f) => f,
                Err(Broken::Timeout(..)) if early.is_some_and(|p| reply.value(p).is_some()) => {
                    reply.result = Some(FinalResult::Ok);
                    return Ok(reply);
                }
                Err(Broken::Timeout(..)) => {
                    return Err(Broken::Timeout(shown, t));
                }
                Err(e) => return Err(e),
            };
            match f {
                Frame::Final(r) => {
                    reply.result = Some(r);
                    return Ok(reply);
                }
                Frame::Line(l) => {
                    if let Some(p) = early
                        && l.to_ascii_uppercase().starts_with(p)
                    {
                        deadline =
                            deadline.min(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    reply.lines.push(l);
                }
                Frame::Record { header, pdu } => reply.records.push((header, pdu)),
                Frame::Urc(u) => self.urcs.push_back(u),
                Frame::Prompt => {
                    // A prompt we did not ask for: close it so the modem
                    // does not take our next command as PDU text.
                    self.write(&[ESC]).await?;
                }
                Frame::Echo(_) | Frame::Garbage(_) => {}
            }
        }
    }

    pub(super) fn idle_frame(&mut self, f: Frame) -> Result<(), Broken> {
        match f {
            Frame::Urc(u) => self.urcs.push_back(u),
            Frame::Garbage(_) => {
                self.garbage += 1;
                if self.garbage >= MAX_GARBAGE {
                    return Err(Broken::Garbage);
                }
            }
            Frame::Line(l) => {
                // Unsolicited +CREG and the like: nothing to do.
                tracing::debug!(gateway = %self.m.name, port = 0u32, line = %l, "unsolicited line");
            }
            _ => {}
        }
        Ok(())
    }

    /// After an abandoned exchange: `AT` until OK, so late answers of the
    /// old exchange are drained and the next command starts clean.
    pub(super) async fn resync(&mut self) -> Result<(), Broken> {
        let t = self.timeout().min(Duration::from_secs(2));
        for _ in 0..3 {
            match self.command("AT", t).await {
                Ok(r) if r.ok() => {
                    // That OK may have answered the ESC; the AT's own comes
                    // next. Drain until the modem is quiet.
                    return self.drain_quiet(Duration::from_millis(300)).await;
                }
                Ok(_) | Err(Broken::Timeout(..)) => continue,
                Err(b) => return Err(b),
            }
        }
        Err(Broken::NoAnswer)
    }

    /// Reads until nothing came for `quiet`, keeping the URCs.
    async fn drain_quiet(&mut self, quiet: Duration) -> Result<(), Broken> {
        loop {
            let deadline = tokio::time::Instant::now() + quiet;
            match self.next_frame(deadline, "drain").await {
                Ok(Frame::Urc(u)) => self.urcs.push_back(u),
                Ok(_) => {}
                Err(Broken::Timeout(..)) => return Ok(()),
                Err(b) => return Err(b),
            }
        }
    }
}
