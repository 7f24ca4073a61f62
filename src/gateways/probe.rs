//! While a gateway's breaker is open, asks its transport every probe
//! interval whether the gateway is back, and closes the breaker when it is.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::breaker::{self, Breaker};
use crate::runtime::Shared;
use crate::transport::Transport;

pub(super) async fn run(
    shared: Shared,
    transport: Arc<dyn Transport>,
    breaker: Arc<Breaker>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if !breaker.probe_due() {
            continue;
        }
        match transport.probe().await {
            Ok(()) => {
                if let Some(t) = breaker.probe_passed() {
                    breaker::announce(&shared, &breaker, &t);
                }
            }
            Err(why) => {
                tracing::info!(gateway = %breaker.gateway(), reason = %why, "breaker probe: gateway still failing")
            }
        }
    }
}
