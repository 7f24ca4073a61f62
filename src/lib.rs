//! smsgate: the on-premise SMS engine of a contact center.
//!
//! See docs/architecture.md for the shape of the daemon, how the modules
//! talk to each other, and where each behaviour of the seed lives. The
//! modules are layered (no import cycles; `tests/module_graph.rs`):
//! config, store, tls, transport at the bottom; runtime; gateways; dialer;
//! inbound; notify; engine; api; daemon; cli on top. The sans-IO code is the crate
//! `smsgate_proto`, the simulators `smsgate_sim`.
#![forbid(unsafe_code)]

pub mod acd;
pub mod api;
pub mod cli;

pub mod config;
pub mod daemon;
pub mod dialer;
pub mod engine;
pub mod gateways;
pub mod inbound;
pub mod metrics;
pub mod notify;
pub mod runtime;

pub mod store;
pub mod tls;
pub mod transport;

/// Now, in Unix milliseconds: the one clock the store's timestamps and the
/// transports' ages are read on.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
