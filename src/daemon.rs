//! Wiring: loads the config, opens the store, starts the engine and the
//! API, and speaks to systemd (READY, STATUS, WATCHDOG, STOPPING). Signals:
//! SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the config.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::runtime::{BEAT_PERIOD, Heartbeats, Shared, init_logging, load_config};
use crate::store::Store;

/// Exit code for a configuration the daemon cannot start with (sysexits
/// EX_CONFIG); the unit has RestartPreventExitStatus=78 so systemd does not
/// restart-loop on it.
pub const EXIT_CONFIG: u8 = 78;

/// Threads of tokio's blocking pool (store reads, imports). With the two
/// workers, the store's writer and checkpointer and the modems' threads,
/// the process stays well under the unit's `TasksMax=256`.
pub(crate) const MAX_BLOCKING_THREADS: usize = 64;

/// Files the daemon needs besides its API connections: the store, modems,
/// gateway connections, the journal.
const FILES_BESIDES_CONNECTIONS: u64 = 512;

/// Raises the soft limit on open files to the hard one (systemd's
/// `LimitNOFILE=`, or the shell's), and says so when `max_connections`
/// cannot fit in it: those connections would fail at accept.
fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let needed = max_connections as u64 + FILES_BESIDES_CONNECTIONS;
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "[api] max_connections = {max_connections} needs about {needed} open files but the limit is {limit}: connections beyond it fail; raise LimitNOFILE= (systemctl edit smsgate) or lower max_connections"
        );
    }
}

/// A loop silent for longer than this is stuck: the watchdog stops pinging.
const STUCK_AFTER: Duration = Duration::from_secs(10);

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
    for w in config.warnings() {
        tracing::warn!(warning = %w, "config: {w}");
    }
    raise_open_files(config.api.max_connections);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Store reads and imports run on the blocking pool: bounded, so the
        // unit's TasksMax= holds (see systemd/smsgate.service).
        .max_blocking_threads(MAX_BLOCKING_THREADS)
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

async fn async_main(
    config: Config,
    log_filter: Option<crate::runtime::LogFilterHandle>,
) -> ExitCode {
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

    let engine = crate::engine::Engine::start(shared.clone()).await;

    let server =
        match crate::api::Server::bind(crate::api::AppState::new(shared.clone(), engine.clone()))
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

async fn status_loop(shared: Shared, engine: crate::engine::Engine) {
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
