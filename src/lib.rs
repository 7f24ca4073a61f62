//! smsgate: the on-premise SMS engine of a contact center.
//!
//! See docs/architecture.md for the shape of the daemon and how the modules
//! talk to each other.
#![forbid(unsafe_code)]

pub mod api;
pub mod breaker;
pub mod channel;
pub mod cli;
pub mod cli_assets;
pub mod config;
pub mod daemon;
pub mod dialer;
pub mod metrics;
pub mod runtime;

pub mod store;
pub mod tls;
pub mod transport;
