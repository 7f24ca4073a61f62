//! Who gets which waiting interaction: a pure function over a snapshot of
//! the agents that may take work and the campaigns' queues, so every
//! strategy and limit is tested without a clock or a database, and the
//! assigner only reads, decides and writes.

use std::collections::HashMap;

use crate::config::Strategy;

/// An agent that may take work now (logged in, ready, not paused) and
/// what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentLoad {
    pub id: String,
    /// Unix ms since it last got, ended or became ready for work.
    pub idle_since: i64,
    /// Active interactions per campaign.
    pub active: HashMap<String, u32>,
    /// The agent's own cap over every campaign, if any.
    pub max_total: Option<u32>,
}

impl AgentLoad {
    fn total(&self) -> u32 {
        self.active.values().sum()
    }
}

/// One campaign's queue as the assigner sees it.
#[derive(Debug, Clone)]
pub struct CampaignQueue {
    pub name: String,
    pub strategy: Strategy,
    pub max_per_agent: u32,
    /// Its members among the agents of the snapshot, by id.
    pub members: Vec<String>,
    /// round_robin's memory: the agent it served last.
    pub last: Option<String>,
    /// Waiting interactions, oldest first (by id: a requeued one keeps its
    /// place ahead of newer ones).
    pub waiting: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub interaction: i64,
    pub campaign: String,
    pub agent: String,
}

/// What one pass decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub assignments: Vec<Assignment>,
    /// round_robin's new memory, per campaign that assigned.
    pub last: HashMap<String, String>,
}

