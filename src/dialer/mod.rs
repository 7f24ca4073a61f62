//! Outbound dialers: the loader loop of each dialer (`loader`), its
//! round-robin hand-out to channels (`dispatch`), what a crash left in
//! SENDING (`reconcile`), the one way messages come in (`submit`: single
//! sends and imports), an operator's stop, start and cancel (`control`),
//! and the file parsers (`import`, `importer`, `dncr_import`). Their schedules and dial strings are parsed with the
//! config (`config::schedule`, `config::dialstring`); which channels a
//! dialer may use now is the gateways' call (`gateways::Failover`).

pub mod control;
mod dispatch;
pub mod dncr_import;
pub mod import;
pub mod importer;
mod limits;
mod lines;
mod loader;
pub mod reconcile;
pub mod submit;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, DialerConfig};
use crate::gateways::Gateways;
use crate::runtime::Shared;

/// The seed's loader: at most this many messages of one dialer waiting in
/// memory for a channel. Handed to a channel, a message is in that
/// channel's queue (at most twice its claim depth), no longer the loader's.
pub const IN_MEMORY: usize = 50;

/// Why the dialer layer refused something: a message (`submit`), a file
/// (`importer`) or an operator's action (`control`). Each says what to fix;
/// the API picks the status and code by the way in.
#[derive(Debug, thiserror::Error)]
pub enum DialerError {
    #[error("no dialer is named {name:?}; configured dialers: {}", known.join(", "))]
    UnknownDialer { name: String, known: Vec<String> },
    #[error("dialer {0:?} is disabled in the config (enabled = false); enable it there and reload")]
    Disabled(String),
    #[error("the text is empty")]
    EmptyText,
    #[error(
        "the text needs {segments} SMS parts ({encoding}); at most {max} are sent (1530 GSM-7 or 670 UCS-2 characters)",
        max = smsgate_proto::sms::MAX_SEGMENTS
    )]
    TooManyParts {
        segments: usize,
        encoding: &'static str,
    },
    #[error(
        "the text is {length} characters long; dialer {dialer:?} sends through the Dinstar gateway {gateway:?}, which takes at most {max}"
    )]
    TooLong {
        length: usize,
        max: usize,
        dialer: String,
        gateway: String,
    },
    #[error(
        "priority must be between {min} (urgent) and {max} (routine), found {0}",
        min = crate::config::MIN_PRIORITY,
        max = crate::config::MAX_PRIORITY
    )]
    BadPriority(i64),
    #[error(
        "client_id must be 1 to {} printable characters",
        submit::MAX_CLIENT_ID
    )]
    BadClientId,
    #[error("{to:?} cannot be a phone number: {reason}")]
    InvalidNumber { to: String, reason: String },
    #[error("the template cannot be sent: {0}")]
    BadTemplate(String),
    #[error(
        "dialer {dialer:?} sends through no WhatsApp gateway, and only WhatsApp gateways (kind whatsapp-cloud, or twilio with channel = \"whatsapp\") send templates; send text instead"
    )]
    TemplateNeedsWhatsApp { dialer: String },
    #[error(
        "{number} is outside WhatsApp's 24-hour customer-service window on every gateway of dialer {dialer:?} ({since}): free text would be refused; send a template (\"template\": {{\"name\", \"language\"}}, \"variables\")"
    )]
    OutsideWindow {
        number: String,
        dialer: String,
        since: String,
    },
    /// The client id was used before for another message.
    #[error("{0}")]
    ClientIdReused(String),
    /// The file's name breaks the seed's rule.
    #[error("{0}")]
    FileName(#[from] import::ImportError),
    #[error("{count} line(s) refused; nothing was imported")]
    Lines {
        errors: Vec<import::LineError>,
        count: u64,
    },
    #[error("the file is empty")]
    Empty,
    #[error("the upload could not be read: {0}")]
    Read(String),
    #[error("the upload is larger than [api] max_upload_bytes")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Whether a dialer may send at `now`. A dialer without a schedule is
/// always in schedule.
pub fn in_schedule(config: &Config, dialer: &DialerConfig, now: jiff::Timestamp) -> bool {
    match &dialer.schedule {
        None => true,
        Some(name) => config.schedules.get(name).is_some_and(|s| s.is_open(now)),
    }
}

#[derive(Default)]
struct Rate {
    /// Sends per second over the last minute, in one-second buckets.
    buckets: VecDeque<(i64, u64)>,
}

impl Rate {
    fn add(&mut self, now_s: i64) {
        match self.buckets.back_mut() {
            Some((s, n)) if *s == now_s => *n += 1,
            _ => self.buckets.push_back((now_s, 1)),
        }
        while self.buckets.front().is_some_and(|(s, _)| *s < now_s - 60) {
            self.buckets.pop_front();
        }
    }
    fn per_minute(&self, now_s: i64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| *s >= now_s - 60)
            .map(|(_, n)| n)
            .sum()
    }
}

