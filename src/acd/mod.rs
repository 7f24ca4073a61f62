//! The ACD: one assigner task hands waiting interactions to agents. Each
//! pass reads a snapshot (agents that may take work, their load, the
//! oldest waiting interactions each campaign has room for), decides with
//! the pure [`assign::decide`] and writes the assignments, all in one
//! write transaction: the single writer makes a second assigner, a close
//! or a logout in between impossible, so nothing is given twice and no
//! agent goes over its cap, and everything is on disk when the agent's
//! event is. It runs when woken (a new interaction, an agent ready, a
//! close, a transfer) and once a second, when it also closes abandoned
//! waiting interactions and puts the campaigns' changed figures on the
//! event stream.

pub mod assign;
pub mod figures;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runtime::Shared;
use crate::store::{StoreError, acd as db, events};

/// How often the assigner runs without being woken: the abandon sweep and
/// the figures' events.
const TICK: Duration = Duration::from_secs(1);
/// Waiting interactions closed as abandoned in one pass at most.
const ABANDON_BATCH: usize = 500;

/// One pass of assignment over the store, in the caller's transaction;
/// what was assigned. Also what the benchmark times.
pub fn assign_pass(
    tx: &rusqlite::Transaction<'_>,
    campaigns: &[(String, crate::config::Strategy, u32)],
    now: i64,
) -> Result<Vec<assign::Assignment>, StoreError> {
    let available = db::available(tx)?;
    if available.is_empty() {
        return Ok(Vec::new());
    }
    let mut agents: Vec<assign::AgentLoad> = available
        .iter()
        .map(|a| assign::AgentLoad {
            id: a.id.clone(),
            idle_since: a.idle_since,
            active: HashMap::new(),
            max_total: a.max_total,
        })
        .collect();
    let index: HashMap<&str, usize> = available
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    for (agent, campaign, n) in db::active_load(tx)? {
        if let Some(i) = index.get(agent.as_str()) {
            agents[*i].active.insert(campaign, n);
        }
    }
    let mut queues = Vec::new();
    for (name, strategy, cap) in campaigns {
        let members: Vec<&db::Available> = available
            .iter()
            .filter(|a| a.campaigns.iter().any(|c| c == name))
            .collect();
        // Only as many waiting as the members have room for: a long queue
        // costs nothing while every agent is full.
        let room: u32 = members
            .iter()
            .map(|a| {
                let l = &agents[index[a.id.as_str()]];
                let here = cap.saturating_sub(l.active.get(name).copied().unwrap_or(0));
                let total: u32 = l.active.values().sum();
                match l.max_total {
                    Some(m) => here.min(m.saturating_sub(total)),
                    None => here,
                }
            })
            .sum();
        if room == 0 {
            continue;
        }
        queues.push(assign::CampaignQueue {
            name: name.clone(),
            strategy: *strategy,
            max_per_agent: *cap,
            members: members.iter().map(|a| a.id.clone()).collect(),
            last: db::last_served(tx, name)?,
            waiting: db::waiting(tx, name, room as usize)?,
        });
    }
    if queues.iter().all(|q| q.waiting.is_empty()) {
        return Ok(Vec::new());
    }
    let decision = assign::decide(agents, &queues, now);
    let mut done = Vec::with_capacity(decision.assignments.len());
    for a in decision.assignments {
        if db::assign(tx, a.interaction, &a.campaign, &a.agent, now)? {
            done.push(a);
        }
    }
    Ok(done)
}

/// The enabled campaigns as the assigner needs them.
pub fn queues_of(config: &Config) -> Vec<(String, crate::config::Strategy, u32)> {
    config
        .campaigns
        .iter()
        .filter(|c| c.enabled)
        .map(|c| (c.name.clone(), c.strategy, c.max_interactions_per_agent))
        .collect()
}

/// Local midnight of today in the campaign's schedule's time zone (UTC
/// without a schedule), unix ms: where "today's" figures start.
pub fn midnight(config: &Config, campaign: &str, now: jiff::Timestamp) -> i64 {
    let tz = config
        .campaign(campaign)
        .and_then(|c| c.schedule.as_ref())
        .and_then(|s| config.schedules.get(s))
        .map(|s| s.time_zone().clone())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    now.to_zoned_datetime(tz)
        .start_of_day()
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0)
}