/// Hands waiting interactions to agents, oldest first over every
/// campaign, until no waiting one has an agent with room. An agent has
/// room in a campaign while it holds fewer than the campaign's
/// `max_per_agent` there and fewer than its own `max_total` over all.
/// Each agent taken counts as busy from `now` (its idle time starts
/// again).
pub fn decide(mut agents: Vec<AgentLoad>, campaigns: &[CampaignQueue], now: i64) -> Decision {
    let index: HashMap<String, usize> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.clone(), i))
        .collect();
    // Members as indexes, in id order: round_robin's circle.
    let members: Vec<Vec<usize>> = campaigns
        .iter()
        .map(|c| {
            let mut m: Vec<usize> = c
                .members
                .iter()
                .filter_map(|id| index.get(id).copied())
                .collect();
            m.sort_by(|a, b| agents[*a].id.cmp(&agents[*b].id));
            m.dedup();
            m
        })
        .collect();
    let mut queue: Vec<(i64, usize)> = campaigns
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.waiting.iter().map(move |w| (*w, ci)))
        .collect();
    queue.sort_unstable();
    let mut last: Vec<Option<String>> = campaigns.iter().map(|c| c.last.clone()).collect();
    let mut full = vec![false; campaigns.len()];
    let mut out = Decision::default();
    for (interaction, ci) in queue {
        if full[ci] {
            continue;
        }
        let c = &campaigns[ci];
        let room = |a: &AgentLoad| {
            a.active.get(&c.name).copied().unwrap_or(0) < c.max_per_agent
                && a.max_total.is_none_or(|m| a.total() < m)
        };
        let pick = match c.strategy {
            Strategy::RoundRobin => {
                let ring = &members[ci];
                let start = match &last[ci] {
                    None => 0,
                    Some(l) => ring
                        .iter()
                        .position(|i| agents[*i].id.as_str() > l.as_str())
                        .unwrap_or(0),
                };
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()])
                    .find(|i| room(&agents[*i]))
            }
            Strategy::FewestActive => members[ci]
                .iter()
                .copied()
                .filter(|i| room(&agents[*i]))
                .min_by_key(|i| {
                    let a = &agents[*i];
                    (a.total(), a.idle_since, a.id.clone())
                }),
            Strategy::LongestIdle => members[ci]
                .iter()
                .copied()
                .filter(|i| room(&agents[*i]))
                .min_by_key(|i| (agents[*i].idle_since, agents[*i].id.clone())),
        };
        let Some(i) = pick else {
            // Nobody has room: the rest of this queue waits too.
            full[ci] = true;
            continue;
        };
        let a = &mut agents[i];
        *a.active.entry(c.name.clone()).or_insert(0) += 1;
        a.idle_since = now;
        last[ci] = Some(a.id.clone());
        out.last.insert(c.name.clone(), a.id.clone());
        out.assignments.push(Assignment {
            interaction,
            campaign: c.name.clone(),
            agent: a.id.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, idle_since: i64) -> AgentLoad {
        AgentLoad {
            id: id.into(),
            idle_since,
            active: HashMap::new(),
            max_total: None,
        }
    }

    fn campaign(name: &str, strategy: Strategy, cap: u32, members: &[&str]) -> CampaignQueue {
        CampaignQueue {
            name: name.into(),
            strategy,
            max_per_agent: cap,
            members: members.iter().map(|s| s.to_string()).collect(),
            last: None,
            waiting: Vec::new(),
        }
    }

    fn who(d: &Decision) -> Vec<&str> {
        d.assignments.iter().map(|a| a.agent.as_str()).collect()
    }

    /// round_robin goes on after the agent served last, around the circle
    /// of members in id order, skipping one without room.
    #[test]
    fn round_robin_remembers_where_it_stopped() {
        let agents = vec![agent("a", 0), agent("b", 0), agent("c", 0)];
        let mut c = campaign("v", Strategy::RoundRobin, 2, &["a", "b", "c"]);
        c.last = Some("b".into());
        c.waiting = vec![1, 2, 3, 4];
        let d = decide(agents.clone(), &[c.clone()], 10);
        assert_eq!(who(&d), ["c", "a", "b", "c"]);
        assert_eq!(d.last["v"], "c");
        // b full: skipped.
        let mut busy = agents;
        busy[1].active.insert("v".into(), 2);
        let d = decide(busy, &[c], 10);
        assert_eq!(who(&d), ["c", "a", "c", "a"]);
    }

    /// fewest_active takes the least loaded over every campaign, a tie to
    /// the longest idle; longest_idle the longest idle alone.
    #[test]
    fn fewest_active_and_longest_idle_choose_as_they_say() {
        let mut agents = vec![agent("a", 5), agent("b", 3), agent("c", 9)];
        agents[1].active.insert("other".into(), 2);
        let mut c = campaign("v", Strategy::FewestActive, 4, &["a", "b", "c"]);
        c.waiting = vec![7, 8, 9];
        // a and c hold none (a idle longer), then c, then b (1 vs 2)...
        let d = decide(agents.clone(), &[c.clone()], 100);
        assert_eq!(who(&d), ["a", "c", "a"]);
        c.strategy = Strategy::LongestIdle;
        let d = decide(agents, &[c], 100);
        assert_eq!(who(&d), ["b", "a", "c"]);
    }

    /// No agent is ever over a campaign's cap or its own total cap, and
    /// what cannot be placed waits, in order.
    #[test]
    fn capacity_is_never_exceeded() {
        let mut agents = vec![agent("a", 0), agent("b", 0)];
        agents[0].max_total = Some(3);
        let mut v = campaign("v", Strategy::RoundRobin, 2, &["a", "b"]);
        v.waiting = (1..=10).collect();
        let mut s = campaign("s", Strategy::LongestIdle, 2, &["a", "b"]);
        s.waiting = (11..=20).collect();
        let d = decide(agents, &[v, s], 1);
        let count = |id: &str, c: Option<&str>| {
            d.assignments
                .iter()
                .filter(|x| x.agent == id && c.is_none_or(|c| x.campaign == c))
                .count()
        };
        assert_eq!(count("a", None), 3);
        assert_eq!(count("b", None), 4);
        for id in ["a", "b"] {
            for c in ["v", "s"] {
                assert!(count(id, Some(c)) <= 2);
            }
        }
        let mut ids: Vec<i64> = d.assignments.iter().map(|x| x.interaction).collect();
        let sorted = {
            let mut s = ids.clone();
            s.sort();
            s
        };
        assert_eq!(ids, sorted, "oldest first");
        ids.dedup();
        assert_eq!(ids.len(), d.assignments.len(), "none twice");
        assert_eq!(ids, [1, 2, 3, 4, 11, 12, 13]);
    }
}
