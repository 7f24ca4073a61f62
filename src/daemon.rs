//! Wiring: loads the config, opens the store, starts the engine and the
//! API, and speaks to systemd (READY, STATUS, WATCHDOG, STOPPING). Signals:
//! SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::metrics::Metrics;
use crate::store::Store;

/// Exit code for a configuration the daemon cannot start with (sysexits
/// EX_CONFIG); the unit has RestartPreventExitStatus=78 so systemd does not
/// restart-loop on it.
pub const EXIT_CONFIG: u8 = 78;

/// How often every main loop proves it is turning.
const BEAT_PERIOD: Duration = Duration::from_secs(1);
/// A loop silent for longer than this is stuck: the watchdog stops pinging.
const STUCK_AFTER: Duration = Duration::from_secs(10);

/// Proof of life of one main loop. The loop calls `beat()` every time it
/// turns (at least every `period()`); the watchdog pings systemd only while
/// every registered loop has beaten recently.
#[derive(Clone)]
pub struct Heartbeat {
    inner: Arc<Beat>,
}

pub struct Beat {
    name: String,
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Heartbeat {
    fn new(name: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Beat {
                name: name.into(),
                epoch: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
        }
    }

    /// A heartbeat nobody watches, for tests and tools.
    pub fn detached() -> Self {
        Self::new("detached")
    }

    pub fn beat(&self) {
        let ms = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_ms.store(ms, Ordering::Relaxed);
    }

    pub fn period(&self) -> Duration {
        BEAT_PERIOD
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn age(&self) -> Duration {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.inner.last_ms.load(Ordering::Relaxed)))
    }
}

/// The set of loops the watchdog watches. It holds them weakly: a loop
/// that ends (a gateway removed on reload) drops out instead of looking
/// stuck forever.
#[derive(Clone, Default)]
pub struct Heartbeats {
    list: Arc<Mutex<Vec<std::sync::Weak<Beat>>>>,
}

impl Heartbeats {
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let hb = Heartbeat::new(name);
        hb.beat();
        if let Ok(mut l) = self.list.lock() {
            l.retain(|w| w.strong_count() > 0);
            l.push(Arc::downgrade(&hb.inner));
        }
        hb
    }

    fn live(&self) -> Vec<Heartbeat> {
        self.list
            .lock()
            .map(|l| {
                l.iter()
                    .filter_map(|w| w.upgrade())
                    .map(|inner| Heartbeat { inner })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loops that have not turned within `limit`.
    pub fn stuck(&self, limit: Duration) -> Vec<(String, Duration)> {
        self.live()
            .iter()
            .filter(|h| h.age() > limit)
            .map(|h| (h.name().to_string(), h.age()))
            .collect()
    }

    pub fn all(&self) -> Vec<(String, Duration)> {
        self.live()
            .iter()
            .map(|h| (h.name().to_string(), h.age()))
            .collect()
    }
}

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
    log_filter: Option<LogFilterHandle>,
    reload_lock: Arc<tokio::sync::Mutex<()>>,
}

type LogFilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

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
    v
}

/// Loads and validates the config file, remembering where it came from.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let mut c = Config::load(path)?;
    c.path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(c)
}

fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
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
fn init_logging(level: &str) -> Option<LogFilterHandle> {
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

/// `smsgate run`: the daemon in the foreground, as systemd expects.
pub fn run(config_path: PathBuf) -> ExitCode {
    let config = match load_config(&config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smsgate: cannot start: the configuration is not valid\n{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log_handle = init_logging(&config.daemon.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("smsgate-worker")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("smsgate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main(config, log_handle));
    // Blocking tasks (a slow read) must not hold the exit hostage.
    runtime.shutdown_timeout(Duration::from_secs(2));
    code
}

async fn async_main(config: Config, log_filter: Option<LogFilterHandle>) -> ExitCode {
    // Signals are registered before READY=1 so an early SIGTERM is never
    // lost to the default handler.
    let (mut sigterm, mut sigint, mut sighup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            tracing::error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let heartbeats = Heartbeats::default();
    let store_beat = heartbeats.register("store-writer");
    let state_dir = config.daemon.state_dir.clone();
    let store = match tokio::task::spawn_blocking(move || Store::open(&state_dir, store_beat)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot open the store");
            eprintln!("smsgate: {e}");
            return ExitCode::FAILURE;
        }
        Err(_) => return ExitCode::FAILURE,
    };
    let mut shared = Shared::new(config, store.clone(), heartbeats.clone());
    shared.log_filter = log_filter;

    let engine = crate::dialer::Engine::start(shared.clone()).await;

    let server = match crate::api::Server::bind(crate::api::AppState {
        shared: shared.clone(),
        engine: engine.clone(),
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the API");
            eprintln!("smsgate: {e}");
            engine.stop(Duration::from_secs(1)).await;
            store.close();
            return ExitCode::FAILURE;
        }
    };
    let listen = server.local_addr();
    let api_task = tokio::spawn(server.serve(shared.shutdown.clone()));

    let runtime_beat = heartbeats.register("runtime");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(BEAT_PERIOD);
        loop {
            tick.tick().await;
            runtime_beat.beat();
        }
    });
    spawn_watchdog(heartbeats.clone());

    tracing::info!(listen = %listen, version = env!("CARGO_PKG_VERSION"), "smsgate ready");
    let _ = sd_notify::notify(&[NotifyState::Ready]);
    let status_task = tokio::spawn(status_loop(shared.clone(), engine.clone()));

    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!(signal = "SIGTERM", "stopping"); break; }
            _ = sigint.recv() => { tracing::info!(signal = "SIGINT", "stopping"); break; }
            _ = sighup.recv() => {
                tracing::info!(signal = "SIGHUP", "reloading the config");
                let _ = shared.reload().await;
            }
        }
    }

    let _ = sd_notify::notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
    let drain = shared.config().daemon.drain_timeout;
    let deadline = Instant::now() + drain;
    shared.shutdown.cancel();
    status_task.abort();
    // The engine gets most of the budget: in-flight sends must end in a
    // recorded state. The API only has to finish answering.
    engine.stop(drain.mul_f32(0.8)).await;
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(left, api_task).await;
    let s = store.clone();
    let _ = tokio::task::spawn_blocking(move || s.close()).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn spawn_watchdog(heartbeats: Heartbeats) {
    let Some(usec) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = usec / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut was_stuck = false;
        loop {
            tick.tick().await;
            let stuck = heartbeats.stuck(STUCK_AFTER);
            if stuck.is_empty() {
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                was_stuck = false;
            } else if !was_stuck {
                // Withholding the ping is the point: systemd will restart us.
                for (name, age) in &stuck {
                    tracing::error!(
                        task = name,
                        silent_for_s = age.as_secs(),
                        "a main loop is stuck; withholding the watchdog ping so systemd restarts smsgate"
                    );
                }
                was_stuck = true;
            }
        }
    });
}

async fn status_loop(shared: Shared, engine: crate::dialer::Engine) {
    let mut last = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let line = engine.status_line().await;
        if line != last {
            let _ = sd_notify::notify(&[NotifyState::Status(&line)]);
            last = line;
        }
        if shared.shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_loop_is_reported_stuck_and_a_beating_one_is_not() {
        let hbs = Heartbeats::default();
        let a = hbs.register("a");
        let _b = hbs.register("b");
        std::thread::sleep(Duration::from_millis(60));
        a.beat();
        let stuck = hbs.stuck(Duration::from_millis(50));
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].0, "b");
    }

    #[test]
    fn a_loop_that_ended_is_not_reported_stuck() {
        let hbs = Heartbeats::default();
        let gone = hbs.register("gone");
        drop(gone);
        std::thread::sleep(Duration::from_millis(20));
        assert!(hbs.stuck(Duration::from_millis(5)).is_empty());
        assert!(hbs.all().is_empty());
    }
}
