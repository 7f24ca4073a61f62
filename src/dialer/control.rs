//! An operator's hand on a running dialer (the seed's dialer screen): stop
//! it, start it again, cancel what it has not processed yet. Each is
//! written to the store first (a stop outlives a restart), then the loader
//! is told.

use super::Dialers;
use crate::runtime::Shared;
use crate::store::{StoreError, spool};

/// Why an operator's action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no dialer is named {0:?}")]
    UnknownDialer(String),
    #[error("dialer {0:?} is disabled in the config (enabled = false); enable it there and reload")]
    Disabled(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stops (`true`) or starts (`false`) a dialer. A dialer disabled in the
/// config cannot be started from here.
pub async fn set_stopped(
    shared: &Shared,
    dialers: &Dialers,
    name: &str,
    stopped: bool,
) -> Result<(), ControlError> {
    let config = shared.config();
    let d = config
        .dialer(name)
        .ok_or_else(|| ControlError::UnknownDialer(name.to_string()))?;
    if !stopped && !d.enabled {
        return Err(ControlError::Disabled(name.to_string()));
    }
    let n = name.to_string();
    shared
        .store
        .write(move |tx| spool::set_dialer_stopped(tx, &n, stopped))
        .await?;
    tracing::info!(dialer = %name, stopped, "dialer {} by an operator", if stopped { "stopped" } else { "started" });
    dialers.set_stopped(name, stopped);
    Ok(())
}

/// Cancels every message of the dialer not processed yet; how many.
pub async fn cancel_pending(
    shared: &Shared,
    dialers: &Dialers,
    name: &str,
) -> Result<usize, ControlError> {
    if shared.config().dialer(name).is_none() {
        return Err(ControlError::UnknownDialer(name.to_string()));
    }
    let n = name.to_string();
    let cancelled = shared
        .store
        .write(move |tx| spool::cancel_pending(tx, &n))
        .await?;
    tracing::info!(dialer = %name, cancelled, "pending messages cancelled by an operator");
    dialers.wake(name);
    Ok(cancelled)
}
