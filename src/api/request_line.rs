//! A request target longer than [`MAX_TARGET`] is answered 414 as
//! problem+json, like every other refusal.
//!
//! hyper refuses a target over 64 KiB itself, with a bare 414 and no body,
//! before any of our code runs. So the first request line of a connection
//! is read here, before hyper sees the connection: a line too long is
//! answered by us and the connection closed; any other is handed on, its
//! bytes replayed first. Later requests on a kept-alive connection are
//! checked by [`limit_target`] (one over 64 KiB there still gets hyper's
//! bare 414: no client sends such a URI after a normal one).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::ApiError;

/// The longest request target (path and query) taken, in bytes. Far above
/// any route's real need (the longest is a 64-character file name).
pub const MAX_TARGET: usize = 8192;

/// The method, two spaces, the version and the line end around the target.
const MAX_LINE: usize = MAX_TARGET + 32;

fn too_long() -> ApiError {
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
        "URI too long",
        format!(
            "the request's path and query are longer than {MAX_TARGET} bytes; no route takes that much (a file name is at most 64 characters)"
        ),
    )
}

/// Later requests of a connection: the same limit, from the parsed URI.
pub async fn limit_target(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len > MAX_TARGET {
        return too_long().into_response();
    }
    next.run(req).await
}

/// Reads the connection's first request line (within `within`). `None`
/// when the connection is done: it closed, stalled, or had a line too
/// long, which was answered here.
pub async fn screen<S>(mut stream: S, within: Duration) -> Option<Replayed<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut seen = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if seen.contains(&b'\n') {
                return Ok(true);
            }
            if seen.len() > MAX_LINE {
                return Ok(false);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            seen.extend_from_slice(&chunk[..n]);
        }
    };
    let fits: io::Result<bool> = match tokio::time::timeout(within, read).await {
        Ok(r) => r,
        Err(_) => return None,
    };
    match fits {
        Ok(true) if first_line_fits(&seen) => Some(Replayed {
            head: seen,
            at: 0,
            inner: stream,
        }),
        Ok(_) => {
            refuse(stream).await;
            None
        }
        Err(_) => None,
    }
}

fn first_line_fits(seen: &[u8]) -> bool {
    seen.iter().position(|b| *b == b'\n').unwrap_or(usize::MAX) <= MAX_LINE
}

/// Answers 414 and closes. What the client is still sending is read and
/// dropped for a moment (up to a cap), so that it gets to read the answer
/// rather than a connection reset.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let problem = too_long();
    let body = serde_json::to_vec(&problem.problem()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 414 URI Too Long\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        super::error::PROBLEM_JSON,
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(&body).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// A connection whose first bytes were already read: they are read again
/// first, then the connection itself.
pub struct Replayed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = (this.head.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_short_line_is_replayed_whole_and_a_long_one_is_answered_414() {
        let request: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(request).await.unwrap();
        let mut replayed = screen(server, Duration::from_secs(1)).await.unwrap();
        let mut got = vec![0u8; request.len()];
        replayed.read_exact(&mut got).await.unwrap();
        assert_eq!(got, request);

        let (mut client, server) = tokio::io::duplex(1 << 20);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET + 100));
        client.write_all(long.as_bytes()).await.unwrap();
        assert!(screen(server, Duration::from_secs(1)).await.is_none());
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 414 "), "{answer}");
        assert!(answer.contains("\"code\":\"uri_too_long\""), "{answer}");
    }
}
