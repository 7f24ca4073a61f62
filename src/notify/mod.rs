//! Events to the portal: the webhook outbox (one worker per `[[webhook]]`,
//! durable through `store::outbox`) and the core of the event stream
//! (`GET /api/v1/events`). Both read the event log (`store::events`) from a
//! position; neither keeps a copy of it, so whatever is committed is
//! delivered, whoever wrote it and whatever its kind.
//!
//! A tail task watches the newest sequence number (a small read every
//! 100 ms while anyone listens, none otherwise) and wakes the workers and
//! streams; the config watcher starts, stops and restarts workers when a
//! reload adds, removes or changes a webhook.

mod payload;
mod stream;
mod webhook;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use payload::body;
pub use stream::{EventStream, Frame, StreamRequest};
pub use webhook::WebhookView;

use crate::config::{Config, WebhookConfig};
use crate::runtime::Shared;
use crate::store::{StoreError, events, outbox};

/// How often the newest sequence number is read while someone listens.
const TAIL_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no webhook {0:?} in the config")]
    UnknownWebhook(String),
    #[error("webhook {webhook:?} has no dead letter {id}")]
    NoDeadLetter { webhook: String, id: i64 },
    #[error("the receiver did not take the replayed delivery: {0}")]
    Receiver(String),
    #[error(
        "{0} event streams are open already ([events] max_streams); close one or try again later"
    )]
    TooManyStreams(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Cheap to clone; every clone is the same notifier.
#[derive(Clone)]
pub struct Notify {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    tail: watch::Sender<i64>,
    workers: tokio::sync::Mutex<HashMap<String, Running>>,
    /// What the API shows of each configured webhook.
    views: Mutex<HashMap<String, Arc<webhook::Status>>>,
    streams: Arc<AtomicUsize>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

struct Running {
    config: Arc<WebhookConfig>,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Notify {
    /// Starts the tail, the webhook workers of the running config and the
    /// config watcher, all on `tracker` until `stop`.
    pub async fn start(shared: Shared, tracker: TaskTracker, stop: CancellationToken) -> Self {
        let newest = shared.store.read(events::newest).await.unwrap_or(0);
        let (tail, _) = watch::channel(newest);
        let notify = Self {
            inner: Arc::new(Inner {
                shared: shared.clone(),
                tail,
                workers: tokio::sync::Mutex::new(HashMap::new()),
                views: Mutex::new(HashMap::new()),
                streams: Arc::new(AtomicUsize::new(0)),
                tracker: tracker.clone(),
                stop: stop.clone(),
            }),
        };
        tracker.spawn(notify.clone().tail_loop());
        notify.sync(&shared.config()).await;
        tracker.spawn(notify.clone().config_loop());
        notify
    }

    async fn tail_loop(self) {
        let inner = &self.inner;
        loop {
            let idle = inner.tail.receiver_count() == 0;
            tokio::select! {
                _ = inner.stop.cancelled() => return,
                _ = tokio::time::sleep(if idle { TAIL_POLL * 5 } else { TAIL_POLL }) => {}
            }
            if inner.tail.receiver_count() == 0 {
                continue;
            }
            if let Ok(n) = inner.shared.store.read(events::newest).await {
                inner.tail.send_if_modified(|v| {
                    let newer = n > *v;
                    if newer {
                        *v = n;
                    }
                    newer
                });
            }
        }
    }

    async fn config_loop(self) {
        let mut rx = self.inner.shared.config.clone();
        loop {
            tokio::select! {
                _ = self.inner.stop.cancelled() => break,
                changed = rx.changed() => {
                    if changed.is_err() { break; }
                    let config = rx.borrow_and_update().clone();
                    self.sync(&config).await;
                }
            }
        }
        // A graceful stop: each worker writes its position before it ends.
        let mut workers = self.inner.workers.lock().await;
        for (_, w) in workers.drain() {
            w.stop.cancel();
            let _ = w.done.await;
        }
    }

    /// Brings the running workers in line with `config`: a removed or
    /// changed webhook's worker is stopped (it writes its position), the
    /// outbox table is made to hold exactly the configured webhooks (a new
    /// one starts at the newest event), then new and changed ones start.
    async fn sync(&self, config: &Config) {
        let mut workers = self.inner.workers.lock().await;
        let wanted: HashMap<&str, &WebhookConfig> = config
            .webhooks
            .iter()
            .map(|w| (w.name.as_str(), w))
            .collect();
        let stale: Vec<String> = workers
            .iter()
            .filter(|(name, w)| wanted.get(name.as_str()) != Some(&&*w.config))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(w) = workers.remove(&name) {
                w.stop.cancel();
                let _ = w.done.await;
                if !wanted.contains_key(name.as_str()) {
                    tracing::info!(webhook = %name, "webhook removed from the config; its worker stopped");
                }
            }
        }
        let names: Vec<String> = config.webhooks.iter().map(|w| w.name.clone()).collect();
        let positions = match self
            .inner
            .shared
            .store
            .write(move |tx| outbox::sync(tx, &names))
            .await
        {
            Ok(p) => p.into_iter().collect::<HashMap<_, _>>(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhooks' positions; webhooks are not delivered until the next reload or restart");
                return;
            }
        };
        {
            let mut views = self.inner.views.lock().unwrap_or_else(|p| p.into_inner());
            let metrics = &self.inner.shared.metrics;
            for gone in views.keys().filter(|n| !wanted.contains_key(n.as_str())) {
                let label = crate::metrics::WebhookLabel {
                    webhook: gone.clone(),
                };
                metrics.webhook_backlog.remove(&label);
                metrics.webhook_dead_letters.remove(&label);
            }
            views.retain(|name, _| wanted.contains_key(name.as_str()));
        }
        // The dead letters waiting for a replay, as the store has them.
        if let Ok(rows) = self.inner.shared.store.read(outbox::rows).await {
            for row in rows {
                self.inner
                    .shared
                    .metrics
                    .webhook_dead_letters
                    .get_or_create(&crate::metrics::WebhookLabel {
                        webhook: row.webhook,
                    })
                    .set(row.dead_open);
            }
        }
        for cfg in &config.webhooks {
            if workers.contains_key(&cfg.name) {
                continue;
            }
            let Some(&start) = positions.get(&cfg.name) else {
                continue;
            };
            let cfg = Arc::new(cfg.clone());
            let status = Arc::new(webhook::Status::new(start));
            self.inner
                .views
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(cfg.name.clone(), status.clone());
            let stop = self.inner.stop.child_token();
            let done = self.inner.tracker.spawn(webhook::run(
                self.inner.shared.clone(),
                cfg.clone(),
                start,
                status,
                self.inner.tail.subscribe(),
                stop.clone(),
            ));
            tracing::info!(webhook = %cfg.name, url = %cfg.url, from_seq = start, "webhook worker started");
            workers.insert(
                cfg.name.clone(),
                Running {
                    config: cfg,
                    stop,
                    done,
                },
            );
        }
    }

    /// Every configured webhook: where it stands, without its secret.
    pub async fn webhooks(&self) -> Result<Vec<WebhookView>, NotifyError> {
        let config = self.inner.shared.config();
        let rows = self.inner.shared.store.read(outbox::rows).await?;
        let newest = *self.inner.tail.borrow();
        let views = self
            .inner
            .views
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(config
            .webhooks
            .iter()
            .map(|cfg| {
                let row = rows.iter().find(|r| r.webhook == cfg.name);
                webhook::view(cfg, row, views.get(&cfg.name).map(|s| &**s), newest)
            })
            .collect())
    }

    fn webhook(&self, name: &str) -> Result<WebhookConfig, NotifyError> {
        self.inner
            .shared
            .config()
            .webhooks
            .iter()
            .find(|w| w.name == name)
            .cloned()
            .ok_or_else(|| NotifyError::UnknownWebhook(name.to_string()))
    }

    /// A webhook's dead letters, newest first.
    pub async fn dead_letters(
        &self,
        name: &str,
        open_only: bool,
        before_id: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<outbox::DeadLetter>, Option<i64>), NotifyError> {
        self.webhook(name)?;
        let name = name.to_string();
        Ok(self
            .inner
            .shared
            .store
            .read(move |c| outbox::list(c, &name, open_only, before_id, limit))
            .await?)
    }

    /// Sends one dead letter again, as it was (a fresh signature time),
    /// and marks it replayed once the receiver took it.
    pub async fn replay(&self, name: &str, id: i64) -> Result<outbox::DeadLetter, NotifyError> {
        let cfg = self.webhook(name)?;
        let n = name.to_string();
        let dead = self
            .inner
            .shared
            .store
            .read(move |c| outbox::get(c, &n, id))
            .await?
            .ok_or_else(|| NotifyError::NoDeadLetter {
                webhook: name.to_string(),
                id,
            })?;
        let client = webhook::client(&cfg).map_err(NotifyError::Receiver)?;
        self.replay_one(&cfg, &client, dead).await
    }

    async fn replay_one(
        &self,
        cfg: &WebhookConfig,
        client: &reqwest::Client,
        mut dead: outbox::DeadLetter,
    ) -> Result<outbox::DeadLetter, NotifyError> {
        let labels = |outcome| crate::metrics::WebhookOutcomeLabels {
            webhook: cfg.name.clone(),
            outcome,
        };
        let body = bytes::Bytes::from(dead.body.clone());
        if let Err(f) = webhook::post(client, cfg, &body, &dead.kind, dead.seq, true).await {
            self.inner
                .shared
                .metrics
                .webhook_deliveries
                .get_or_create(&labels("failed"))
                .inc();
            return Err(NotifyError::Receiver(f.text));
        }
        self.inner
            .shared
            .metrics
            .webhook_deliveries
            .get_or_create(&labels("replayed"))
            .inc();
        let (name, id) = (cfg.name.clone(), dead.id);
        self.inner
            .shared
            .store
            .write(move |tx| outbox::mark_replayed(tx, &name, id))
            .await?;
        if dead.replayed_at.is_none() {
            self.inner
                .shared
                .metrics
                .webhook_dead_letters
                .get_or_create(&crate::metrics::WebhookLabel {
                    webhook: cfg.name.clone(),
                })
                .dec();
        }
        dead.replayed_at = Some(crate::now_ms());
        tracing::info!(webhook = %cfg.name, dead_letter = dead.id, seq = dead.seq, "dead letter replayed");
        Ok(dead)
    }

    /// Replays a webhook's dead letters not replayed yet, oldest first, at
    /// most `limit`, stopping at the first the receiver refuses: how many
    /// went, and what stopped it.
    pub async fn replay_all(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<(usize, Option<(i64, String)>), NotifyError> {
        let cfg = self.webhook(name)?;
        let n = name.to_string();
        let open = self
            .inner
            .shared
            .store
            .read(move |c| outbox::open_oldest(c, &n, limit.clamp(1, 10_000)))
            .await?;
        let client = webhook::client(&cfg).map_err(NotifyError::Receiver)?;
        let mut replayed = 0;
        for dead in open {
            let id = dead.id;
            match self.replay_one(&cfg, &client, dead).await {
                Ok(_) => replayed += 1,
                Err(NotifyError::Receiver(why)) => return Ok((replayed, Some((id, why)))),
                Err(e) => return Err(e),
            }
        }
        Ok((replayed, None))
    }

    /// Opens an event stream, if a slot is free.
    pub async fn stream(&self, req: StreamRequest) -> Result<EventStream, NotifyError> {
        let max = self.inner.shared.config().events.max_streams;
        let open = self.inner.streams.fetch_add(1, Ordering::AcqRel);
        let slot = stream::Slot::new(
            self.inner.streams.clone(),
            self.inner.shared.metrics.clone(),
        );
        if open >= max {
            drop(slot);
            return Err(NotifyError::TooManyStreams(max));
        }
        EventStream::open(
            self.inner.shared.clone(),
            req,
            self.inner.tail.subscribe(),
            slot,
        )
        .await
    }
}
