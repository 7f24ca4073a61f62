//! Conversations: the messages between one customer and one campaign,
//! grouped into an interaction that stays open until it is closed or has
//! been idle too long; a later message opens a new one. Each change writes
//! its event in the same transaction.

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::json;

use super::{StoreError, events, now_ms};

/// Where a received message goes in its campaign's conversations.
#[derive(Debug, Clone)]
pub struct Arrival<'a> {
    pub campaign: &'a str,
    /// E.164, or the sender as written.
    pub customer: &'a str,
    pub gateway: &'a str,
    pub port: Option<u32>,
    pub recipient: Option<&'a str>,
    pub inbound_id: i64,
    pub text: &'a str,
}

/// The interaction a received message joined, and whether it opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub interaction: i64,
    pub opened: bool,
}

/// The channel as messages name it: "gateway:port", or the gateway alone
/// for a provider without ports.
pub fn channel_name(gateway: &str, port: Option<u32>) -> String {
    match port {
        Some(p) => format!("{gateway}:{p}"),
        None => gateway.to_string(),
    }
}

/// The channel a reply to a customer is pinned to (`message.pin_channel`):
/// the port they wrote to, or, on a provider that names no port (Twilio,
/// WhatsApp), `gateway:*`, any channel of the gateway they wrote to.
pub fn pin_name(gateway: &str, port: Option<u32>) -> String {
    match port {
        Some(p) => format!("{gateway}:{p}"),
        None => format!("{gateway}:*"),
    }
}

/// Adds a received message to its customer's open interaction with the
/// campaign, opening one when there is none (or the open one has been idle
/// `idle_ms` or more: it is closed first, as the idle sweep would have).
pub fn record_inbound(
    tx: &Transaction<'_>,
    a: &Arrival<'_>,
    idle_ms: i64,
) -> Result<Joined, StoreError> {
    let now = now_ms();
    let open: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, last_at FROM interaction WHERE campaign = ?1 AND customer = ?2 AND closed_at IS NULL",
        )?
        .query_row(params![a.campaign, a.customer], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let channel = channel_name(a.gateway, a.port);
    let (id, opened) = match open {
        Some((id, last_at)) if now - last_at < idle_ms => (id, false),
        stale => {
            if let Some((id, _)) = stale {
                close(tx, id, "idle")?;
            }
            tx.prepare_cached(
                "INSERT INTO interaction (campaign, customer, gateway, port, recipient, origin, started_at, last_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'inbound', ?6, ?6)",
            )?
            .execute(params![a.campaign, a.customer, a.gateway, a.port, a.recipient, now])?;
            let id = tx.last_insert_rowid();
            events::append(
                tx,
                "interaction.opened",
                Some(a.campaign),
                Some(id),
                &json!({"interaction": id, "campaign": a.campaign, "customer": a.customer,
                        "channel": channel, "origin": "inbound"}),
            )?;
            (id, true)
        }
    };
    tx.prepare_cached(
        "UPDATE interaction SET last_at = ?2, messages = messages + 1 WHERE id = ?1",
    )?
    .execute(params![id, now])?;
    tx.prepare_cached(
        "INSERT INTO interaction_message (interaction_id, at, direction, sender, channel, text, inbound_id) \
         VALUES (?1, ?2, 'in', 'customer', ?3, ?4, ?5)",
    )?
    .execute(params![id, now, channel, a.text, a.inbound_id])?;
    tx.prepare_cached("UPDATE inbound SET interaction_id = ?2 WHERE id = ?1")?
        .execute(params![a.inbound_id, id])?;
    Ok(Joined {
        interaction: id,
        opened,
    })
}

