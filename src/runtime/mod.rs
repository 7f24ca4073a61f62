//! The daemon's runtime pieces that everything above the store shares:
//! [`Shared`] (config, store, metrics, shutdown), the [`Heartbeat`]s the
//! watchdog reads, and logging.

mod heartbeat;
mod logging;
mod shared;

pub use heartbeat::{BEAT_PERIOD, Heartbeat, Heartbeats};
pub(crate) use logging::{LogFilterHandle, init_logging};
pub use shared::{ReloadOutcome, Shared, load_config};
