//! Receiving an upload whole before anything of it is imported.
//!
//! An import is one transaction on the store's single writer, so it must
//! never wait on the network: a client that stalls half-way would hold
//! every other write (single sends, delivery reports) and then the
//! watchdog. The body is first written to an unnamed file in the state
//! directory (`O_TMPFILE`: nothing to clean up if the daemon dies), each
//! read bounded by `[api] upload_idle_timeout_s`; only a whole body is
//! handed to the importer, which then runs at disk and CPU speed.
//!
//! At most `[api] max_uploads` uploads are received or imported at once:
//! each holds a file of up to `max_upload_bytes` and, once whole, the
//! writer.

use std::io::{BufReader, Seek};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

/// An upload's turn: held while its body is received and imported.
pub struct Turn {
    _permit: OwnedSemaphorePermit,
}

/// The uploads allowed at once.
#[derive(Clone)]
pub struct UploadSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

/// How soon a client refused for lack of a turn should try again: an
/// import of a million lines takes a few seconds.
const RETRY_AFTER_S: u64 = 5;

impl UploadSlots {
    pub fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A turn now, or 429: waiting for one would hold the client's
    /// connection (and its body) for as long as the other imports take.
    pub fn take(&self) -> Result<Turn, ApiError> {
        match self.slots.clone().try_acquire_owned() {
            Ok(p) => Ok(Turn { _permit: p }),
            Err(_) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_uploads",
                "Too many uploads",
                format!(
                    "{} upload(s) are already being received or imported ([api] max_uploads); send this one again in a few seconds",
                    self.max
                ),
            )
            .with_retry_after(RETRY_AFTER_S)),
        }
    }
}

/// A staged upload, read back from its first byte.
pub type Staged = BufReader<std::fs::File>;

/// Receives the whole body into an unnamed file in `dir`. The body has
/// already been limited to `max_upload_bytes` by the route's guard.
pub async fn stage(body: Body, dir: &Path, idle: Duration) -> Result<Staged, ApiError> {
    let d = dir.to_path_buf();
    let file = tokio::task::spawn_blocking(move || tempfile::tempfile_in(&d))
        .await
        .map_err(|_| ApiError::internal("the upload could not be staged"))?
        .map_err(|e| stage_error(&e, dir))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(file));
    let mut body = body;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "upload_stalled",
                    "Upload stalled",
                    format!(
                        "the upload sent nothing for {} s ([api] upload_idle_timeout_s); nothing of it was imported. Send the whole file again",
                        idle.as_secs()
                    ),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(read_error(&e)),
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            out.write_all(&data)
                .await
                .map_err(|e| stage_error(&e, dir))?;
        }
    }
    out.flush().await.map_err(|e| stage_error(&e, dir))?;
    let mut file = out.into_inner().into_std().await;
    tokio::task::spawn_blocking(move || {
        file.rewind()?;
        Ok::<_, std::io::Error>(BufReader::with_capacity(64 * 1024, file))
    })
    .await
    .map_err(|_| ApiError::internal("the upload could not be staged"))?
    .map_err(|e| stage_error(&e, dir))
}

/// The body ended badly: over the size limit, or the client went away.
fn read_error(e: &axum::Error) -> ApiError {
    let text = e.to_string();
    if text.contains("length limit exceeded") {
        return ApiError::from(crate::dialer::DialerError::TooLarge);
    }
    ApiError::bad_request(
        "upload_unreadable",
        format!("the upload could not be read to its end ({text}); nothing of it was imported"),
    )
}

fn stage_error(e: &std::io::Error, dir: &Path) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull || e.kind() == std::io::ErrorKind::QuotaExceeded
    {
        return ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "Storage full",
            "the disk holding smsgate's state directory has no room for this upload; nothing was imported. Free space there and send it again",
        );
    }
    tracing::error!(dir = %dir.display(), error = %e, "cannot stage an upload in the state directory");
    ApiError::internal("the upload could not be staged; see the journal for details")
}
