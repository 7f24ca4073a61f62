//! The ACD's tables: agents and their state, members (which agents take
//! which campaigns), every action on an agent with who did it, the
//! campaigns' queues (an open interaction with `waiting = 1`), the
//! assignments and round_robin's memory. Each change writes its event in
//! the same transaction, so the event stream, the monitor and a restart
//! after SIGKILL all see the same thing.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::json;

use super::{StoreError, events, interactions, now_ms, spool};

/// An agent as the API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    /// Cap on active interactions over every campaign; None: none.
    pub max_interactions: Option<u32>,
    /// logged_out | ready | break
    pub state: String,
    #[serde(rename = "break")]
    pub break_name: Option<String>,
    pub paused: bool,
    /// Unix ms of the last change of state.
    pub since: i64,
    pub idle_since: i64,
}

const AGENT_COLUMNS: &str = "id, name, max_total, state, break_name, paused, since, idle_since";

fn agent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        name: r.get(1)?,
        max_interactions: r.get(2)?,
        state: r.get(3)?,
        break_name: r.get(4)?,
        paused: r.get::<_, i64>(5)? != 0,
        since: r.get(6)?,
        idle_since: r.get(7)?,
    })
}

pub fn agent(conn: &Connection, id: &str) -> Result<Option<Agent>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agent WHERE id = ?1"))?
        .query_row([id], agent_row)
        .optional()?)
}

pub fn agents(conn: &Connection) -> Result<Vec<Agent>, StoreError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {AGENT_COLUMNS} FROM agent ORDER BY id"))?;
    let rows = stmt.query_map([], agent_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn must_agent(tx: &Transaction<'_>, id: &str) -> Result<Agent, StoreError> {
    agent(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("agent {id:?}")))
}

/// Records an action on an agent: what, who, when.
fn action(
    tx: &Transaction<'_>,
    agent: &str,
    what: &str,
    who: &str,
    detail: Option<&str>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO agent_action (agent, at, action, who, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![agent, now_ms(), what, who, detail])?;
    Ok(())
}

fn state_event(tx: &Transaction<'_>, a: &Agent, what: &str, who: &str) -> Result<(), StoreError> {
    events::append(
        tx,
        "agent.state",
        None,
        None,
        &json!({"agent": a.id, "name": a.name, "state": a.state, "break": a.break_name,
                "paused": a.paused, "action": what, "by": who}),
    )?;
    Ok(())
}

/// Creates or renames an agent (a new one is logged out); true when new.
pub fn put_agent(
    tx: &Transaction<'_>,
    id: &str,
    name: &str,
    max_total: Option<u32>,
    who: &str,
) -> Result<(Agent, bool), StoreError> {
    let now = now_ms();
    let created = tx
        .prepare_cached(
            "INSERT INTO agent (id, name, max_total, state, since, idle_since, created_at) \
             VALUES (?1, ?2, ?3, 'logged_out', ?4, ?4, ?4) ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![id, name, max_total, now])?
        == 1;
    if !created {
        tx.prepare_cached("UPDATE agent SET name = ?2, max_total = ?3 WHERE id = ?1")?
            .execute(params![id, name, max_total])?;
    }
    action(
        tx,
        id,
        if created { "create" } else { "update" },
        who,
        Some(name),
    )?;
    let a = must_agent(tx, id)?;
    state_event(tx, &a, if created { "create" } else { "update" }, who)?;
    Ok((a, created))
}

/// What can be done to an agent's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Login,
    Logout,
    Break(String),
    Ready,
    Pause,
    Resume,
}

impl Change {
    pub fn as_str(&self) -> &'static str {
        match self {
            Change::Login => "login",
            Change::Logout => "logout",
            Change::Break(_) => "break",
            Change::Ready => "ready",
            Change::Pause => "pause",
            Change::Resume => "resume",
        }
    }
}