/// A campaign's figures now, with its waiting count, as the monitor and
/// the `campaign.figures` event give them.
pub fn campaign_figures(
    conn: &rusqlite::Connection,
    config: &Config,
    campaign: &str,
    now: jiff::Timestamp,
) -> Result<serde_json::Value, StoreError> {
    let Some(c) = config.campaign(campaign) else {
        return Ok(serde_json::Value::Null);
    };
    let since = midnight(config, campaign, now);
    let rows: Vec<figures::Row> = db::figure_rows(conn, campaign, since)?
        .into_iter()
        .map(
            |(started_at, assigned_at, first_reply_at, closed_at, last_in_at, refused)| {
                figures::Row {
                    started_at,
                    assigned_at,
                    first_reply_at,
                    closed_at,
                    last_in_at,
                    refused,
                }
            },
        )
        .collect();
    let f = figures::compute(
        &rows,
        &figures::Thresholds {
            service_level_s: c.service_level_s,
            service_level_percent: c.service_level_percent,
            abandon_s: c.abandon_s,
            short_abandon_s: c.short_abandon_s,
            chat_time_s: c.chat_time_s,
        },
        now.as_millisecond(),
    );
    let mut v = serde_json::to_value(f).unwrap_or_default();
    v["campaign"] = campaign.into();
    v["since"] = smsgate_proto::recording::rfc3339(since).into();
    v["waiting_count"] = db::waiting_count(conn, campaign)?.into();
    v["acd_max_waiting"] = c.acd_max_waiting.into();
    Ok(v)
}

/// The assigner, until `stop`; the sweep (abandons, figures' events) runs
/// beside it as a task of its own, so an assignment never waits behind a
/// campaign's figures.
pub async fn run(shared: Shared, stop: CancellationToken) {
    tokio::spawn(sweeper(shared.clone(), stop.clone()));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.acd.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
        match shared.store.read(db::may_assign).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the assigner cannot read the store; it tries again in a second");
                continue;
            }
        }
        let config = shared.config();
        let queues = queues_of(&config);
        let pass = shared
            .store
            .write(move |tx| assign_pass(tx, &queues, crate::now_ms()))
            .await;
        match pass {
            Ok(done) => {
                for a in &done {
                    tracing::debug!(interaction = a.interaction, campaign = %a.campaign, agent = %a.agent, "interaction assigned");
                }
                shared.metrics.acd_assignments.inc_by(done.len() as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, "the assigner cannot write; waiting interactions stay queued and it tries again in a second");
            }
        }
    }
}

async fn sweeper(shared: Shared, stop: CancellationToken) {
    let mut shown: HashMap<String, serde_json::Value> = HashMap::new();
    let mut clock = SweepClock::new(crate::now_ms(), Instant::now());
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let config = shared.config();
        let hold = config
            .campaigns
            .iter()
            .map(|c| Duration::from_secs(c.abandon_s))
            .max()
            .unwrap_or_default();
        let now = clock.now(crate::now_ms(), Instant::now(), hold);
        sweep(&shared, &config, now, &mut shown).await;
    }
}

/// A wall clock that moved against the monotonic one by more than this
/// between two sweeps was stepped (NTP stepping, a VM resumed, `date -s`);
/// slewing moves it by well under a millisecond a second.
const STEP_MS: i64 = 2_000;

/// The time the abandon sweep judges silence by. Waiting customers are
/// stamped with the wall clock, so a forward step of it longer than
/// `abandon_s` would make every one of them look silent for that long
/// and close them all as abandoned at the next sweep. After a step this
/// clock goes on from before it (on the monotonic clock) for the longest
/// `abandon_s`: by then everyone who waited before the step has been
/// judged by real time, and it follows the wall clock again. A backward
/// step only delays abandons, so the earlier of the two times is taken.
struct SweepClock {
    /// The wall clock at a monotonic instant, from before any step.
    anchor: (Instant, i64),
    /// When the last step was seen, and the wall clock's lead then.
    step: Option<(Instant, i64)>,
}

impl SweepClock {
    fn new(wall: i64, mono: Instant) -> Self {
        Self {
            anchor: (mono, wall),
            step: None,
        }
    }