/// What the API and the inbound side can see and poke of a running dialer.
struct DialerHandle {
    wake: Arc<Notify>,
    /// Stopped by an operator; the store holds it across restarts, this is
    /// the loop's copy so it need not read the store on every turn.
    stopped: Arc<AtomicBool>,
    in_memory: Arc<Mutex<usize>>,
    rate: Arc<Mutex<Rate>>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DialerLive {
    pub in_memory: usize,
    pub rate_per_minute: u64,
}

/// The running dialers, one loader loop each. Cheap to clone.
#[derive(Clone)]
pub struct Dialers {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    gateways: Gateways,
    running: Mutex<HashMap<String, DialerHandle>>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Dialers {
    pub fn new(
        shared: Shared,
        gateways: Gateways,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                shared,
                gateways,
                running: Mutex::new(HashMap::new()),
                tracker,
                stop,
            }),
        }
    }

    /// Starts a loader for each dialer the config names that has none, and
    /// wakes the others (a reload may have changed their settings). Loops
    /// of removed dialers notice on their own and end.
    pub fn sync(&self, config: &Config) {
        let Ok(mut running) = self.inner.running.lock() else {
            return;
        };
        for d in &config.dialers {
            if let Some(h) = running.get(&d.name) {
                h.wake.notify_one();
                continue;
            }
            let handle = DialerHandle {
                wake: Arc::new(Notify::new()),
                stopped: Arc::new(AtomicBool::new(false)),
                in_memory: Arc::new(Mutex::new(0)),
                rate: Arc::new(Mutex::new(Rate::default())),
            };
            let looper = loader::DialerLoop {
                name: d.name.clone(),
                shared: self.inner.shared.clone(),
                gateways: self.inner.gateways.clone(),
                stop: self.inner.stop.clone(),
                wake: handle.wake.clone(),
                stopped: handle.stopped.clone(),
                in_memory: handle.in_memory.clone(),
                rate: handle.rate.clone(),
                heartbeat: self
                    .inner
                    .shared
                    .heartbeats
                    .register(format!("dialer {}", d.name)),
            };
            self.inner.tracker.spawn(looper.run());
            running.insert(d.name.clone(), handle);
        }
        running.retain(|name, _| config.dialers.iter().any(|d| &d.name == name));
    }

    /// Records an operator's stop or start (already written to the store).
    pub fn set_stopped(&self, dialer: &str, stopped: bool) {
        if let Ok(d) = self.inner.running.lock() {
            if let Some(h) = d.get(dialer) {
                h.stopped.store(stopped, Ordering::SeqCst);
                h.wake.notify_one();
            }
        }
    }

    /// Wakes a dialer's loader (new messages, start, stop, a message back
    /// in its queue).
    pub fn wake(&self, dialer: &str) {
        if let Ok(d) = self.inner.running.lock() {
            if let Some(h) = d.get(dialer) {
                h.wake.notify_one();
            }
        }
    }

    pub fn live(&self, name: &str) -> DialerLive {
        let now_s = crate::now_ms() / 1000;
        self.inner
            .running
            .lock()
            .ok()
            .and_then(|d| {
                d.get(name).map(|h| DialerLive {
                    in_memory: h.in_memory.lock().map(|n| *n).unwrap_or(0),
                    rate_per_minute: h.rate.lock().map(|r| r.per_minute(now_s)).unwrap_or(0),
                })
            })
            .unwrap_or(DialerLive {
                in_memory: 0,
                rate_per_minute: 0,
            })
    }
}