/// Changes an agent's state, records who did it and tells the stream. A
/// logout puts the agent's open interactions back in their queues, where
/// they keep their place ahead of newer ones; what was requeued.
pub fn change(
    tx: &Transaction<'_>,
    id: &str,
    c: &Change,
    who: &str,
) -> Result<(Agent, Vec<i64>), StoreError> {
    let a = must_agent(tx, id)?;
    let now = now_ms();
    let logged_in = a.state != "logged_out";
    let (state, brk): (&str, Option<&str>) = match c {
        Change::Login if logged_in => (a.state.as_str(), a.break_name.as_deref()),
        Change::Login => ("ready", None),
        Change::Logout => ("logged_out", None),
        Change::Break(name) if logged_in => ("break", Some(name.as_str())),
        Change::Ready if logged_in => ("ready", None),
        Change::Break(_) | Change::Ready => {
            return Err(StoreError::Conflict(format!(
                "agent {id:?} is logged out; log it in first"
            )));
        }
        Change::Pause | Change::Resume => (a.state.as_str(), a.break_name.as_deref()),
    };
    let paused = match c {
        Change::Pause => true,
        Change::Resume => false,
        _ => a.paused,
    };
    let state_changed = state != a.state || brk != a.break_name.as_deref() || paused != a.paused;
    // Becoming available starts its idle time (longest_idle, fewest_active).
    let available = state == "ready" && !paused && (a.state != "ready" || a.paused);
    tx.prepare_cached(
        "UPDATE agent SET state = ?2, break_name = ?3, paused = ?4, \
         since = CASE WHEN ?5 THEN ?6 ELSE since END, \
         idle_since = CASE WHEN ?7 THEN ?6 ELSE idle_since END WHERE id = ?1",
    )?
    .execute(params![
        id,
        state,
        brk,
        paused,
        state_changed,
        now,
        available
    ])?;
    let mut requeued = Vec::new();
    if *c == Change::Logout {
        requeued = requeue_of(tx, id, who)?;
    }
    action(
        tx,
        id,
        c.as_str(),
        who,
        match c {
            Change::Break(n) => Some(n.as_str()),
            _ => None,
        },
    )?;
    let a = must_agent(tx, id)?;
    state_event(tx, &a, c.as_str(), who)?;
    Ok((a, requeued))
}

/// Puts every open interaction of an agent back in its queue.
fn requeue_of(tx: &Transaction<'_>, agent: &str, who: &str) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<(i64, String)> = tx
        .prepare_cached(
            "UPDATE interaction SET agent = NULL, waiting = 1 \
             WHERE agent = ?1 AND closed_at IS NULL RETURNING id, campaign",
        )?
        .query_map([agent], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (id, campaign) in &ids {
        events::append(
            tx,
            "interaction.queued",
            Some(campaign),
            Some(*id),
            &json!({"interaction": id, "campaign": campaign, "from_agent": agent,
                    "reason": "requeued", "by": who}),
        )?;
    }
    Ok(ids.into_iter().map(|(i, _)| i).collect())
}

/// A supervisor's message to an agent: kept with the agent's actions and
/// sent on the agent's stream.
pub fn chat(tx: &Transaction<'_>, id: &str, text: &str, who: &str) -> Result<i64, StoreError> {
    must_agent(tx, id)?;
    action(tx, id, "chat", who, Some(text))?;
    events::append(
        tx,
        "agent.chat",
        None,
        None,
        &json!({"agent": id, "from": who, "text": text}),
    )
}

/// One recorded action on an agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Action {
    pub at_ms: i64,
    pub at: String,
    pub action: String,
    pub by: String,
    pub detail: Option<String>,
}

