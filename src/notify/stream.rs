//! The core of `GET /api/v1/events`: the events after a position, as
//! Server-Sent Events frames (`id: <seq>`, `event: <kind>`, `data: <json>`),
//! then the new ones as they are committed, with a heartbeat comment on a
//! quiet stream. Resuming from the last id seen gives exactly the events
//! after it: the log is read by sequence number, never from memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use super::NotifyError;
use crate::config::KindFilter;
use crate::metrics::Metrics;
use crate::runtime::Shared;
use crate::store::events::{self, Event};

/// Events read from the log at once.
const BATCH: usize = 500;

/// What a stream asks for.
#[derive(Debug, Clone, Default)]
pub struct StreamRequest {
    /// Start after this sequence number (`Last-Event-ID`, or `after=`);
    /// None: only what comes from now on.
    pub after: Option<i64>,
    pub kinds: KindFilter,
    pub campaign: Option<String>,
    /// Only this interaction's events (a supervisor's spy).
    pub interaction: Option<i64>,
    /// Only events about this agent (its `agent` field): its state, what
    /// it is given, its supervisor's chat.
    pub agent: Option<String>,
}

/// One thing sent on a stream.
#[derive(Debug)]
pub enum Frame {
    /// The events between `after` and `oldest` are no longer kept (the
    /// retention purged them): the portal has to catch up another way.
    Gap {
        after: i64,
        oldest: Option<i64>,
    },
    Event(Event),
    Heartbeat,
}

impl Frame {
    /// The frame as Server-Sent Events text.
    pub fn to_sse(&self) -> String {
        match self {
            Frame::Gap { after, oldest } => format!(
                "event: gap\ndata: {}\n\n",
                serde_json::json!({
                    "after": after,
                    "oldest": oldest,
                    "detail": "events after this id were purged (older than [events] retention_s); the stream goes on from the oldest kept"
                })
            ),
            // Kinds are the daemon's own words, never with a line break.
            Frame::Event(e) => format!(
                "id: {}\nevent: {}\ndata: {}\n\n",
                e.seq,
                e.kind.replace(['\n', '\r'], " "),
                super::payload::body(e)
            ),
            Frame::Heartbeat => ": heartbeat\n\n".to_string(),
        }
    }
}

/// A stream's hold on one of `[events] max_streams`, given back on drop.
pub struct Slot {
    open: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Slot {
    /// Takes the place already counted in `open`.
    pub(super) fn new(open: Arc<AtomicUsize>, metrics: Arc<Metrics>) -> Self {
        metrics.event_streams.inc();
        Self { open, metrics }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.metrics.event_streams.dec();
    }
}

pub struct EventStream {
    shared: Shared,
    req: StreamRequest,
    /// The last sequence number read from the log.
    pos: i64,
    newest: i64,
    pending: VecDeque<Frame>,
    tail: watch::Receiver<i64>,
    heartbeat: tokio::time::Interval,
    _slot: Slot,
}

impl EventStream {
    pub(super) async fn open(
        shared: Shared,
        req: StreamRequest,
        tail: watch::Receiver<i64>,
        slot: Slot,
    ) -> Result<Self, NotifyError> {
        let (newest, oldest) = shared
            .store
            .read(|c| Ok((events::newest(c)?, events::oldest(c)?)))
            .await?;
        let mut pending = VecDeque::new();
        let pos = match req.after {
            None => newest,
            Some(after) => {
                let after = after.max(0);
                let purged = match oldest {
                    Some(o) => o > after.saturating_add(1),
                    None => newest > after,
                };
                if purged && after < newest {
                    pending.push_back(Frame::Gap { after, oldest });
                }
                after
            }
        };
        let every = shared.config().events.heartbeat;
        let heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        Ok(Self {
            shared,
            req,
            pos,
            newest,
            pending,
            tail,
            heartbeat,
            _slot: slot,
        })
    }

