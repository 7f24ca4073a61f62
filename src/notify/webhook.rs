//! One webhook's worker: reads the event log after the webhook's position,
//! hands each wanted event to a lane (an interaction always to the same
//! lane, events with no interaction all to lane 0), and each lane delivers
//! its events one at a time, in order, retrying with exponential backoff
//! and jitter until the receiver answers 2xx or the delivery has failed
//! for `dead_letter_after` (then it goes to `webhook_dead` and the lane
//! moves on).
//!
//! The position written to the store is the lowest event still in a lane,
//! less one: everything up to it is delivered, dead-lettered or not
//! wanted. It is written every [`SAVE_EVERY`] and when the worker stops,
//! so a crash re-sends at most what was delivered since (at least once,
//! and per interaction in the same order: a lane's events are re-sent in
//! sequence order). At most [`WINDOW`] events are in the lanes at once,
//! which bounds both the memory a backlog takes and how much a crash
//! re-sends.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookConfig;
use crate::metrics::{WebhookLabel, WebhookOutcomeLabels};
use crate::runtime::Shared;
use crate::store::{events, outbox};

/// Events read from the log at once.
const BATCH: usize = 512;
/// Events handed to the lanes and not finished, at most.
const WINDOW: usize = 4096;
/// How often the position is written while it moves.
const SAVE_EVERY: Duration = Duration::from_millis(250);
/// A receiver's answer body is read up to this much (so the connection
/// can be reused), then dropped.
const ANSWER_CAP: usize = 64 * 1024;

/// What the API shows of a running worker.
pub struct Status {
    /// Everything up to here is delivered, dead-lettered or not wanted.
    delivered: AtomicI64,
    /// Events after the position not finished yet.
    backlog: AtomicI64,
    /// Unix ms of the last delivery the receiver took.
    last_success: AtomicI64,
    inner: Mutex<Episode>,
}

#[derive(Default)]
struct Episode {
    /// The first failure since the last delivery any lane made: what the
    /// dead-letter time counts from when it is earlier than a delivery's
    /// own first failure.
    since: Option<Instant>,
    /// Lanes whose last attempt failed. The receiver is failing while any
    /// is; the episode (one journal line, then one at recovery) runs from
    /// the first lane failing to the last one recovering.
    failing_lanes: std::collections::BTreeSet<usize>,
    /// When the episode began (unix ms), for the API.
    episode_at: Option<(Instant, i64)>,
    last_error: Option<(i64, String)>,
    failures: u64,
    dead_letters: u64,
}

impl Status {
    pub fn new(start: i64) -> Self {
        Self {
            delivered: AtomicI64::new(start),
            backlog: AtomicI64::new(0),
            last_success: AtomicI64::new(0),
            inner: Mutex::new(Episode::default()),
        }
    }

    fn episode(&self) -> std::sync::MutexGuard<'_, Episode> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An attempt of `lane` failed; since when the receiver has delivered
    /// nothing. The first failure of an episode is a journal line, the
    /// others are not.
    fn failed(&self, webhook: &str, lane: usize, error: &str) -> Instant {
        let mut e = self.episode();
        let now = Instant::now();
        e.last_error = Some((crate::now_ms(), error.to_string()));
        if e.failing_lanes.is_empty() {
            e.episode_at = Some((now, crate::now_ms()));
            e.failures = 0;
            e.dead_letters = 0;
            tracing::warn!(webhook = %webhook, error = %error, "webhook receiver failing; deliveries are retried with backoff (said once until it recovers)");
        }
        e.failing_lanes.insert(lane);
        e.failures += 1;
        *e.since.get_or_insert(now)
    }

    fn succeeded(&self, webhook: &str, lane: usize) {
        self.last_success.store(crate::now_ms(), Ordering::Relaxed);
        let mut e = self.episode();
        e.since = None;
        if e.failing_lanes.remove(&lane) && e.failing_lanes.is_empty() {
            let took = e
                .episode_at
                .take()
                .map_or(0, |(at, _)| at.elapsed().as_secs());
            tracing::info!(
                webhook = %webhook,
                failed_for_s = took,
                failed_attempts = e.failures,
                dead_lettered = e.dead_letters,
                "webhook receiver recovered"
            );
        }
    }