/// An agent's newest actions, newest first, at most `limit`.
pub fn actions(conn: &Connection, id: &str, limit: u32) -> Result<Vec<Action>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, action, who, detail FROM agent_action WHERE agent = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![id, limit], |r| {
        let at: i64 = r.get(0)?;
        Ok(Action {
            at_ms: at,
            at: smsgate_proto::recording::rfc3339(at),
            action: r.get(1)?,
            by: r.get(2)?,
            detail: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active interactions per campaign of one agent, and its completed ones
/// (closed while it held them) since `since_ms`.
pub fn agent_counts(
    conn: &Connection,
    id: &str,
    since_ms: i64,
) -> Result<(Vec<(String, i64)>, i64), StoreError> {
    let active = conn
        .prepare_cached(
            "SELECT campaign, count(*) FROM interaction \
             WHERE agent = ?1 AND closed_at IS NULL GROUP BY campaign",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let completed = conn
        .prepare_cached("SELECT count(*) FROM interaction WHERE agent = ?1 AND closed_at >= ?2")?
        .query_row(params![id, since_ms], |r| r.get(0))?;
    Ok((active, completed))
}

/// The campaigns an agent is a member of.
pub fn campaigns_of(conn: &Connection, id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT campaign FROM member WHERE agent = ?1 ORDER BY campaign")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Adds every agent to every campaign (what is there already stays);
/// how many pairs are new. Every agent must exist.
pub fn add_members(
    tx: &Transaction<'_>,
    campaigns: &[String],
    agents: &[String],
    who: &str,
) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut added = 0;
    for a in agents {
        must_agent(tx, a)?;
        for c in campaigns {
            let n = tx
                .prepare_cached(
                    "INSERT INTO member (campaign, agent, added_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![c, a, now])?;
            if n == 1 {
                action(tx, a, "member_add", who, Some(c))?;
                added += 1;
            }
        }
    }
    if added > 0 {
        events::append(
            tx,
            "members.changed",
            None,
            None,
            &json!({"added": {"campaigns": campaigns, "agents": agents}, "by": who}),
        )?;
    }
    Ok(added)
}

/// Removes every agent from every campaign; how many pairs went. The
/// interactions an agent holds stay with it.
pub fn remove_members(
    tx: &Transaction<'_>,
    campaigns: &[String],
    agents: &[String],
    who: &str,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    for a in agents {
        for c in campaigns {
            let n = tx
                .prepare_cached("DELETE FROM member WHERE campaign = ?1 AND agent = ?2")?
                .execute(params![c, a])?;
            if n == 1 {
                action(tx, a, "member_remove", who, Some(c))?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        events::append(
            tx,
            "members.changed",
            None,
            None,
            &json!({"removed": {"campaigns": campaigns, "agents": agents}, "by": who}),
        )?;
    }
    Ok(removed)
}

/// (campaign, agent) pairs, of one campaign or all.
pub fn members(
    conn: &Connection,
    campaign: Option<&str>,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT campaign, agent FROM member WHERE ?1 IS NULL OR campaign = ?1 ORDER BY campaign, agent",
    )?;
    let rows = stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How a new interaction was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Waiting,
    /// `max_waiting` were waiting already: refused, counted.
    Busy,
}

/// Puts a new interaction in its campaign's queue, or refuses it when
/// `max_waiting` are waiting already.
pub fn enqueue(
    tx: &Transaction<'_>,
    interaction: i64,
    campaign: &str,
    max_waiting: u32,
) -> Result<Enqueued, StoreError> {
    let waiting = waiting_count(tx, campaign)?;
    let taken = if waiting >= i64::from(max_waiting) {
        tx.prepare_cached("UPDATE interaction SET refused = 'busy' WHERE id = ?1")?
            .execute([interaction])?;
        Enqueued::Busy
    } else {
        tx.prepare_cached("UPDATE interaction SET waiting = 1 WHERE id = ?1")?
            .execute([interaction])?;
        Enqueued::Waiting
    };
    events::append(
        tx,
        "interaction.queued",
        Some(campaign),
        Some(interaction),
        &json!({"interaction": interaction, "campaign": campaign,
                "reason": if taken == Enqueued::Busy { "refused_busy" } else { "new" },
                "waiting": waiting + i64::from(taken == Enqueued::Waiting)}),
    )?;
    Ok(taken)
}

/// The customer wrote: the abandon time counts from now.
pub fn customer_wrote(tx: &Transaction<'_>, interaction: i64, at: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE interaction SET last_in_at = ?2 WHERE id = ?1")?
        .execute(params![interaction, at])?;
    Ok(())
}

pub fn waiting_count(conn: &Connection, campaign: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM interaction WHERE campaign = ?1 AND waiting = 1")?
        .query_row([campaign], |r| r.get(0))?)
}

/// An agent that may take work, its members and load, for the assigner.
#[derive(Debug, Clone)]
pub struct Available {
    pub id: String,
    pub idle_since: i64,
    pub max_total: Option<u32>,
    pub campaigns: Vec<String>,
}

/// Agents ready and not paused, with their campaigns.
pub fn available(conn: &Connection) -> Result<Vec<Available>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.idle_since, a.max_total, m.campaign FROM agent a \
         JOIN member m ON m.agent = a.id WHERE a.state = 'ready' AND a.paused = 0 \
         ORDER BY a.id",
    )?;
    let mut out: Vec<Available> = Vec::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<u32>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    for row in rows {
        let (id, idle_since, max_total, campaign) = row?;
        match out.last_mut() {
            Some(a) if a.id == id => a.campaigns.push(campaign),
            _ => out.push(Available {
                id,
                idle_since,
                max_total,
                campaigns: vec![campaign],
            }),
        }
    }
    Ok(out)
}

/// Open interactions held, per (agent, campaign).
pub fn active_load(conn: &Connection) -> Result<Vec<(String, String, u32)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT agent, campaign, count(*) FROM interaction \
         WHERE closed_at IS NULL AND agent IS NOT NULL GROUP BY agent, campaign",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The oldest waiting interactions of a campaign, at most `limit`.
pub fn waiting(conn: &Connection, campaign: &str, limit: usize) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM interaction WHERE campaign = ?1 AND waiting = 1 ORDER BY id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![campaign, limit as i64], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// round_robin's memory of a campaign.
pub fn last_served(conn: &Connection, campaign: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT last_agent FROM acd_memory WHERE campaign = ?1")?
        .query_row([campaign], |r| r.get(0))
        .optional()?)
}

/// Gives a waiting interaction to an agent; false when it is no longer
/// waiting (closed meanwhile), so nothing is given twice.
pub fn assign(
    tx: &Transaction<'_>,
    interaction: i64,
    campaign: &str,
    agent: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let row: Option<(String, Option<u32>, String)> = tx
        .prepare_cached(
            "UPDATE interaction SET agent = ?2, waiting = NULL, assigned_at = coalesce(assigned_at, ?3) \
             WHERE id = ?1 AND waiting = 1 AND closed_at IS NULL RETURNING customer, port, gateway",
        )?
        .query_row(params![interaction, agent, now], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((customer, port, gateway)) = row else {
        return Ok(false);
    };
    tx.prepare_cached("UPDATE agent SET idle_since = ?2 WHERE id = ?1")?
        .execute(params![agent, now])?;
    tx.prepare_cached(
        "INSERT INTO acd_memory (campaign, last_agent) VALUES (?1, ?2) \
         ON CONFLICT (campaign) DO UPDATE SET last_agent = excluded.last_agent",
    )?
    .execute(params![campaign, agent])?;
    events::append(
        tx,
        "interaction.assigned",
        Some(campaign),
        Some(interaction),
        &json!({"interaction": interaction, "campaign": campaign, "agent": agent,
                "customer": customer, "channel": interactions::channel_name(&gateway, port)}),
    )?;
    Ok(true)
}

/// Whether an assignment pass could give anything out: someone waits
/// and some member is ready. Read first, so an idle daemon never queues
/// a write for nothing (a full disk's episodes stay as the writes make
/// them).
pub fn may_assign(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM interaction WHERE waiting = 1) \
                AND EXISTS (SELECT 1 FROM agent a JOIN member m ON m.agent = a.id \
                            WHERE a.state = 'ready' AND a.paused = 0)",
        )?
        .query_row([], |r| r.get(0))?)
}

