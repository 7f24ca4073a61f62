//! What gateways tell the daemon on their own: received messages (stored
//! once per gateway and source key), port health, send results, delivery
//! reports and the reports that change nothing but a message's history
//! (`reports`), and the inbound mark a gateway keeps across
//! restarts. One consumer task reads every transport's events. A received
//! message is routed to its campaign, joins its customer's interaction,
//! becomes a `message.received` event and gets what the system answers on
//! its own (`replies`: consent keywords, out of hours), all in the
//! transaction that stores it.

mod replies;
mod reports;

pub use replies::out_of_hours;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dialer::Dialers;
use crate::gateways::Gateways;
use crate::runtime::Shared;
use crate::store::inbound::{self, NewInbound};
use crate::store::spool::ReportKind;
use crate::store::{events, interactions};
use crate::transport::{Event, Received};

/// How often idle interactions are closed and old events purged.
const HOUSEKEEPING: Duration = Duration::from_secs(60);

/// Reports between the event consumer and the recorder.
const REPORT_QUEUE: usize = 4096;
/// Received messages stored in one transaction at most: those already
/// queued when the consumer takes one (one commit per message held it to
/// about 1,300 a second; docs/performance.md).
const RECEIVED_BATCH: usize = 256;

/// The consumer of every transport's events, until `stop`.
pub async fn run(
    shared: Shared,
    gateways: Gateways,
    dialers: Dialers,
    mut events: mpsc::Receiver<Event>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    // Short: the recorder takes reports off it at once, into its own
    // bounded list while the store cannot write.
    let (reports, reports_rx) = mpsc::channel(REPORT_QUEUE);
    tracker.spawn(reports::record(
        shared.clone(),
        reports_rx,
        reports.clone(),
        stop.clone(),
    ));
    tracker.spawn(housekeeping(shared.clone(), stop.clone()));
    // An event taken while gathering received messages, handled next.
    let mut next: Option<Event> = None;
    loop {
        let ev = match next.take() {
            Some(e) => e,
            None => tokio::select! {
                _ = stop.cancelled() => return,
                ev = events.recv() => match ev { Some(e) => e, None => return },
            },
        };
        match ev {
            Event::PortHealth {
                gateway,
                port,
                health,
            } => gateways.set_health(&gateway, port, health),
            Event::Inbound(_) | Event::InboundAcked { .. } => {
                // With the received messages queued behind it, in order,
                // up to the first other event.
                let mut batch = vec![ev];
                while batch.len() < RECEIVED_BATCH {
                    match events.try_recv() {
                        Ok(e @ (Event::Inbound(_) | Event::InboundAcked { .. })) => batch.push(e),
                        Ok(e) => {
                            next = Some(e);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                store_batch(&shared, &dialers, batch).await;
            }
            Event::InboundMark { gateway, mark } => raise_mark(&shared, gateway, mark).await,
            Event::Result {
                gateway,
                gateway_ref,
                ok,
                detail,
            } => {
                if !ok {
                    // Off the event loop: its retries must not hold up
                    // other events.
                    let (shared, dialers) = (shared.clone(), dialers.clone());
                    tokio::spawn(async move {
                        reports::result_failed(&shared, &dialers, gateway, gateway_ref, detail)
                            .await
                    });
                }
            }
            Event::Delivered {
                gateway,
                gateway_ref,
                delivered,
                detail,
            } => {
                let report = crate::store::spool::Report {
                    gateway,
                    gateway_ref,
                    kind: if delivered {
                        ReportKind::Delivered
                    } else {
                        ReportKind::Undelivered
                    },
                    detail,
                };
                let _ = reports.send((report, 0)).await;
            }
            // Recorded with the reports, in their order and batches.
            Event::Noted {
                gateway,
                gateway_ref,
                detail,
            } => {
                let report = crate::store::spool::Report {
                    gateway,
                    gateway_ref,
                    kind: ReportKind::Noted,
                    detail,
                };
                let _ = reports.send((report, 0)).await;
            }
        }
    }
}

/// Stores received messages (`Event::Inbound` or `InboundAcked`) in one
/// transaction and answers each ack; should that transaction fail, each
/// is tried alone, so one that cannot be stored does not hold back the
/// others.
async fn store_batch(shared: &Shared, dialers: &Dialers, batch: Vec<Event>) {
    let config = shared.config();
    let mut rows = Vec::with_capacity(batch.len());
    let mut acks = Vec::with_capacity(batch.len());
    for ev in batch {
        let (msg, ack) = match ev {
            Event::Inbound(m) => (m, None),
            Event::InboundAcked { message, ack } => (message, Some(ack)),
            _ => continue,
        };
        rows.push(new_row(&config, msg));
        acks.push(ack);
    }
    if rows.len() > 1 {
        let all = rows.clone();
        let c = config.clone();
        let stored = shared
            .store
            .write(move |tx| {
                let now = jiff::Timestamp::now();
                let stored = all
                    .iter()
                    .map(|row| write_received(tx, &c, row, now))
                    .collect::<Result<Vec<_>, _>>()?;
                assign_queued(tx, &c, &stored)?;
                Ok(stored)
            })
            .await;
        if let Ok(ids) = stored {
            for ((row, id), ack) in rows.iter().zip(ids).zip(acks) {
                stored_one(shared, dialers, row, Ok(id));
                if let Some(a) = ack {
                    a.done(true);
                }
            }
            return;
        }
    }
    drop(config);
    for (row, ack) in rows.into_iter().zip(acks) {
        let ok = store_received(shared, dialers, row).await;
        if let Some(a) = ack {
            a.done(ok);
        }
    }
}

/// A received message's row, routed by where it arrived: its gateway
/// port, or our number it was sent to. None matches (or that campaign is
/// disabled): unrouted, kept.
fn new_row(config: &crate::config::Config, msg: Received) -> NewInbound {
    let campaign = config
        .campaign_for(&msg.gateway, msg.port, msg.recipient.as_deref())
        .map(|c| c.name.clone());
    NewInbound {
        campaign,
        gateway: msg.gateway,
        port: msg.port,
        source_key: msg.source_key,
        sender: msg.sender,
        number: msg.number,
        recipient: msg.recipient,
        text: msg.text,
        sent_at: msg.sent_at,
    }
}

/// Stores a received message once per (gateway, source_key); true when it
/// is on disk now (new or stored before).
async fn store_received(shared: &Shared, dialers: &Dialers, row: NewInbound) -> bool {
    let r = row.clone();
    let config = shared.config();
    let stored = shared
        .store
        .write(move |tx| {
            let stored = write_received(tx, &config, &r, jiff::Timestamp::now())?;
            assign_queued(tx, &config, std::slice::from_ref(&stored))?;
            Ok(stored)
        })
        .await;
    stored_one(shared, dialers, &row, stored)
}

/// One received message's row, its conversation, its portal event and
/// what the system answers on its own (a keyword's consent change and
/// confirmation, or the out-of-hours message), in the caller's
/// transaction: none without the others. None when it was stored before.
fn write_received(
    tx: &rusqlite::Transaction<'_>,
    config: &crate::config::Config,
    row: &NewInbound,
    now: jiff::Timestamp,
) -> Result<Option<(i64, replies::Responded)>, crate::store::StoreError> {
    let Some(id) = inbound::insert(tx, row)? else {
        return Ok(None);
    };
    let joined = match &row.campaign {
        Some(c) => Some(interactions::record_inbound(
            tx,
            &interactions::Arrival {
                campaign: c,
                customer: row.number.as_deref().unwrap_or(&row.sender),
                gateway: &row.gateway,
                port: row.port,
                recipient: row.recipient.as_deref(),
                inbound_id: id,
                text: &row.text,
            },
            config.inbound.interaction_idle.as_millis() as i64,
        )?),
        None => None,
    };
    // The agent that holds the conversation, so its own stream shows the
    // customer's messages.
    let agent = match joined {
        Some(j) => crate::store::acd::held(tx, j.interaction)?.and_then(|h| h.agent),
        None => None,
    };
    events::append(
        tx,
        "message.received",
        row.campaign.as_deref(),
        joined.map(|j| j.interaction),
        &serde_json::json!({
            "inbound": id,
            "campaign": row.campaign,
            "interaction": joined.map(|j| j.interaction),
            "agent": agent,
            "gateway": row.gateway,
            "port": row.port,
            "channel": interactions::channel_name(&row.gateway, row.port),
            "sender": row.sender,
            "number": row.number,
            "recipient": row.recipient,
            "text": row.text,
        }),
    )?;
    let responded = replies::respond(
        tx,
        config,
        &replies::Arrived {
            campaign: row.campaign.as_deref().and_then(|c| config.campaign(c)),
            interaction: joined.map(|j| j.interaction),
            number: row.number.as_deref(),
            sender: &row.sender,
            gateway: &row.gateway,
            port: row.port,
            text: &row.text,
        },
        now,
    )?;
    let responded = replies::enqueue(
        tx,
        &replies::Arrived {
            campaign: row.campaign.as_deref().and_then(|c| config.campaign(c)),
            interaction: joined.map(|j| j.interaction),
            number: row.number.as_deref(),
            sender: &row.sender,
            gateway: &row.gateway,
            port: row.port,
            text: &row.text,
        },
        joined.is_some_and(|j| j.opened),
        responded,
    )?;
    Ok(Some((id, responded)))
}

/// Runs the ACD's assignment pass at the end of the transaction that
/// queued new interactions, so a customer who finds a free agent is
/// assigned in the same commit that stores their message (one fsync, not
/// two, from arrival to the agent's event). The pass is the assigner's
/// own ([`crate::acd::assign_pass`]); the single writer keeps the two
/// callers from ever overlapping.
fn assign_queued(
    tx: &rusqlite::Transaction<'_>,
    config: &crate::config::Config,
    stored: &[Option<(i64, replies::Responded)>],
) -> Result<(), crate::store::StoreError> {
    if stored.iter().flatten().any(|(_, r)| r.queued_for_agent) {
        // Each assignment the pass wrote stands on its own; should the
        // pass fail half-way, the messages are still stored and what is
        // left waits for the assigner task (woken after the commit).
        if let Err(e) =
            crate::acd::assign_pass(tx, &crate::acd::queues_of(config), crate::store::now_ms())
        {
            tracing::warn!(error = %e, "the assignment pass after storing received messages failed; the assigner tries again");
        }
    }
    Ok(())
}

/// The journal line and the count of a received message's write; true
/// when it is on disk.
fn stored_one(
    shared: &Shared,
    dialers: &Dialers,
    row: &NewInbound,
    stored: Result<Option<(i64, replies::Responded)>, crate::store::StoreError>,
) -> bool {
    let (gateway, port, len) = (&row.gateway, row.port, row.text.chars().count());
    match stored {
        Ok(Some((id, responded))) => {
            for d in &responded.queued {
                dialers.wake(d);
            }
            for kind in &responded.replies {
                shared
                    .metrics
                    .automatic_replies
                    .get_or_create(&crate::metrics::ReplyLabels { kind })
                    .inc();
            }
            if let Some((action, _)) = &responded.consent {
                shared
                    .metrics
                    .consent_changes
                    .get_or_create(&crate::metrics::ConsentLabels {
                        action: action.as_str(),
                        source: "keyword",
                    })
                    .inc();
            }
            if let Some((action, lists)) = &responded.consent {
                let lists = if lists.is_empty() {
                    "every dialer".to_string()
                } else {
                    lists.join(", ")
                };
                tracing::info!(gateway = %gateway, inbound = id, action = action.as_str(), lists = %lists, "consent changed by keyword; the ledger has it");
            }
            if responded.busy {
                tracing::info!(gateway = %gateway, inbound = id, campaign = row.campaign.as_deref().unwrap_or(""), "acd_max_waiting customers are waiting already: refused, the campaign's busy message (if any) is sent back");
            }
            if responded.out_of_hours {
                tracing::info!(gateway = %gateway, inbound = id, campaign = row.campaign.as_deref().unwrap_or(""), "out of hours: the campaign's message is sent back on the port the customer wrote to");
            }
            match &row.campaign {
                Some(c) => {
                    tracing::info!(gateway = %gateway, port = ?port, inbound = id, chars = len, campaign = %c, "message received");
                }
                None => {
                    tracing::info!(gateway = %gateway, port = ?port, inbound = id, chars = len, "message received; no campaign takes it (unrouted, kept)");
                }
            }
            shared
                .metrics
                .inbound_messages
                .get_or_create(&crate::metrics::InboundLabels {
                    gateway: gateway.clone(),
                    routed: if row.campaign.is_some() {
                        "true"
                    } else {
                        "false"
                    },
                })
                .inc();
            true
        }
        Ok(None) => {
            tracing::debug!(gateway = %gateway, port = ?port, "message received again (push and poll); kept once");
            true
        }
        Err(e) => {
            tracing::error!(gateway = %gateway, error = %e, "cannot store a received message; the gateway keeps it and it is fetched again");
            false
        }
    }
}

/// Keeps a gateway's inbound mark (it only rises), for its next start.
async fn raise_mark(shared: &Shared, gateway: String, mark: i64) {
    let Some(kind) = shared.config().gateway(&gateway).map(|g| g.kind.as_str()) else {
        return;
    };
    let key = inbound::mark_key(kind, &gateway);
    if let Err(e) = shared
        .store
        .write(move |tx| inbound::kv_raise(tx, &key, mark))
        .await
    {
        tracing::error!(gateway = %gateway, error = %e, "cannot record the inbound high-water mark; messages may be fetched again (they are kept once)");
    }
}

/// How long a report that finds no SENT message waits before it is tried
/// again: it can overtake the SENT record of its message.
fn retry_delay(tries: u32) -> Duration {
    Duration::from_millis(50 * (1 << tries.min(5)))
}

/// Closes idle interactions and purges old events, a bounded batch at a
/// time so the writer is never held long, until `stop`.
async fn housekeeping(shared: Shared, stop: CancellationToken) {
    const BATCH: usize = 1000;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HOUSEKEEPING) => {}
        }
        let now = crate::store::now_ms();
        let idle_since = now - shared.config().inbound.interaction_idle.as_millis() as i64;
        for campaign in shared.config().campaigns.iter().map(|c| c.name.clone()) {
            let c = campaign.clone();
            match shared
                .store
                .write(move |tx| interactions::close_idle(tx, &c, idle_since, BATCH))
                .await
            {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(campaign = %campaign, closed = n, "idle interactions closed")
                }
                Err(e) => {
                    tracing::warn!(campaign = %campaign, error = %e, "cannot close idle interactions; tried again in a minute")
                }
            }
        }
        // `[events] retention_s`; what a webhook still owes is kept longer.
        let before = now - shared.config().events.retention.as_millis() as i64;
        loop {
            match shared
                .store
                .write(move |tx| events::purge(tx, before, BATCH))
                .await
            {
                Ok(n) if n == BATCH && !stop.is_cancelled() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot purge old events; tried again in a minute");
                    break;
                }
            }
        }
    }
}