/// An outbound message of an interaction (a system reply, later an
/// agent's), already in the spool as `message_id`, written into the
/// conversation with its sender; its queueing is a `message.state` event
/// of the interaction (the trigger reports the changes that follow).
pub fn record_outbound(
    tx: &Transaction<'_>,
    interaction: i64,
    sender: &str,
    channel: &str,
    message_id: i64,
    message: &super::spool::NewMessage,
) -> Result<(), StoreError> {
    let (dialer, destination, text) = (&message.dialer, &message.destination, &message.text);
    let now = now_ms();
    let campaign: String = tx
        .prepare_cached(
            "UPDATE interaction SET last_at = ?2, messages = messages + 1 WHERE id = ?1 RETURNING campaign",
        )?
        .query_row(params![interaction, now], |r| r.get(0))?;
    tx.prepare_cached(
        "INSERT INTO interaction_message (interaction_id, at, direction, sender, channel, text, message_id) \
         VALUES (?1, ?2, 'out', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![interaction, now, sender, channel, text, message_id])?;
    events::append(
        tx,
        "message.state",
        Some(&campaign),
        Some(interaction),
        &json!({"message": message_id, "dialer": dialer, "client_id": null,
                "destination": destination, "state": "TO_PROCESS", "state_code": 1,
                "from_state_code": null, "channel": channel, "interaction": interaction,
                "sender": sender, "detail": null}),
    )?;
    Ok(())
}

/// When the customer last got a campaign's out-of-hours message (unix
/// ms), in any of their interactions with it.
pub fn last_out_of_hours(
    tx: &Transaction<'_>,
    campaign: &str,
    customer: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT max(ooh_at) FROM interaction WHERE customer = ?1 AND campaign = ?2",
        )?
        .query_row(params![customer, campaign], |r| r.get(0))?)
}

/// Notes that the interaction's customer got the out-of-hours message now.
pub fn set_out_of_hours(tx: &Transaction<'_>, interaction: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE interaction SET ooh_at = ?2 WHERE id = ?1")?
        .execute(params![interaction, now_ms()])?;
    Ok(())
}

/// Closes an open interaction; false when it was closed already (or is
/// not there).
pub fn close(tx: &Transaction<'_>, id: i64, by: &str) -> Result<bool, StoreError> {
    let now = now_ms();
    let campaign: Option<String> = tx
        .prepare_cached(
            "UPDATE interaction SET closed_at = ?2, closed_by = ?3, waiting = NULL \
             WHERE id = ?1 AND closed_at IS NULL RETURNING campaign",
        )?
        .query_row(params![id, now, by], |r| r.get(0))
        .optional()?;
    let Some(campaign) = campaign else {
        return Ok(false);
    };
    events::append(
        tx,
        "interaction.closed",
        Some(&campaign),
        Some(id),
        &json!({"interaction": id, "campaign": campaign, "closed_by": by}),
    )?;
    Ok(true)
}

/// Closes the interactions of `campaign` idle since before `idle_since_ms`,
/// at most `limit`; how many.
pub fn close_idle(
    tx: &Transaction<'_>,
    campaign: &str,
    idle_since_ms: i64,
    limit: usize,
) -> Result<usize, StoreError> {
    let ids: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM interaction WHERE closed_at IS NULL AND last_at < ?1 AND campaign = ?2 \
             ORDER BY last_at LIMIT ?3",
        )?
        .query_map(params![idle_since_ms, campaign, limit as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        close(tx, *id, "idle")?;
    }
    Ok(ids.len())
}

/// How many interactions of a campaign are open.
pub fn open_count(conn: &Connection, campaign: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT count(*) FROM interaction WHERE campaign = ?1 AND closed_at IS NULL",
        )?
        .query_row([campaign], |r| r.get(0))?)
}