/// Whether a campaign has waiting interactions silent since before
/// `silent_before` to close as abandoned (see [`close_abandoned`]).
pub fn has_abandoned(
    conn: &Connection,
    campaign: &str,
    silent_before: i64,
) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM interaction WHERE campaign = ?1 AND waiting = 1 \
             AND coalesce(last_in_at, started_at) < ?2) \
             AND EXISTS (SELECT 1 FROM member WHERE campaign = ?1)",
        )?
        .query_row(params![campaign, silent_before], |r| r.get(0))?)
}

/// Closes waiting interactions of a campaign whose customer has been
/// silent since before `silent_before` (abandoned: nobody answered);
/// their ids. A campaign without members is left alone: it does not use
/// agents, and its conversations stay open until idle as before the ACD.
pub fn close_abandoned(
    tx: &Transaction<'_>,
    campaign: &str,
    silent_before: i64,
    limit: usize,
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM interaction WHERE campaign = ?1 AND waiting = 1 \
             AND coalesce(last_in_at, started_at) < ?2 \
             AND EXISTS (SELECT 1 FROM member WHERE campaign = ?1) ORDER BY id LIMIT ?3",
        )?
        .query_map(params![campaign, silent_before, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        interactions::close(tx, *id, "abandoned")?;
    }
    Ok(ids)
}

