//! The store: one SQLite file in WAL mode. All SQL lives under this module.
//!
//! Writes go through one writer thread that owns the only read-write
//! connection and commits in groups: every job queued while the previous
//! commit ran shares the next transaction (and its fsync). Each job runs in
//! its own savepoint, so one failing job never undoes another. A job's
//! result is handed back only after the commit succeeded, which is what lets
//! the API promise that an accepted message is on disk (invariant 1).
//!
//! Reads use a small pool of read-only connections on blocking threads; WAL
//! lets them proceed while the writer commits.

pub mod acd;
pub mod consent;
pub mod dncr;
pub mod events;
pub mod inbound;
pub mod interactions;
pub mod outbox;
mod schema;
pub mod spool;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

pub use rusqlite;

/// How many queued jobs one transaction may take. Bounded so one commit
/// never holds the write lock for long.
const MAX_GROUP: usize = 512;
/// Read-only connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the database {path} has schema version {found}, but this smsgate knows only up to {known}; \
         it was written by a newer smsgate. Install that version again, or restore a backup"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the database could not commit: {0}")]
    CommitFailed(String),
    #[error("the store is shut down")]
    Closed,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The disk holding the state directory is full: the write (and the
    /// rest of its group) was rolled back.
    #[error("the disk holding the state directory is full; nothing was written")]
    Full,
    /// The write had not started when the request it serves had to be
    /// answered (see [`with_write_deadline`]): nothing was written.
    #[error("the store was busy past the request's deadline; nothing was written")]
    Deadline,
}

tokio::task_local! {
    static WRITE_DEADLINE: Instant;
}

/// Runs `fut` with a deadline for the writes it makes: a [`Store::write`]
/// still queued at `deadline` is not run at all and fails with
/// [`StoreError::Deadline`]. A caller that must answer in time can then
/// say truthfully that nothing was written, instead of giving up on a job
/// that commits later.
pub async fn with_write_deadline<F: std::future::Future>(deadline: Instant, fut: F) -> F::Output {
    WRITE_DEADLINE.scope(deadline, fut).await
}

impl StoreError {
    /// The failure is the disk being full (SQLITE_FULL).
    pub fn is_full(&self) -> bool {
        match self {
            Self::Full => true,
            Self::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            _ => false,
        }
    }

    /// A database failure as the callers of a whole group hear it.
    fn for_group(e: &StoreError) -> StoreError {
        if e.is_full() {
            StoreError::Full
        } else {
            StoreError::CommitFailed(e.to_string())
        }
    }

    /// A failure that says something about the data the caller gave, as
    /// opposed to the database itself being unwell.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::NotFound(_) | Self::Conflict(_))
    }
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job runs in the group's transaction and says how its caller hears of
/// the commit, and whether it failed in a way that spoils the transaction.
type Job = Box<dyn FnOnce(&Transaction<'_>) -> (Completion, Spoiled) + Send>;

/// How a job ran: `.0`, an unguarded job failed half-way, so the group's
/// transaction must not be committed; `.1`, it met a full disk (its own
/// savepoint rolled back, so the group may still commit, but the store
/// cannot take what it is asked to).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Spoiled(bool, bool);

/// Whether a job runs in its own savepoint.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// It may fail on its own (a conflict, a refused import) without
    /// undoing its neighbours: the default.
    Savepoint,
    /// The dialers' per-message writes, which fail only when the database
    /// does. A savepoint copies every page a job touches into a
    /// sub-journal, a third of the writer's work at full rate; without it
    /// a failure rolls back the whole group, and every caller in it hears
    /// that the write failed.
    Unguarded,
}

enum Command {
    Job(Job),
    Shutdown,
}