/// Which interactions a search shows (the seed's "Grabaciones"); every
/// field narrows it, a list matches any of its values.
#[derive(Debug, Clone, Default)]
pub struct InteractionFilter {
    /// Started at or after, unix ms.
    pub from_ms: Option<i64>,
    /// Started before, unix ms.
    pub to_ms: Option<i64>,
    /// The customer (the origin number), E.164 or as written.
    pub customer: Option<String>,
    pub campaigns: Vec<String>,
    pub agents: Vec<String>,
    /// Only open (true) or only closed (false) ones.
    pub open: Option<bool>,
    /// The page's cursor: ids below it.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// An interaction as lists show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub id: i64,
    pub campaign: String,
    pub customer: String,
    pub agent: Option<String>,
    /// Where the customer wrote first: "gateway:port", or the gateway.
    pub channel: String,
    /// Our number the customer wrote to, when the gateway said.
    pub recipient: Option<String>,
    /// inbound: the customer wrote first.
    pub origin: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub closed: Option<String>,
    /// Unix ms.
    pub started_at: i64,
    pub closed_at: Option<i64>,
    pub last_at: i64,
    /// idle | api:<token> | agent:<id>
    pub closed_by: Option<String>,
    pub messages: i64,
    /// In its campaign's queue, waiting for an agent.
    pub waiting: bool,
    /// Unix ms: first given to an agent; an agent's first reply.
    pub assigned_at: Option<i64>,
    pub first_reply_at: Option<i64>,
}

pub(super) const SUMMARY_COLUMNS: &str = "id, campaign, customer, agent, gateway, port, recipient, origin, \
     started_at, closed_at, last_at, closed_by, messages, waiting, assigned_at, first_reply_at";

pub(super) fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    let started_at: i64 = r.get(8)?;
    let closed_at: Option<i64> = r.get(9)?;
    let gateway: String = r.get(4)?;
    let port: Option<u32> = r.get(5)?;
    Ok(Summary {
        id: r.get(0)?,
        campaign: r.get(1)?,
        customer: r.get(2)?,
        agent: r.get(3)?,
        channel: channel_name(&gateway, port),
        recipient: r.get(6)?,
        origin: r.get(7)?,
        started: smsgate_proto::recording::rfc3339(started_at),
        closed: closed_at.map(smsgate_proto::recording::rfc3339),
        started_at,
        closed_at,
        last_at: r.get(10)?,
        closed_by: r.get(11)?,
        messages: r.get(12)?,
        waiting: r.get::<_, Option<i64>>(13)? == Some(1),
        assigned_at: r.get(14)?,
        first_reply_at: r.get(15)?,
    })
}

/// Newest first, `before_id` as the cursor. The statement holds only the
/// conditions asked for, so a customer or a time range seeks its index.
pub fn list(
    conn: &Connection,
    f: &InteractionFilter,
) -> Result<(Vec<Summary>, Option<i64>), StoreError> {
    let limit = i64::from(f.limit.clamp(1, 1000));
    let mut sql = format!("SELECT {SUMMARY_COLUMNS} FROM interaction WHERE 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut arg = |sql: &mut String, cond: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("?{}", args.len())));
    };
    if let Some(c) = &f.customer {
        arg(&mut sql, " AND customer = ?", c.clone().into());
    }
    if let Some(t) = f.from_ms {
        arg(&mut sql, " AND started_at >= ?", t.into());
    }
    if let Some(t) = f.to_ms {
        arg(&mut sql, " AND started_at < ?", t.into());
    }
    for (column, values) in [("campaign", &f.campaigns), ("agent", &f.agents)] {
        if values.is_empty() {
            continue;
        }
        sql.push_str(&format!(" AND {column} IN ("));
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            arg(&mut sql, "?", v.clone().into());
        }
        sql.push(')');
    }
    match f.open {
        Some(true) => sql.push_str(" AND closed_at IS NULL"),
        Some(false) => sql.push_str(" AND closed_at IS NOT NULL"),
        None => {}
    }
    if let Some(b) = f.before_id {
        arg(&mut sql, " AND id < ?", b.into());
    }
    arg(&mut sql, " ORDER BY id DESC LIMIT ?", (limit + 1).into());
    let mut stmt = conn.prepare_cached(&sql)?;
    let items = stmt
        .query_map(rusqlite::params_from_iter(args), summary)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(super::page(items, limit, |m| m.id))
}