/// Where an interaction stands, for the checks before a reply, a close
/// or a transfer.
#[derive(Debug, Clone)]
pub struct Held {
    pub campaign: String,
    pub customer: String,
    pub gateway: String,
    pub port: Option<u32>,
    pub agent: Option<String>,
    pub open: bool,
}

pub fn held(conn: &Connection, id: i64) -> Result<Option<Held>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT campaign, customer, gateway, port, agent, closed_at IS NULL FROM interaction WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Held {
                campaign: r.get(0)?,
                customer: r.get(1)?,
                gateway: r.get(2)?,
                port: r.get(3)?,
                agent: r.get(4)?,
                open: r.get(5)?,
            })
        })
        .optional()?)
}

fn must_hold(tx: &Transaction<'_>, id: i64, agent: &str) -> Result<Held, StoreError> {
    let h = held(tx, id)?.ok_or_else(|| StoreError::NotFound(format!("interaction {id}")))?;
    if !h.open {
        return Err(StoreError::Conflict(format!("interaction {id} is closed")));
    }
    if h.agent.as_deref() != Some(agent) {
        return Err(StoreError::Conflict(format!(
            "interaction {id} is not assigned to agent {agent:?}"
        )));
    }
    Ok(h)
}

/// An agent's reply, queued on `dialer` (at `priority`) pinned to the
/// channel the customer used, written into the conversation; the first
/// reply is the answer the figures count. The message's id and channel.
pub fn reply(
    tx: &Transaction<'_>,
    interaction: i64,
    agent: &str,
    (dialer, priority): (&str, i64),
    text: &str,
) -> Result<(i64, String), StoreError> {
    let h = must_hold(tx, interaction, agent)?;
    let channel = interactions::channel_name(&h.gateway, h.port);
    let plan = smsgate_proto::sms::plan(text);
    let message = spool::NewMessage {
        dialer: dialer.to_string(),
        destination: h.customer.clone(),
        number: Some(h.customer.clone()),
        text: text.to_string(),
        priority,
        client_id: None,
        import_id: None,
        encoding: plan.encoding.as_str(),
        segments: plan.segments as u32,
        state: spool::State::ToProcess,
        template: None,
    };
    let pin = interactions::pin_name(&h.gateway, h.port);
    let id = spool::insert_pinned(tx, &message, &pin, Some(interaction))?;
    interactions::record_outbound(
        tx,
        interaction,
        &format!("agent:{agent}"),
        &channel,
        id,
        &message,
    )?;
    tx.prepare_cached(
        "UPDATE interaction SET first_reply_at = coalesce(first_reply_at, ?2) WHERE id = ?1",
    )?
    .execute(params![interaction, now_ms()])?;
    Ok((id, channel))
}