    /// The next frame; None once the daemon stops.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Some(f);
            }
            if self.shared.shutdown.is_cancelled() {
                return None;
            }
            self.newest = self.newest.max(*self.tail.borrow_and_update());
            if self.pos < self.newest {
                let from = self.pos;
                let batch = match self
                    .shared
                    .store
                    .read(move |c| events::after(c, from, BATCH))
                    .await
                {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "an event stream cannot read the event log; it is closed (the client resumes with Last-Event-ID)");
                        return None;
                    }
                };
                let complete = batch.len() < BATCH;
                for e in batch {
                    self.pos = e.seq;
                    if self.req.kinds.matches(&e.kind)
                        && self
                            .req
                            .campaign
                            .as_deref()
                            .is_none_or(|c| e.campaign.as_deref() == Some(c))
                        && self
                            .req
                            .interaction
                            .is_none_or(|i| e.interaction == Some(i))
                        && self
                            .req
                            .agent
                            .as_deref()
                            .is_none_or(|a| e.data.get("agent").and_then(|v| v.as_str()) == Some(a))
                    {
                        self.pending.push_back(Frame::Event(e));
                    }
                }
                if complete {
                    self.pos = self.pos.max(self.newest);
                }
                continue;
            }
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return None,
                changed = self.tail.changed() => if changed.is_err() { return None },
                _ = self.heartbeat.tick() => return Some(Frame::Heartbeat),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Store;

    async fn shared(dir: &std::path::Path) -> Shared {
        let config = crate::config::Config::from_source(
            &dir.join("smsgate.toml"),
            &format!(
                "[daemon]\nstate_dir = \"{}\"\n[events]\nheartbeat_s = 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let store = Store::open(dir, crate::runtime::Heartbeat::detached()).unwrap();
        Shared::new(config, store, crate::runtime::Heartbeats::default())
    }

    fn slot(s: &Shared) -> Slot {
        Slot::new(Arc::new(AtomicUsize::new(1)), s.metrics.clone())
    }

    async fn append(s: &Shared, kind: &'static str, campaign: Option<&'static str>) -> i64 {
        s.store
            .write(move |tx| events::append(tx, kind, campaign, None, &serde_json::json!({})))
            .await
            .unwrap()
    }

    /// A position older than what the purge kept: a gap first, then the
    /// oldest kept; a position still kept: exactly the events after it,
    /// filtered, and nothing more.
    #[tokio::test]
    async fn a_purged_position_is_a_gap_and_a_kept_one_resumes_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let s = shared(dir.path()).await;
        let mut seqs = Vec::new();
        for kind in ["a.one", "b.two", "a.three", "a.four"] {
            seqs.push(append(&s, kind, Some("ventas")).await);
        }
        let far = crate::now_ms() + 1000;
        s.store
            .write(move |tx| events::purge(tx, far, 2))
            .await
            .unwrap();
        let (_tail_tx, tail) = watch::channel(0);
        let req = StreamRequest {
            after: Some(0),
            ..Default::default()
        };
        let mut st = EventStream::open(s.clone(), req, tail.clone(), slot(&s))
            .await
            .unwrap();
        match st.next().await {
            Some(Frame::Gap { after: 0, oldest }) => assert_eq!(oldest, Some(seqs[2])),
            other => panic!("{other:?}"),
        }
        let Some(Frame::Event(e)) = st.next().await else {
            panic!()
        };
        assert_eq!(e.seq, seqs[2]);
        assert!(Frame::Event(e).to_sse().starts_with(&format!(
            "id: {}\nevent: a.three\ndata: {{\"seq\":{}",
            seqs[2], seqs[2]
        )));

        let req = StreamRequest {
            after: Some(seqs[2]),
            kinds: KindFilter::parse(&["a.*"]).unwrap(),
            campaign: Some("ventas".into()),
            ..Default::default()
        };
        let mut st = EventStream::open(s.clone(), req, tail, slot(&s))
            .await
            .unwrap();
        let Some(Frame::Event(e)) = st.next().await else {
            panic!()
        };
        assert_eq!(e.seq, seqs[3]);
        // Nothing else: the next frame is the heartbeat.
        let next = tokio::time::timeout(Duration::from_secs(5), st.next()).await;
        assert!(matches!(next, Ok(Some(Frame::Heartbeat))), "{next:?}");
    }
}