/// What the writer thread beats every time it turns (at least every
/// `period`), so the watchdog notices a writer stuck in a job. The runtime's
/// heartbeat implements it; a trait here keeps the store below the runtime.
pub trait WriterBeat: Send + Sync + 'static {
    fn beat(&self);
    fn period(&self) -> Duration;
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    heartbeat: Arc<dyn WriterBeat>,
    tx: mpsc::Sender<Command>,
    /// Set while commits fail (a full disk, an I/O error), cleared by the
    /// next commit that succeeds: `/readyz` says not ready meanwhile.
    failing: Arc<AtomicBool>,
    /// When a write last failed, unix ms (0: never).
    last_failure: Arc<std::sync::atomic::AtomicI64>,
    readers: Mutex<Vec<Connection>>,
    open: AtomicBool,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

/// How long after the last failed write the store is still taken as
/// failing (see [`Store::failed_recently`]).
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// How often the checkpointer copies committed pages from the WAL into the
/// database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

impl Store {
    /// Opens (creating if needed) `dir/smsgate.db`, applies migrations and
    /// starts the writer thread. Blocking: call it from `spawn_blocking` or
    /// before the runtime starts.
    pub fn open(dir: &Path, heartbeat: impl WriterBeat) -> Result<Self, StoreError> {
        let heartbeat: Arc<dyn WriterBeat> = Arc::new(heartbeat);
        std::fs::create_dir_all(dir).map_err(|source| StoreError::StateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("smsgate.db");
        // Messages and numbers are personal data: the file is the daemon's
        // alone whatever the umask (SQLite gives the WAL and shared-memory
        // files the database file's mode).
        create_private(&path).map_err(|source| StoreError::StateDir {
            path: path.clone(),
            source,
        })?;
        let mut conn = Connection::open(&path)?;
        configure_writer(&conn)?;
        migrate(&mut conn, &path)?;
        let spawn_failed = |e| StoreError::StateDir {
            path: path.clone(),
            source: e,
        };
        // Checkpoints run beside the writer, not inside its commits: a
        // commit that crosses SQLite's automatic threshold would otherwise
        // copy the whole WAL (a bulk import's hundred megabytes) while every
        // channel waits for its attempt to be recorded.
        let checkpoint_conn = Connection::open(&path)?;
        checkpoint_conn.busy_timeout(Duration::from_secs(5))?;
        let (stop_checkpoints, checkpoint_rx) = mpsc::channel();
        let committed = Arc::new(AtomicBool::new(false));
        let seen = committed.clone();
        let checkpointer = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, checkpoint_rx, seen))
            .map_err(spawn_failed)?;
        let (tx, rx) = mpsc::channel();
        let failing = Arc::new(AtomicBool::new(false));
        let last_failure = Arc::new(std::sync::atomic::AtomicI64::new(0));
        let health = WriterHealth {
            failing: failing.clone(),
            last_failure: last_failure.clone(),
        };
        let beat = heartbeat.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(conn, rx, beat, committed, health))
            .map_err(spawn_failed)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                heartbeat,
                tx,
                failing,
                last_failure,
                readers: Mutex::new(Vec::new()),
                open: AtomicBool::new(true),
                writer: Mutex::new(Some(writer)),
                checkpointer: Mutex::new(Some((stop_checkpoints, checkpointer))),
            }),
        })
    }

    /// For a long job on the writer (an import of millions of rows): it
    /// calls this each time it has done a part of its work, so the watchdog
    /// knows the writer is working, not stuck. Only for jobs that never
    /// wait on anything but the disk and the CPU.
    pub fn writer_progress(&self) -> impl Fn() + Send + 'static {
        let beat = self.inner.heartbeat.clone();
        move || beat.beat()
    }

    /// Whether commits are failing now (a full disk, an I/O error); true
    /// until a commit succeeds again.
    pub fn writes_failing(&self) -> bool {
        self.inner.failing.load(Ordering::Relaxed)
    }

    /// Whether a write failed within the last [`FAILURE_HOLD`]. On a full
    /// disk a small write (a readiness probe) may still fit where the
    /// writes that matter do not, so a probe's success does not count
    /// until the failures have stopped for a while.
    pub fn failed_recently(&self) -> bool {
        let last = self.inner.last_failure.load(Ordering::Relaxed);
        last != 0 && now_ms().saturating_sub(last) < FAILURE_HOLD.as_millis() as i64
    }

    /// A small real write (one row of `kv`), so a store whose writes
    /// failed finds out that they work again even when nothing else
    /// writes (an idle daemon after the disk was cleaned up).
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO kv(key, value) VALUES ('store.probe', ?1) \
                 ON CONFLICT(key) DO UPDATE SET value = ?1",
            )?
            .execute([now_ms()])?;
            Ok(())
        })
        .await
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Runs `f` inside the writer's transaction; resolves once committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let deadline = WRITE_DEADLINE.try_with(|d| *d).ok();
        let f = move |tx: &Transaction<'_>| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(StoreError::Deadline);
            }
            f(tx)
        };
        let (done, wait) = oneshot::channel();
        self.submit(f, done, Guard::Savepoint)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write`] without a savepoint, for the dialers' per-message
    /// writes: `f` must fail only when the database does (see
    /// [`Guard::Unguarded`]).
    pub async fn write_unguarded<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.submit(f, done, Guard::Unguarded)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// [`Store::write_detached`] without a savepoint (see
    /// [`Store::write_unguarded`]).
    pub fn write_unguarded_detached<T, F>(
        &self,
        f: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.detached(f, Guard::Unguarded)
    }

    /// The blocking twin of [`Store::write`], for threads outside the runtime.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.submit(f, done, Guard::Savepoint)?;
        wait.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Queues a write without waiting; the receiver gets the result once
    /// committed. For blocking threads that must keep working (feeding a
    /// streaming import) while the writer runs the job.
    pub fn write_detached<T, F>(
        &self,
        f: F,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.detached(f, Guard::Savepoint)
    }

    fn detached<T, F>(
        &self,
        f: F,
        guard: Guard,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        self.submit(f, done, guard)?;
        Ok(wait)
    }

    fn submit<T, F>(
        &self,
        f: F,
        done: oneshot::Sender<Result<T, StoreError>>,
        guard: Guard,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let job: Job = Box::new(move |tx| {
            let outcome = match guard {
                Guard::Savepoint => run_in_savepoint(tx, f),
                Guard::Unguarded => f(tx),
            };
            let spoiled = Spoiled(
                guard == Guard::Unguarded && outcome.is_err(),
                outcome.as_ref().is_err_and(StoreError::is_full),
            );
            let completion: Completion = Box::new(move |commit: Result<(), StoreError>| {
                let result = match (commit, outcome) {
                    (Ok(()), outcome) => outcome,
                    // The job that spoiled the group hears its own error.
                    (Err(_), Err(own)) if spoiled.0 => Err(own),
                    (Err(e), _) => Err(e),
                };
                let _ = done.send(result);
            });
            (completion, spoiled)
        });
        self.inner
            .tx
            .send(Command::Job(job))
            .map_err(|_| StoreError::Closed)
    }

    /// Runs a read on a pooled read-only connection, off the async workers.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.read_blocking(f))
            .await
            .map_err(|_| StoreError::Closed)?
    }

    pub fn read_blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let conn = self.inner.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match conn {
            Some(c) => c,
            None => open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        if let Ok(mut idle) = self.inner.readers.lock() {
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    /// Finishes queued writes, then stops the writer thread.
    pub fn close(&self) {
        self.inner.open.store(false, Ordering::Relaxed);
        let checkpointer = self
            .inner
            .checkpointer
            .lock()
            .ok()
            .and_then(|mut c| c.take());
        if let Some((stop, handle)) = checkpointer {
            let _ = stop.send(());
            let _ = handle.join();
        }
        let _ = self.inner.tx.send(Command::Shutdown);
        let handle = self.inner.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        if let Ok(mut idle) = self.inner.readers.lock() {
            idle.clear();
        }
    }
}

fn run_in_savepoint<T, F>(tx: &Transaction<'_>, f: F) -> Result<T, StoreError>
where
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
{
    // Cached statements: this runs for every write, twice.
    tx.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(tx) {
        Ok(v) => {
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn configure_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: an acknowledged message must survive a power cut. Group commit
    // pays for the extra fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 16 MiB of page cache: a bulk import updates indexes in random order
    // (phone numbers), and the 2 MiB default makes it thrash.
    conn.pragma_update(None, "cache_size", -16384)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // The checkpointer thread does this work (see Store::open).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(())
}

/// Copies committed pages into the database file every
/// [`CHECKPOINT_EVERY`] when something was committed, without blocking the
/// writer (PASSIVE), until told to stop. The writer truncates the WAL
/// itself when the store closes.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>, committed: Arc<AtomicBool>) {
    let mut failing = false;
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // A failed checkpoint is tried again even with no new commit.
        if !committed.swap(false, Ordering::Relaxed) && !failing {
            continue;
        }
        // (busy, WAL frames, frames copied)
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match done {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("store: WAL checkpoints work again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::error!(error = %e, "store: cannot checkpoint the WAL; it grows until this clears");
            }
            Err(_) => {}
        }
    }
}

/// SQLite's plan for `sql`, its steps joined by " / " (tests check that a
/// look-up seeks its index rather than reading the table).
#[cfg(test)]
pub(crate) fn query_plan(store: &Store, sql: &str) -> String {
    let sql = sql.to_string();
    store
        .read_blocking(move |c| {
            let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            // Unbound parameters are NULL, which is fine for a plan.
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(r.get::<_, String>(3)?);
            }
            Ok(out)
        })
        .map(|steps| steps.join(" / "))
        .unwrap_or_else(|e| format!("no plan: {e}"))
}

/// Creates `path` with mode 0600 when it does not exist yet.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = schema::MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > known {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store schema migrated");
    }
    Ok(())
}

/// Whether the writer's commits work, told once per episode: the journal
/// gets one line when commits start failing and one when they work again.
struct WriterHealth {
    failing: Arc<AtomicBool>,
    /// When a write last failed, unix ms.
    last_failure: Arc<std::sync::atomic::AtomicI64>,
}

impl WriterHealth {
    fn committed(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::warn!("store: writes work again; smsgate is ready");
        }
    }

    fn failed(&self, e: &StoreError) {
        self.last_failure.store(now_ms(), Ordering::Relaxed);
        if !self.failing.swap(true, Ordering::Relaxed) {
            if e.is_full() {
                tracing::error!(error = %e, "store: the disk holding the state directory is full; writes fail (the API answers 507 storage_full, /readyz is not ready, delivery reports wait in memory) until space is freed");
            } else {
                tracing::error!(error = %e, "store: writes fail; /readyz is not ready until a write succeeds");
            }
        }
    }
}

fn writer_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Command>,
    heartbeat: Arc<dyn WriterBeat>,
    committed: Arc<AtomicBool>,
    health: WriterHealth,
) {
    let mut shutting_down = false;
    while !shutting_down {
        heartbeat.beat();
        let first = match rx.recv_timeout(heartbeat.period()) {
            Ok(Command::Job(j)) => j,
            Ok(Command::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(Command::Job(j)) => group.push(j),
                Ok(Command::Shutdown) => {
                    shutting_down = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, group, &health);
        committed.store(true, Ordering::Relaxed);
    }
    // Drain what was queued before the shutdown request.
    let rest: Vec<Job> = rx
        .try_iter()
        .filter_map(|c| match c {
            Command::Job(j) => Some(j),
            Command::Shutdown => None,
        })
        .collect();
    if !rest.is_empty() {
        commit_group(&mut conn, rest, &health);
    }
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
}

fn commit_group(conn: &mut Connection, group: Vec<Job>, health: &WriterHealth) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let e = StoreError::from(e);
            health.failed(&e);
            tracing::debug!(error = %e, "store: cannot begin a transaction");
            let told = StoreError::for_group(&e);
            for job in group {
                fail_job(job, &told);
            }
            return;
        }
    };
    let mut spoiled = false;
    let mut full = false;
    let completions: Vec<Completion> = group
        .into_iter()
        .map(|job| {
            let (completion, s) = job(&tx);
            spoiled |= s.0;
            full |= s.1;
            completion
        })
        .collect();
    let commit = if spoiled {
        let _ = tx.rollback();
        tracing::error!("store: a write failed half-way; its whole group was rolled back");
        Err(StoreError::CommitFailed(
            "a write in the same transaction failed; the transaction was rolled back".into(),
        ))
    } else {
        tx.commit().map_err(StoreError::from)
    };
    match (&commit, spoiled) {
        // Small writes may still fit while others meet the full disk: the
        // store is not healthy until a group commits with none refused.
        (Ok(()), _) if full => health.failed(&StoreError::Full),
        (Ok(()), _) => health.committed(),
        (Err(e), false) => {
            health.failed(e);
            tracing::debug!(error = %e, "store: commit failed");
        }
        (Err(_), true) => {}
    }
    for c in completions {
        c(match &commit {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::for_group(e)),
        });
    }
}

/// A job whose transaction never started still owes its caller an answer;
/// run it against a throwaway in-memory transaction and report the failure.
fn fail_job(job: Job, told: &StoreError) {
    if let Ok(mut mem) = Connection::open_in_memory() {
        if let Ok(tx) = mem.transaction() {
            let (completion, _) = job(&tx);
            completion(Err(if told.is_full() {
                StoreError::Full
            } else {
                StoreError::CommitFailed(told.to_string())
            }));
        }
    }
}

/// One page of a list read with `LIMIT limit + 1`: the extra row, when
/// there, only says that another page follows; the cursor is the last row
/// kept.
pub(crate) fn page<T, C>(
    mut items: Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> C,
) -> (Vec<T>, Option<C>) {
    if items.len() as i64 > limit {
        items.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
        let next = items.last().map(&cursor);
        (items, next)
    } else {
        (items, None)
    }
}

/// Current time in unix milliseconds, the unit of every timestamp column.
pub use crate::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        Store::open(dir, crate::runtime::Heartbeat::detached()).unwrap()
    }

    #[tokio::test]
    async fn writes_are_visible_to_readers_after_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .write(|tx| {
                tx.execute("INSERT INTO kv(key, value) VALUES ('a', 1)", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let v: i64 = store
            .read(|c| Ok(c.query_row("SELECT value FROM kv WHERE key='a'", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(v, 1);
        store.close();
    }

    #[tokio::test]
    async fn a_failing_job_does_not_undo_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut waits = Vec::new();
        for i in 0..50 {
            let s = store.clone();
            waits.push(tokio::spawn(async move {
                s.write(move |tx| {
                    tx.execute(
                        "INSERT INTO kv(key, value) VALUES (?1, ?2)",
                        (format!("k{i}"), i),
                    )?;
                    if i % 5 == 0 {
                        return Err(StoreError::Conflict("refused".into()));
                    }
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for w in waits {
            if w.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 10);
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 40);
        store.close();
    }

    #[test]
    fn the_loader_resumes_behind_its_position_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        // Priorities 5 and 9 in mixed load order; one number on the DNCR.
        let ids: Vec<i64> = s
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO dncr(key, dialer, written, source, added_at) \
                     VALUES ('+59899000003', '', '099000003', 'test', 0)",
                    [],
                )?;
                let mut ids = Vec::new();
                for (i, priority) in [9, 5, 9, 5, 5, 9].into_iter().enumerate() {
                    let m = spool::NewMessage {
                        dialer: "d".into(),
                        destination: format!("09900000{i}"),
                        number: Some(format!("+5989900000{i}")),
                        text: "x".into(),
                        priority,
                        client_id: None,
                        import_id: None,
                        encoding: "gsm7",
                        segments: 1,
                        state: spool::State::ToProcess,
                        template: None,
                    };
                    ids.push(spool::insert_fast(tx, &m, 0)?);
                }
                Ok(ids)
            })
            .unwrap();
        let load = |after, limit| {
            s.read_blocking(move |c| {
                spool::next_to_process(c, "d", 1, limit, after, &Default::default(), Some("d"))
            })
            .unwrap()
        };
        let all = load(None, 10);
        let order: Vec<i64> = all.iter().map(|q| q.id).collect();
        assert_eq!(order, [ids[1], ids[3], ids[4], ids[0], ids[2], ids[5]]);
        let listed: Vec<i64> = all.iter().filter(|q| q.listed).map(|q| q.id).collect();
        assert_eq!(listed, [ids[3]]);
        // Resuming inside priority 5 keeps its later messages, then 9.
        let first = load(None, 2);
        let rest = load(first.last().map(spool::Queued::position), 10);
        let rest: Vec<i64> = rest.iter().map(|q| q.id).collect();
        assert_eq!(rest, [ids[4], ids[0], ids[2], ids[5]]);
        s.close();
    }

    #[tokio::test]
    async fn an_unguarded_failure_rolls_back_its_group_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // Queued together, so they share one transaction.
        let guarded = store
            .write_detached(|tx| {
                tx.execute("INSERT INTO kv(key, value) VALUES ('kept?', 1)", [])?;
                Ok(())
            })
            .unwrap();
        let failing = store
            .write_unguarded_detached(|tx| {
                tx.execute("INSERT INTO kv(key, value) VALUES ('half', 1)", [])?;
                Err::<(), _>(StoreError::Sqlite(rusqlite::Error::InvalidQuery))
            })
            .unwrap();
        let own = failing.await.unwrap().unwrap_err();
        assert!(matches!(own, StoreError::Sqlite(_)), "{own}");
        let neighbour = guarded.await.unwrap().unwrap_err();
        assert!(
            matches!(neighbour, StoreError::CommitFailed(_)),
            "{neighbour}"
        );
        let n: i64 = store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 0, "nothing of the group may remain");
        // The store goes on.
        store
            .write_unguarded(|tx| {
                tx.execute("INSERT INTO kv(key, value) VALUES ('after', 1)", [])?;
                Ok(())
            })
            .await
            .unwrap();
        store.close();
    }

    #[test]
    fn a_page_keeps_limit_rows_and_points_at_the_last_when_more_follow() {
        assert_eq!(page(vec![5, 4, 3], 2, |v| *v), (vec![5, 4], Some(4)));
        assert_eq!(page(vec![5, 4], 2, |v| *v), (vec![5, 4], None));
        assert_eq!(page(Vec::<i64>::new(), 2, |v| *v), (vec![], None));
    }

    #[test]
    fn the_hot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        for (sql, index) in spool::HOT_QUERIES {
            let plan = query_plan(&s, sql);
            assert!(
                plan.contains(&format!("INDEX {index}")),
                "{sql}\n  wants {index}, plan: {plan}"
            );
        }
        s.close();
    }

    #[test]
    fn a_newer_schema_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Connection::open(dir.path().join("smsgate.db")).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Store::open(dir.path(), crate::runtime::Heartbeat::detached())
            .err()
            .unwrap();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer smsgate"));
    }

    #[test]
    fn reopening_keeps_data_and_does_not_migrate_twice() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        s.write_blocking(|tx| {
            tx.execute("INSERT INTO kv(key, value) VALUES ('x', 7)", [])?;
            Ok(())
        })
        .unwrap();
        s.close();
        let s = open(dir.path());
        let v: i64 = s
            .read_blocking(|c| Ok(c.query_row("SELECT value FROM kv", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(v, 7);
        let wal: String = s
            .read_blocking(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(wal, "wal");
        s.close();
    }
}