/// Moves an open interaction to another agent (`to`), or back to its
/// queue (None), recorded on the agent that had it. `room` says whether
/// the new agent may take one more of this campaign.
pub fn transfer(
    tx: &Transaction<'_>,
    interaction: i64,
    to: Option<&str>,
    who: &str,
    max_per_agent: u32,
) -> Result<Held, StoreError> {
    let h = held(tx, interaction)?
        .ok_or_else(|| StoreError::NotFound(format!("interaction {interaction}")))?;
    if !h.open {
        return Err(StoreError::Conflict(format!(
            "interaction {interaction} is closed"
        )));
    }
    match to {
        Some(agent) => {
            let a = must_agent(tx, agent)?;
            if a.state == "logged_out" {
                return Err(StoreError::Conflict(format!(
                    "agent {agent:?} is logged out"
                )));
            }
            let holds: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM interaction WHERE agent = ?1 AND campaign = ?2 AND closed_at IS NULL",
                )?
                .query_row(params![agent, h.campaign], |r| r.get(0))?;
            let total: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM interaction WHERE agent = ?1 AND closed_at IS NULL",
                )?
                .query_row([agent], |r| r.get(0))?;
            if h.agent.as_deref() != Some(agent)
                && (holds >= i64::from(max_per_agent)
                    || a.max_interactions.is_some_and(|m| total >= i64::from(m)))
            {
                return Err(StoreError::Conflict(format!(
                    "agent {agent:?} holds as many interactions as it may"
                )));
            }
            let now = now_ms();
            tx.prepare_cached(
                "UPDATE interaction SET agent = ?2, waiting = NULL, assigned_at = coalesce(assigned_at, ?3) WHERE id = ?1",
            )?
            .execute(params![interaction, agent, now])?;
            events::append(
                tx,
                "interaction.assigned",
                Some(&h.campaign),
                Some(interaction),
                &json!({"interaction": interaction, "campaign": h.campaign, "agent": agent,
                        "from_agent": h.agent, "customer": h.customer,
                        "channel": interactions::channel_name(&h.gateway, h.port),
                        "reason": "transfer", "by": who}),
            )?;
        }
        None => {
            tx.prepare_cached("UPDATE interaction SET agent = NULL, waiting = 1 WHERE id = ?1")?
                .execute([interaction])?;
            events::append(
                tx,
                "interaction.queued",
                Some(&h.campaign),
                Some(interaction),
                &json!({"interaction": interaction, "campaign": h.campaign,
                        "from_agent": h.agent, "reason": "transfer", "by": who}),
            )?;
        }
    }
    if let Some(from) = &h.agent {
        tx.prepare_cached("UPDATE agent SET idle_since = ?2 WHERE id = ?1")?
            .execute(params![from, now_ms()])?;
        action(
            tx,
            from,
            "transfer",
            who,
            Some(&format!(
                "interaction {interaction} to {}",
                to.unwrap_or("the queue")
            )),
        )?;
    }
    Ok(h)
}

/// An interaction ended by its agent: the agent's idle time starts.
pub fn released(tx: &Transaction<'_>, interaction: i64) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE agent SET idle_since = ?2 WHERE id = (SELECT agent FROM interaction WHERE id = ?1)",
    )?
    .execute(params![interaction, now_ms()])?;
    Ok(())
}