/// One message of a conversation; an outbound one with its delivery state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationMessage {
    pub id: i64,
    /// Unix ms.
    pub at_ms: i64,
    /// RFC 3339, UTC.
    pub at: String,
    /// in: from the customer; out: to them.
    pub direction: String,
    /// customer | system | agent:<id>
    pub sender: String,
    pub channel: Option<String>,
    pub text: String,
    /// The received message's id (`GET /api/v1/inbound`).
    pub inbound: Option<i64>,
    /// The outbound message's id (`GET /api/v1/messages/{id}`).
    pub message: Option<i64>,
    /// An outbound message's state now (SENT, DELIVERED, ...).
    pub state: Option<&'static str>,
    pub state_code: Option<i64>,
    /// Why it failed or what the report said.
    pub detail: Option<String>,
}

/// An interaction and its messages, oldest first; None when there is none.
pub fn get(
    conn: &Connection,
    id: i64,
) -> Result<Option<(Summary, Vec<ConversationMessage>)>, StoreError> {
    let Some(s) = conn
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM interaction WHERE id = ?1"
        ))?
        .query_row([id], summary)
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT m.id, m.at, m.direction, m.sender, m.channel, m.text, m.inbound_id, m.message_id, \
                s.state, coalesce(s.report, s.error) \
         FROM interaction_message m LEFT JOIN message s ON s.id = m.message_id \
         WHERE m.interaction_id = ?1 ORDER BY m.id",
    )?;
    let rows = stmt.query_map([id], |r| {
        let at: i64 = r.get(1)?;
        let code: Option<i64> = r.get(8)?;
        Ok(ConversationMessage {
            id: r.get(0)?,
            at_ms: at,
            at: smsgate_proto::recording::rfc3339(at),
            direction: r.get(2)?,
            sender: r.get(3)?,
            channel: r.get(4)?,
            text: r.get(5)?,
            inbound: r.get(6)?,
            message: r.get(7)?,
            state: code
                .and_then(super::spool::State::from_code)
                .map(super::spool::State::name),
            state_code: code,
            detail: r.get(9)?,
        })
    })?;
    Ok(Some((s, rows.collect::<Result<Vec<_>, _>>()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::inbound::{self, NewInbound};

    fn received(tx: &Transaction<'_>, key: &str, from: &str, text: &str) -> i64 {
        inbound::insert(
            tx,
            &NewInbound {
                gateway: "gw".into(),
                port: Some(1),
                source_key: key.into(),
                sender: from.into(),
                number: Some(from.into()),
                recipient: None,
                text: text.into(),
                sent_at: None,
                campaign: Some("ventas".into()),
            },
        )
        .unwrap()
        .unwrap()
    }

    fn arrival<'a>(customer: &'a str, id: i64, text: &'a str) -> Arrival<'a> {
        Arrival {
            campaign: "ventas",
            customer,
            gateway: "gw",
            port: Some(1),
            recipient: None,
            inbound_id: id,
            text,
        }
    }

    /// One customer's messages join one open interaction; another
    /// customer gets their own; a closed or idle one is never joined
    /// again; each opening and closing is an event, in order.
    #[test]
    fn messages_group_into_interactions_that_close_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let hour = 3_600_000;
        let (a, b, c, d) = s
            .write_blocking(move |tx| {
                let i1 = received(tx, "1", "+59899111222", "hola");
                let a = record_inbound(tx, &arrival("+59899111222", i1, "hola"), hour)?;
                let i2 = received(tx, "2", "+59899111222", "¿sigue ahí?");
                let b = record_inbound(tx, &arrival("+59899111222", i2, "¿sigue ahí?"), hour)?;
                let i3 = received(tx, "3", "+59899333444", "otro");
                let c = record_inbound(tx, &arrival("+59899333444", i3, "otro"), hour)?;
                assert!(close(tx, a.interaction, "api:portal")?);
                assert!(!close(tx, a.interaction, "api:portal")?, "closed once");
                let i4 = received(tx, "4", "+59899111222", "de nuevo");
                // Idle time zero: the open one (c's customer has none now
                // for this number) would be stale; this one opens fresh.
                let d = record_inbound(tx, &arrival("+59899111222", i4, "de nuevo"), hour)?;
                Ok((a, b, c, d))
            })
            .unwrap();
        assert!(a.opened && !b.opened && c.opened && d.opened);
        assert_eq!(a.interaction, b.interaction);
        assert_ne!(a.interaction, c.interaction);
        assert_ne!(a.interaction, d.interaction);
        let (count, open_c) = s
            .read_blocking(move |conn| {
                let n: i64 = conn.query_row(
                    "SELECT messages FROM interaction WHERE id = ?1",
                    [a.interaction],
                    |r| r.get(0),
                )?;
                Ok((n, open_count(conn, "ventas")?))
            })
            .unwrap();
        assert_eq!(count, 2);
        assert_eq!(open_c, 2, "c's and d's are open");
        // An interaction idle longer than the limit is closed by the next
        // message, which opens a new one.
        let e = s
            .write_blocking(move |tx| {
                let i5 = received(tx, "5", "+59899333444", "tarde");
                record_inbound(tx, &arrival("+59899333444", i5, "tarde"), 0)
            })
            .unwrap();
        assert!(e.opened);
        assert_ne!(e.interaction, c.interaction);
        let evs = s.read_blocking(|conn| events::after(conn, 0, 100)).unwrap();
        let kinds: Vec<(&str, Option<i64>)> = evs
            .iter()
            .map(|e| (e.kind.as_str(), e.interaction))
            .collect();
        assert_eq!(
            kinds,
            [
                ("interaction.opened", Some(a.interaction)),
                ("interaction.opened", Some(c.interaction)),
                ("interaction.closed", Some(a.interaction)),
                ("interaction.opened", Some(d.interaction)),
                ("interaction.closed", Some(c.interaction)),
                ("interaction.opened", Some(e.interaction)),
            ]
        );
        assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(evs[2].data["closed_by"], "api:portal");
        assert_eq!(evs[4].data["closed_by"], "idle");
        // The sweep closes what is idle, and only that.
        let n = s
            .write_blocking(|tx| close_idle(tx, "ventas", crate::now_ms() + 1, 100))
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(s.read_blocking(|c| open_count(c, "ventas")).unwrap(), 0);
    }

    /// Agents and campaigns filter alone and together, any of several
    /// values matching; a customer and a start range narrow further.
    #[test]
    fn the_search_filters_by_agents_campaigns_customer_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        let ids = s
            .write_blocking(|tx| {
                let mut ids = Vec::new();
                for (i, (campaign, customer, agent)) in [
                    ("ventas", "+59899000001", Some("ana")),
                    ("ventas", "+59899000002", Some("beto")),
                    ("soporte", "+59899000001", Some("ana")),
                    ("soporte", "+59899000003", None),
                ]
                .into_iter()
                .enumerate()
                {
                    let key = i.to_string();
                    let inbound = received(tx, &key, customer, "hola");
                    let j = record_inbound(
                        tx,
                        &Arrival {
                            campaign,
                            ..arrival(customer, inbound, "hola")
                        },
                        3_600_000,
                    )?;
                    tx.execute(
                        "UPDATE interaction SET agent = ?2, started_at = ?3 WHERE id = ?1",
                        params![j.interaction, agent, 1000 * (i as i64 + 1)],
                    )?;
                    ids.push(j.interaction);
                }
                Ok(ids)
            })
            .unwrap();
        let find = |f: InteractionFilter| -> Vec<i64> {
            let (items, _) = s
                .read_blocking(move |c| list(c, &InteractionFilter { limit: 100, ..f }))
                .unwrap();
            let mut v: Vec<i64> = items.iter().map(|i| i.id).collect();
            v.sort();
            v
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pick = |is: &[usize]| is.iter().map(|i| ids[*i]).collect::<Vec<_>>();
        assert_eq!(
            find(InteractionFilter {
                agents: strings(&["ana"]),
                ..Default::default()
            }),
            pick(&[0, 2])
        );
        assert_eq!(
            find(InteractionFilter {
                agents: strings(&["ana", "beto"]),
                ..Default::default()
            }),
            pick(&[0, 1, 2])
        );
        assert_eq!(
            find(InteractionFilter {
                campaigns: strings(&["soporte"]),
                ..Default::default()
            }),
            pick(&[2, 3])
        );
        assert_eq!(
            find(InteractionFilter {
                campaigns: strings(&["soporte"]),
                agents: strings(&["ana"]),
                ..Default::default()
            }),
            pick(&[2])
        );
        assert_eq!(
            find(InteractionFilter {
                customer: Some("+59899000001".into()),
                agents: strings(&["ana"]),
                campaigns: strings(&["ventas", "soporte"]),
                ..Default::default()
            }),
            pick(&[0, 2])
        );
        assert_eq!(
            find(InteractionFilter {
                from_ms: Some(2000),
                to_ms: Some(4000),
                ..Default::default()
            }),
            pick(&[1, 2])
        );
        assert_eq!(
            find(InteractionFilter {
                from_ms: Some(2000),
                to_ms: Some(4000),
                agents: strings(&["beto"]),
                ..Default::default()
            }),
            pick(&[1])
        );
        assert!(
            find(InteractionFilter {
                agents: strings(&["nadie"]),
                ..Default::default()
            })
            .is_empty()
        );
    }

    /// A message's state changes are events too, written by the trigger
    /// that keeps its history; old events are purged.
    #[test]
    fn outbound_state_changes_are_events_and_old_ones_are_purged() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            crate::store::Store::open(dir.path(), crate::runtime::Heartbeat::detached()).unwrap();
        s.write_blocking(|tx| {
            tx.execute_batch(
                "INSERT INTO message (id, dialer, destination, number, text, priority, state, encoding, segments, created_at, updated_at) \
                 VALUES (1, 'dd', '099111222', '+59899111222', 'x', 5, 1, 'gsm7', 1, 0, 0); \
                 UPDATE message SET state = 2, channel = 'gw:0' WHERE id = 1; \
                 UPDATE message SET state = 4 WHERE id = 1; \
                 UPDATE message SET state = 10, report = 'expired' WHERE id = 1;",
            )?;
            Ok(())
        })
        .unwrap();
        let evs = s.read_blocking(|c| events::after(c, 0, 10)).unwrap();
        let states: Vec<&str> = evs
            .iter()
            .map(|e| e.data["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["SENDING", "SENT", "UNDELIVERED"]);
        assert!(evs.iter().all(|e| e.kind == "message.state"));
        assert_eq!(evs[2].data["detail"], "expired");
        assert_eq!(evs[0].data["channel"], "gw:0");
        let last = evs[2].seq;
        let gone = s
            .write_blocking(|tx| events::purge(tx, crate::now_ms() + 1, 2))
            .unwrap();
        assert_eq!(gone, 2, "a bounded batch");
        let left = s.read_blocking(|c| events::after(c, 0, 10)).unwrap();
        assert_eq!(left.len(), 1);
        // Purged numbers are never handed out again.
        let next = s
            .write_blocking(|tx| {
                events::purge(tx, crate::now_ms() + 1, 10)?;
                events::append(tx, "test", None, None, &serde_json::json!({}))
            })
            .unwrap();
        assert!(next > last);
    }
}
