//! An operator's hand on a running dialer (the seed's dialer screen): stop
//! it, start it again, cancel what it has not processed yet. Each is
//! written to the store first (a stop outlives a restart), then the loader
//! is told.

use super::{DialerError, Dialers};
use crate::runtime::Shared;
use crate::store::spool;

/// Stops (`true`) or starts (`false`) a dialer. A dialer disabled in the
/// config cannot be started from here.
pub async fn set_stopped(
    shared: &Shared,
    dialers: &Dialers,
    name: &str,
    stopped: bool,
) -> Result<(), DialerError> {
    let config = shared.config();
    let d = config.dialer(name).ok_or_else(|| unknown(shared, name))?;
    if !stopped && !d.enabled {
        return Err(DialerError::Disabled(name.to_string()));
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
) -> Result<usize, DialerError> {
    if shared.config().dialer(name).is_none() {
        return Err(unknown(shared, name));
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

fn unknown(shared: &Shared, name: &str) -> DialerError {
    DialerError::UnknownDialer {
        name: name.to_string(),
        known: shared
            .config()
            .dialers
            .iter()
            .map(|d| d.name.clone())
            .collect(),
    }
}