/// The figures' view of a campaign's interactions started at or after
/// `since_ms`: (started, assigned, first reply, closed, customer's last
/// message, refused).
pub type FigureRow = (i64, Option<i64>, Option<i64>, Option<i64>, i64, bool);

pub fn figure_rows(
    conn: &Connection,
    campaign: &str,
    since_ms: i64,
) -> Result<Vec<FigureRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT started_at, assigned_at, first_reply_at, closed_at, coalesce(last_in_at, started_at), \
                refused IS NOT NULL \
         FROM interaction WHERE campaign = ?1 AND started_at >= ?2 AND origin = 'inbound'",
    )?;
    let rows = stmt.query_map(params![campaign, since_ms], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A member as the monitor shows it: the agent, its open interactions in
/// the campaign with their channels, and those it completed since.
#[derive(Debug, Clone)]
pub struct MemberLoad {
    pub agent: Agent,
    pub active: i64,
    pub channels: Vec<String>,
    pub completed: i64,
}

pub fn member_loads(
    conn: &Connection,
    campaign: &str,
    since_ms: i64,
) -> Result<Vec<MemberLoad>, StoreError> {
    // Three statements for the whole campaign, not two per member: the
    // monitor of 500 agents reads in a few milliseconds.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM member m JOIN agent a ON a.id = m.agent WHERE m.campaign = ?1 ORDER BY a.id",
        AGENT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))?;
    let agents: Vec<Agent> = stmt
        .query_map([campaign], agent_row)?
        .collect::<Result<_, _>>()?;
    let mut open: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut stmt = conn.prepare_cached(
        "SELECT agent, gateway, port FROM interaction INDEXED BY interaction_open \
         WHERE campaign = ?1 AND closed_at IS NULL AND agent IS NOT NULL",
    )?;
    let rows = stmt.query_map([campaign], |r| {
        Ok((
            r.get::<_, String>(0)?,
            interactions::channel_name(&r.get::<_, String>(1)?, r.get(2)?),
        ))
    })?;
    for row in rows {
        let (agent, channel) = row?;
        open.entry(agent).or_default().push(channel);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT agent, count(*) FROM interaction INDEXED BY interaction_closed \
         WHERE campaign = ?1 AND closed_at >= ?2 AND agent IS NOT NULL GROUP BY agent",
    )?;
    let done: std::collections::HashMap<String, i64> = stmt
        .query_map(params![campaign, since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(agents
        .into_iter()
        .map(|a| {
            let mut channels = open.remove(&a.id).unwrap_or_default();
            let active = channels.len() as i64;
            channels.sort();
            channels.dedup();
            let completed = done.get(&a.id).copied().unwrap_or(0);
            MemberLoad {
                agent: a,
                active,
                channels,
                completed,
            }
        })
        .collect())
}

/// A campaign's waiting customers, oldest first: (interaction, customer,
/// started).
pub fn waiting_customers(
    conn: &Connection,
    campaign: &str,
) -> Result<Vec<(i64, String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, customer, started_at FROM interaction WHERE campaign = ?1 AND waiting = 1 ORDER BY id",
    )?;
    let rows = stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An agent's interactions (the inbox), open ones first, then newest; `q`
/// narrows to a campaign name or a customer number containing it.
pub fn inbox(
    conn: &Connection,
    agent: &str,
    q: Option<&str>,
    limit: u32,
) -> Result<Vec<interactions::Summary>, StoreError> {
    let pattern = q.map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM interaction WHERE agent = ?1 \
         AND (?2 IS NULL OR campaign LIKE ?2 ESCAPE '\\' OR customer LIKE ?2 ESCAPE '\\') \
         ORDER BY closed_at IS NOT NULL, id DESC LIMIT ?3",
        interactions::SUMMARY_COLUMNS
    ))?;
    let rows = stmt.query_map(params![agent, pattern, limit], interactions::summary)?;
    Ok(rows.collect::<Result<_, _>>()?)
}