    fn dead_lettered(&self, webhook: &str, seq: i64) {
        let mut e = self.episode();
        e.dead_letters += 1;
        if e.dead_letters == 1 {
            tracing::warn!(webhook = %webhook, seq, "webhook deliveries are being dead-lettered (failing for longer than dead_letter_after_s); listed at /api/v1/webhooks/{webhook}/dead-letters");
        }
    }
}

/// A webhook as `GET /api/v1/webhooks` shows it.
#[derive(Debug, serde::Serialize)]
pub struct WebhookView {
    pub name: String,
    pub url: String,
    /// Kind patterns (empty: every kind).
    pub events: Vec<String>,
    pub campaigns: Vec<String>,
    /// Every event up to this sequence number is delivered, dead-lettered
    /// or not wanted.
    pub delivered_seq: i64,
    /// Events after it not finished yet.
    pub backlog: i64,
    pub failing: bool,
    /// RFC 3339.
    pub failing_since: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub last_success_at: Option<String>,
    /// Dead letters not replayed yet, and all of them.
    pub dead_letters: i64,
    pub dead_letters_total: i64,
}

fn rfc3339(ms: i64) -> Option<String> {
    (ms > 0)
        .then(|| jiff::Timestamp::from_millisecond(ms).ok())
        .flatten()
        .map(|t| t.to_string())
}

pub fn view(
    cfg: &WebhookConfig,
    row: Option<&outbox::OutboxRow>,
    status: Option<&Status>,
    newest: i64,
) -> WebhookView {
    let stored = row.map_or(0, |r| r.delivered);
    let (delivered, backlog) = match status {
        Some(s) => (
            s.delivered.load(Ordering::Relaxed).max(stored),
            s.backlog.load(Ordering::Relaxed),
        ),
        None => (stored, (newest - stored).max(0)),
    };
    let (failing_since, last_error) = match status {
        Some(s) => {
            let e = s.episode();
            (e.episode_at.map(|(_, ms)| ms), e.last_error.clone())
        }
        None => (None, None),
    };
    WebhookView {
        name: cfg.name.clone(),
        url: cfg.url.clone(),
        events: cfg.kinds.patterns().to_vec(),
        campaigns: cfg.campaigns.clone(),
        delivered_seq: delivered,
        backlog,
        failing: failing_since.is_some(),
        failing_since: failing_since.and_then(rfc3339),
        last_error_at: last_error.as_ref().and_then(|(at, _)| rfc3339(*at)),
        last_error: last_error.map(|(_, e)| e),
        last_success_at: status.and_then(|s| rfc3339(s.last_success.load(Ordering::Relaxed))),
        dead_letters: row.map_or(0, |r| r.dead_open),
        dead_letters_total: row.map_or(0, |r| r.dead_total),
    }
}

