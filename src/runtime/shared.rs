//! What the API, the engine and the daemon share: the running config (and
//! its reload), the store, the metrics, the heartbeats and the shutdown
//! token.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::heartbeat::Heartbeats;
use super::logging::{LogFilterHandle, log_filter};
use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::store::Store;

/// Everything the API and the engine share. Cheap to clone.
#[derive(Clone)]
pub struct Shared {
    pub config: watch::Receiver<Arc<Config>>,
    config_tx: Arc<watch::Sender<Arc<Config>>>,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub heartbeats: Heartbeats,
    pub started: Instant,
    pub shutdown: CancellationToken,
    /// Wakes the ACD's assigner: an interaction is waiting or an agent
    /// may take one.
    pub acd: Arc<tokio::sync::Notify>,
    pub(crate) log_filter: Option<LogFilterHandle>,
    reload_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadOutcome {
    pub applied: bool,
    /// Settings that changed but only take effect after a restart.
    pub needs_restart: Vec<String>,
}

impl Shared {
    /// The shared state of a daemon (or of a benchmark or tool that runs the
    /// engine in-process).
    pub fn new(config: Config, store: Store, heartbeats: Heartbeats) -> Self {
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        Self {
            config: config_rx,
            config_tx: Arc::new(config_tx),
            store,
            metrics: Arc::new(Metrics::new()),
            heartbeats,
            started: Instant::now(),
            shutdown: CancellationToken::new(),
            acd: Arc::new(tokio::sync::Notify::new()),
            log_filter: None,
            reload_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.borrow().clone()
    }

    /// Re-reads the config file. A valid file replaces the running config
    /// atomically; an invalid one is refused and the running one stays.
    pub async fn reload(&self) -> Result<ReloadOutcome, ConfigError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.config();
        let path = old.path.clone();
        let _ = sd_notify::notify(&reloading_states());
        let loaded = tokio::task::spawn_blocking(move || load_config(&path))
            .await
            .unwrap_or_else(|_| {
                Err(ConfigError::Read {
                    path: old.path.clone(),
                    source: std::io::Error::other("the reload task was cancelled"),
                })
            });
        let result = match loaded {
            Ok(new) => {
                let needs_restart = restart_only_changes(&old, &new);
                for what in &needs_restart {
                    tracing::warn!(setting = %what, "config reload: this change takes effect only after a restart");
                }
                if let Some(h) = &self.log_filter {
                    if new.daemon.log_level != old.daemon.log_level {
                        let _ = h.reload(log_filter(&new.daemon.log_level));
                    }
                }
                self.config_tx.send_replace(Arc::new(new));
                self.metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ResultLabel::ok())
                    .inc();
                tracing::info!(path = %old.path.display(), "config reloaded");
                Ok(ReloadOutcome {
                    applied: true,
                    needs_restart,
                })
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .get_or_create(&crate::metrics::ResultLabel::refused())
                    .inc();
                tracing::error!(path = %old.path.display(), problems = %e, "config reload refused; the running config stays");
                Err(e)
            }
        };
        let _ = sd_notify::notify(&[NotifyState::Ready]);
        result
    }
}

fn reloading_states() -> Vec<NotifyState<'static>> {
    let mut v = vec![NotifyState::Reloading];
    if let Ok(m) = NotifyState::monotonic_usec_now() {
        v.push(m);
    }
    v
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    if old.daemon.state_dir != new.daemon.state_dir {
        v.push("daemon.state_dir".to_string());
    }
    if old.api.listen != new.api.listen {
        v.push("api.listen".to_string());
    }
    if old.api.tls.as_ref().map(|t| (&t.cert, &t.key))
        != new.api.tls.as_ref().map(|t| (&t.cert, &t.key))
    {
        v.push("api.tls_cert / api.tls_key".to_string());
    }
    if old.api.max_connections != new.api.max_connections {
        v.push("api.max_connections".to_string());
    }
    if old.api.max_uploads != new.api.max_uploads {
        v.push("api.max_uploads".to_string());
    }
    v
}

/// Loads and validates the config file, remembering where it came from.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let mut c = Config::load(path)?;
    c.path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(c)
}