    /// Unix ms to judge silence by, given the wall clock and the monotonic
    /// one now, holding a step back for `hold`.
    fn now(&mut self, wall: i64, mono: Instant, hold: Duration) -> i64 {
        let steady = self.anchor.1 + mono.duration_since(self.anchor.0).as_millis() as i64;
        let lead = wall - steady;
        let last_lead = self.step.map_or(0, |(_, l)| l);
        if (lead - last_lead).abs() > STEP_MS {
            tracing::warn!(
                step_s = lead / 1000,
                hold_s = hold.as_secs(),
                "the wall clock stepped; waiting customers are judged abandoned by the time before the step until abandon_s has passed"
            );
            self.step = Some((mono, lead));
        }
        match self.step {
            Some((at, _)) if mono.duration_since(at) < hold => wall.min(steady),
            _ => {
                // No step held back: follow the wall clock (and its slewing).
                self.anchor = (mono, wall);
                self.step = None;
                wall
            }
        }
    }
}

/// Closes abandoned waiting interactions and tells the stream the
/// figures of every campaign whose figures changed since last shown.
async fn sweep(
    shared: &Shared,
    config: &std::sync::Arc<Config>,
    now: i64,
    shown: &mut HashMap<String, serde_json::Value>,
) {
    for c in config.campaigns.iter().filter(|c| c.enabled) {
        let (name, silent_before) = (c.name.clone(), now - (c.abandon_s as i64) * 1000);
        let due = shared
            .store
            .read(move |conn| db::has_abandoned(conn, &name, silent_before))
            .await
            .unwrap_or(false);
        let name = c.name.clone();
        if due
            && let Err(e) = shared
                .store
                .write(move |tx| db::close_abandoned(tx, &name, silent_before, ABANDON_BATCH))
                .await
        {
            tracing::warn!(campaign = %c.name, error = %e, "cannot close abandoned interactions; tried again in a second");
        }
        let (cfg, name) = (config.clone(), c.name.clone());
        let figures = shared
            .store
            .read(move |conn| campaign_figures(conn, &cfg, &name, jiff::Timestamp::now()))
            .await;
        let Ok(figures) = figures else { continue };
        if shown.get(&c.name) == Some(&figures) {
            continue;
        }
        let (name, data) = (c.name.clone(), figures.clone());
        if shared
            .store
            .write(move |tx| events::append(tx, "campaign.figures", Some(&name), None, &data))
            .await
            .is_ok()
        {
            shown.insert(c.name.clone(), figures);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const HOUR_MS: i64 = 3_600_000;

    /// Follows the wall clock; after a forward step goes on from before it
    /// for `hold`, then follows the wall clock again; a backward step is
    /// taken at once (it only delays abandons).
    #[test]
    fn a_step_is_held_back_for_abandon_s_then_followed() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let wall0 = 1_000_000_000_000;
        let mut c = SweepClock::new(wall0, t0);
        let hold = 5 * MIN;
        assert_eq!(c.now(wall0 + 1_000, at(1), hold), wall0 + 1_000);
        // Slewing: a few ms off per second is followed.
        assert_eq!(c.now(wall0 + 2_003, at(2), hold), wall0 + 2_003);
        // An hour forward: the time from before the step.
        assert_eq!(c.now(wall0 + 3_000 + HOUR_MS, at(3), hold), wall0 + 3_003);
        assert_eq!(
            c.now(wall0 + 200_000 + HOUR_MS, at(200), hold),
            wall0 + 200_003
        );
        // abandon_s after the step: the wall clock again.
        let wall = wall0 + 304_000 + HOUR_MS;
        assert_eq!(c.now(wall, at(304), hold), wall);
        assert_eq!(c.now(wall + 1_000, at(305), hold), wall + 1_000);
        // Back two hours: taken at once (the earlier time), and held.
        let back = wall + 2_000 - 2 * HOUR_MS;
        assert_eq!(c.now(back, at(306), hold), back);
        assert_eq!(c.now(back + 1_000, at(307), hold), back + 1_000);
        // A second step forward while one is held restarts the hold.
        let fwd = back + 2_000 + 3 * HOUR_MS;
        let steady = wall + 4_000;
        assert_eq!(c.now(fwd, at(308), hold), steady);
        assert_eq!(c.now(fwd + 299_000, at(607), hold), steady + 299_000);
        assert_eq!(c.now(fwd + 300_000, at(608), hold), fwd + 300_000);
    }
}