/// The HTTP client of one webhook: kept-alive connections, one per lane,
/// no redirects followed (a redirect would send the signed body elsewhere).
pub fn client(cfg: &WebhookConfig) -> Result<reqwest::Client, String> {
    let tls = crate::tls::client_config(&crate::tls::TlsVerify::System)
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .timeout(cfg.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(cfg.lanes)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("smsgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Why one attempt failed, in words fit for a log (never the secret: it
/// is only ever in the signature header, and the URL holds none).
pub struct Failure {
    pub text: String,
    /// A 429's or 503's Retry-After, in seconds.
    pub retry_after: Option<u64>,
}

/// One signed POST of `body`; Ok when the receiver answered 2xx.
pub async fn post(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    body: &Bytes,
    kind: &str,
    seq: i64,
    replay: bool,
) -> Result<(), Failure> {
    let t = crate::now_ms() / 1000;
    let signature = smsgate_proto::webhook::sign(cfg.secret.expose().as_bytes(), t, body);
    let mut req = client
        .post(&cfg.url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(smsgate_proto::webhook::HEADER, signature)
        .header("X-Smsgate-Event", kind)
        .header("X-Smsgate-Delivery", format!("{}:{seq}", cfg.name))
        .body(body.clone());
    if replay {
        req = req.header("X-Smsgate-Replay", "true");
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Err(Failure {
                text: describe(&e, cfg),
                retry_after: None,
            });
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Read the answer (bounded) so the connection goes back to the pool.
    let mut read = 0;
    while let Ok(Some(chunk)) = resp.chunk().await {
        read += chunk.len();
        if read > ANSWER_CAP {
            break;
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure {
            text: format!("the receiver answered HTTP {}", status.as_u16()),
            retry_after,
        })
    }
}

fn describe(e: &reqwest::Error, cfg: &WebhookConfig) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s (timeout_s)", cfg.timeout.as_secs());
    }
    let mut text = if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One event handed to a lane.
struct Job {
    seq: i64,
    kind: Arc<str>,
    body: Bytes,
}

/// What the lanes share.
struct Lane {
    shared: Shared,
    cfg: Arc<WebhookConfig>,
    client: reqwest::Client,
    status: Arc<Status>,
    stop: CancellationToken,
}

/// The lane of an event: its interaction's, or lane 0.
fn lane_of(interaction: Option<i64>, lanes: usize) -> usize {
    match interaction {
        // Interaction ids are dense; a multiplicative hash spreads any
        // pattern of them.
        Some(i) => (((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % lanes as u64) as usize,
        None => 0,
    }
}

/// The worker of one webhook, from position `start`, until `stop`.
pub async fn run(
    shared: Shared,
    cfg: Arc<WebhookConfig>,
    start: i64,
    status: Arc<Status>,
    mut tail: watch::Receiver<i64>,
    stop: CancellationToken,
) {
    let client = match client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %cfg.name, error = %e, "webhook worker cannot start");
            return;
        }
    };
    let label = WebhookLabel {
        webhook: cfg.name.clone(),
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
    let lanes_tracker = TaskTracker::new();
    let ctx = Arc::new(Lane {
        shared: shared.clone(),
        cfg: cfg.clone(),
        client,
        status: status.clone(),
        stop: stop.clone(),
    });
    let lanes: Vec<mpsc::Sender<Job>> = (0..cfg.lanes)
        .map(|i| {
            let (tx, rx) = mpsc::channel(WINDOW);
            lanes_tracker.spawn(lane(ctx.clone(), i, rx, done_tx.clone()));
            tx
        })
        .collect();
    drop(done_tx);
    lanes_tracker.close();

    let mut cursor = start;
    let mut saved = start;
    let mut last_save = Instant::now();
    let mut inflight: BTreeSet<i64> = BTreeSet::new();
    let mut newest = shared.store.read(events::newest).await.unwrap_or(start);
    'work: loop {
        newest = newest.max(*tail.borrow_and_update());
        while let Ok(seq) = done_rx.try_recv() {
            inflight.remove(&seq);
        }
        if inflight.len() < WINDOW && cursor < newest {
            let from = cursor;
            let batch = match shared
                .store
                .read(move |c| events::after(c, from, BATCH))
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(webhook = %cfg.name, error = %e, "cannot read the event log; trying again in a second");
                    tokio::select! {
                        _ = stop.cancelled() => break 'work,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'work,
                    }
                }
            };
            let complete = batch.len() < BATCH;
            for e in batch {
                cursor = e.seq;
                if !cfg.wants(&e.kind, e.campaign.as_deref()) {
                    continue;
                }
                inflight.insert(e.seq);
                let job = Job {
                    seq: e.seq,
                    kind: Arc::from(e.kind.as_str()),
                    body: Bytes::from(super::payload::body(&e)),
                };
                let to = &lanes[lane_of(e.interaction, lanes.len())];
                tokio::select! {
                    _ = stop.cancelled() => break 'work,
                    sent = to.send(job) => if sent.is_err() { break 'work },
                }
            }
            // Everything committed up to `newest` was read: the numbers
            // between (purged, or rolled back) are passed over.
            if complete {
                cursor = cursor.max(newest);
            }
        }
        let position = inflight.first().map_or(cursor, |first| first - 1);
        status.delivered.store(position, Ordering::Relaxed);
        let backlog = (newest - position).max(0);
        status.backlog.store(backlog, Ordering::Relaxed);
        shared
            .metrics
            .webhook_backlog
            .get_or_create(&label)
            .set(backlog);
        if position > saved && last_save.elapsed() >= SAVE_EVERY {
            save(&shared, &cfg.name, position).await;
            saved = position;
            last_save = Instant::now();
        }
        let more_to_read = inflight.len() < WINDOW && cursor < newest;
        if more_to_read {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break 'work,
            d = done_rx.recv() => match d {
                Some(seq) => { inflight.remove(&seq); }
                None => break 'work,
            },
            changed = tail.changed() => if changed.is_err() { break 'work },
            _ = tokio::time::sleep(SAVE_EVERY), if position > saved => {}
        }
    }
    // Stopping: the lanes give up their current attempt; what they
    // finished still counts.
    let _ = tokio::time::timeout(Duration::from_secs(2), lanes_tracker.wait()).await;
    while let Ok(seq) = done_rx.try_recv() {
        inflight.remove(&seq);
    }
    let position = inflight.first().map_or(cursor, |first| first - 1);
    if position > saved {
        save(&shared, &cfg.name, position).await;
    }
    status.delivered.store(position, Ordering::Relaxed);
}

async fn save(shared: &Shared, webhook: &str, position: i64) {
    let name = webhook.to_string();
    if let Err(e) = shared
        .store
        .write(move |tx| outbox::advance(tx, &name, position))
        .await
    {
        tracing::warn!(webhook = %webhook, error = %e, "cannot record the webhook's position; deliveries since are sent again after a restart");
    }
}

async fn lane(
    ctx: Arc<Lane>,
    index: usize,
    mut jobs: mpsc::Receiver<Job>,
    done: mpsc::UnboundedSender<i64>,
) {
    loop {
        let job = tokio::select! {
            _ = ctx.stop.cancelled() => return,
            j = jobs.recv() => match j { Some(j) => j, None => return },
        };
        if !deliver(&ctx, index, &job).await {
            return;
        }
        if done.send(job.seq).is_err() {
            return;
        }
    }
}

/// Delivers one event until the receiver takes it or it is dead-lettered;
/// false when stopped first.
async fn deliver(ctx: &Lane, lane: usize, job: &Job) -> bool {
    let cfg = &ctx.cfg;
    let outcome = |o| WebhookOutcomeLabels {
        webhook: cfg.name.clone(),
        outcome: o,
    };
    let mut attempts: u32 = 0;
    let mut first_failure: Option<(Instant, i64)> = None;
    loop {
        attempts += 1;
        match post(&ctx.client, cfg, &job.body, &job.kind, job.seq, false).await {
            Ok(()) => {
                ctx.shared
                    .metrics
                    .webhook_deliveries
                    .get_or_create(&outcome("delivered"))
                    .inc();
                ctx.status.succeeded(&cfg.name, lane);
                return true;
            }
            Err(f) => {
                ctx.shared
                    .metrics
                    .webhook_deliveries
                    .get_or_create(&outcome("failed"))
                    .inc();
                let now = Instant::now();
                let (mine, first_ms) = *first_failure.get_or_insert((now, crate::now_ms()));
                let episode = ctx.status.failed(&cfg.name, lane, &f.text);
                // Failing for long enough: this delivery's own failures,
                // or the receiver's whole episode (a receiver down for a
                // day does not make every queued event wait a day more).
                let since = mine.min(episode);
                let give_up_at = since + cfg.dead_letter_after;
                if now >= give_up_at {
                    let dead = outbox::NewDeadLetter {
                        webhook: cfg.name.clone(),
                        seq: job.seq,
                        kind: job.kind.to_string(),
                        body: String::from_utf8_lossy(&job.body).into_owned(),
                        attempts: i64::from(attempts),
                        first_at: first_ms,
                        last_error: f.text.clone(),
                    };
                    loop {
                        let d = dead.clone();
                        match ctx.shared.store.write(move |tx| outbox::bury(tx, &d)).await {
                            Ok(_) => break,
                            Err(e) => {
                                tracing::warn!(webhook = %cfg.name, seq = job.seq, error = %e, "cannot record a dead letter; trying again");
                                tokio::select! {
                                    _ = ctx.stop.cancelled() => return false,
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                            }
                        }
                    }
                    ctx.shared
                        .metrics
                        .webhook_deliveries
                        .get_or_create(&outcome("dead_lettered"))
                        .inc();
                    ctx.shared
                        .metrics
                        .webhook_dead_letters
                        .get_or_create(&WebhookLabel {
                            webhook: cfg.name.clone(),
                        })
                        .inc();
                    ctx.status.dead_lettered(&cfg.name, job.seq);
                    return true;
                }
                let wait = backoff(cfg, attempts, f.retry_after, job.seq)
                    .min(give_up_at - now)
                    .max(Duration::from_millis(10));
                tokio::select! {
                    _ = ctx.stop.cancelled() => return false,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: `retry_initial` doubled per
/// failure up to `retry_max`, a random half of it taken off (jitter, so
/// lanes and webhooks do not retry in step); a Retry-After is honoured up
/// to `retry_max`.
fn backoff(cfg: &WebhookConfig, attempts: u32, retry_after: Option<u64>, seed: i64) -> Duration {
    let full = cfg
        .retry_initial
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(cfg.retry_max);
    let jitter = jitter(seed, attempts);
    let d = full.mul_f64(1.0 - jitter / 2.0);
    match retry_after {
        Some(s) => d.max(Duration::from_secs(s).min(cfg.retry_max)),
        None => d,
    }
}

/// A number in [0, 1) from the clock and the event: enough to spread
/// retries, no generator kept.
fn jitter(seed: i64, attempts: u32) -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = (seed as u64) ^ (u64::from(nanos) << 16) ^ u64::from(attempts);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WebhookConfig {
        WebhookConfig {
            name: "w".into(),
            url: "http://127.0.0.1:1/".into(),
            secret: crate::config::Secret::new("0123456789abcdef"),
            kinds: Default::default(),
            campaigns: vec![],
            timeout: Duration::from_secs(1),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            dead_letter_after: Duration::from_secs(86_400),
            lanes: 4,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let c = cfg();
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (40, 300)] {
            let d = backoff(&c, attempts, None, 7);
            let full = Duration::from_secs(full);
            assert!(d <= full && d >= full / 2, "{attempts}: {d:?}");
        }
        assert_eq!(
            backoff(&c, 1, Some(30), 7),
            Duration::from_secs(30),
            "Retry-After"
        );
        assert_eq!(backoff(&c, 1, Some(9999), 7), Duration::from_secs(300));
    }

    /// One episode from the first lane failing to the last recovering;
    /// the dead-letter clock restarts with any delivery.
    #[test]
    fn an_episode_lasts_until_every_lane_recovers() {
        let c = cfg();
        let s = Status::new(0);
        let first = s.failed("w", 0, "HTTP 500");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.failed("w", 1, "HTTP 500"), first);
        let started = s.episode().episode_at.unwrap().0;
        s.succeeded("w", 0);
        assert!(view(&c, None, Some(&s), 0).failing, "lane 1 still fails");
        let again = s.failed("w", 1, "HTTP 500");
        assert!(again > first, "a delivery restarted the dead-letter clock");
        assert_eq!(
            s.episode().episode_at.unwrap().0,
            started,
            "the same episode"
        );
        s.succeeded("w", 1);
        let v = view(&c, None, Some(&s), 0);
        assert!(!v.failing && v.failing_since.is_none());
        assert_eq!(v.last_error.as_deref(), Some("HTTP 500"));
    }

    #[test]
    fn an_interaction_keeps_its_lane_and_the_rest_share_lane_zero() {
        assert_eq!(lane_of(None, 4), 0);
        for i in 0..100 {
            assert_eq!(lane_of(Some(i), 4), lane_of(Some(i), 4));
            assert!(lane_of(Some(i), 4) < 4);
        }
        let used: std::collections::HashSet<usize> =
            (0..100).map(|i| lane_of(Some(i), 4)).collect();
        assert_eq!(used.len(), 4, "interactions spread over every lane");
    }
}
