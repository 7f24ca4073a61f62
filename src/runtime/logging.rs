//! Where the daemon's log lines go: the journal (structured fields) under
//! systemd, readable stderr otherwise; the level can change on reload.

pub(crate) type LogFilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

pub(crate) fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    // RUST_LOG, when set, wins: it is how a technician turns on one module's
    // debug output without editing the config.
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| tracing_subscriber::EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::EnvFilter::new(format!(
                "{level},hyper=warn,reqwest=warn,rustls=warn,h2=warn"
            ))
        })
}

/// Journald (structured fields) under systemd, readable stderr otherwise.
pub(crate) fn init_logging(level: &str) -> Option<LogFilterHandle> {
    use tracing_subscriber::prelude::*;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    let registry = tracing_subscriber::registry().with(filter);
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    if under_systemd {
        if let Ok(journald) = tracing_journald::layer() {
            let journald = journald
                .with_syslog_identifier("smsgate".to_string())
                .with_field_prefix(None);
            if registry.with(journald).try_init().is_ok() {
                return Some(handle);
            }
            return None;
        }
    }
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false);
    registry.with(fmt).try_init().ok().map(|_| handle)
}
