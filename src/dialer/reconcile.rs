//! What a crash left in SENDING (invariant 2), settled at start before any
//! dialer loads: each message is asked about through its gateway's
//! transport where the transport can tell (Dinstar by user_id); what
//! cannot be known becomes UNKNOWN, or goes back to the queue when its
//! dialer says `resend_unknown = true`.
//!
//! Two answers are not final at a start, and those messages stay SENDING
//! in the gateways' reconciler (`gateways::doubts`), which asks again:
//! "the gateway does not know it", because the last run may have sent it
//! just before it died to a gateway still acting on the request (it is
//! sent again only once the gateway's grace has passed since this start);
//! and a question that fails, which is asked again with backoff, not
//! settled UNKNOWN at once. Once one question to a gateway fails, its
//! other messages go to the reconciler without asking, so a gateway that
//! is down costs one timeout here, not one per message.

use std::collections::HashMap;

use crate::gateways::Gateways;
use crate::gateways::doubts::{self, Doubt, Origin, Subject, Verdict};
use crate::runtime::Shared;
use crate::store::StoreError;
use crate::store::spool::{self, AttemptRow};
use crate::transport::{self, Reconciled};

/// Settles messages a crash left in SENDING (invariant 2): ask the
/// transport where it can; otherwise UNKNOWN, or back to the queue when
/// the dialer allows resending. What the gateway cannot answer for yet is
/// handed to the reconciler of messages in doubt.
pub async fn in_flight(shared: &Shared, gateways: &Gateways) {
    // No request of the last run reached a gateway after this.
    let started = tokio::time::Instant::now();
    let store = shared.store.clone();
    let in_flight = match store.read(spool::in_flight).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot list messages left in SENDING");
            return;
        }
    };
    if in_flight.is_empty() {
        return;
    }
    tracing::info!(
        count = in_flight.len(),
        "reconciling messages left in SENDING by the last run"
    );
    let config = shared.config();
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    // Gateways a question failed on during this pass, and why.
    let mut unanswered: HashMap<String, String> = HashMap::new();
    for m in in_flight {
        let subject = Subject {
            message_id: m.id,
            attempt: AttemptRow::Latest,
            dialer: m.dialer.clone(),
            origin: Origin::Restart,
        };
        let port = m
            .channel
            .as_deref()
            .and_then(|c| c.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        let timing = m
            .gateway
            .as_deref()
            .and_then(|g| config.gateways.iter().find(|c| c.name == g && c.enabled))
            .and_then(|g| transport::capabilities(g).reconcile);
        let askable = match (m.gateway, port, m.reference, timing) {
            (Some(gateway), Some(port), Some(reference), Some(timing)) => {
                Some((gateway, port, reference, timing))
            }
            _ => None,
        };
        let Some((gateway, port, reference, timing)) = askable else {
            let why = "in flight when smsgate stopped; the gateway cannot tell whether it left";
            let state = doubts::settle(shared, &subject, Verdict::Unknown(why.into())).await;
            count(&mut counts, state, m.id);
            continue;
        };
        let asked = transport::Asked {
            message_id: m.id,
            port,
            reference,
            to: m.number.clone().unwrap_or_default(),
            text: m.text.clone(),
            started_ms: m.started_at.unwrap_or(0),
        };
        let answer = match (unanswered.get(&gateway), gateways.transport(&gateway)) {
            (Some(reason), _) => Reconciled::Unanswered {
                reason: reason.clone(),
            },
            (None, Some(t)) => t.reconcile(&asked).await,
            (None, None) => Reconciled::Unanswered {
                reason: format!("gateway {gateway} is not running"),
            },
        };
        let verdict = match answer {
            Reconciled::Sent { gateway_ref } => Verdict::Sent(gateway_ref),
            Reconciled::Unknown => Verdict::Unknown(
                "in flight when smsgate stopped; the gateway cannot tell whether it left".into(),
            ),
            Reconciled::NotSent | Reconciled::Unanswered { .. } => {
                let first_ask = match &answer {
                    // Asked again when it can no longer be on its way.
                    Reconciled::NotSent => started + timing.grace,
                    _ => tokio::time::Instant::now() + doubts::FIRST_ASK,
                };
                if let Reconciled::Unanswered { reason } = answer {
                    if !unanswered.contains_key(&gateway) {
                        tracing::warn!(gateway = %gateway, reason = %reason, "cannot ask the gateway about messages left in SENDING; they stay SENDING and are asked about again with backoff");
                        unanswered.insert(gateway.clone(), reason);
                    }
                }
                gateways.doubt(Doubt {
                    subject,
                    gateway,
                    port,
                    reference,
                    to: asked.to,
                    text: asked.text,
                    started_ms: asked.started_ms,
                    reason: "in flight when smsgate stopped".into(),
                    since: started,
                    timing,
                    first_ask,
                });
                *counts.entry("in_doubt").or_default() += 1;
                continue;
            }
        };
        let state = doubts::settle(shared, &subject, verdict).await;
        count(&mut counts, state, m.id);
    }
    tracing::info!(?counts, "reconciliation done");
}

fn count(
    counts: &mut HashMap<&'static str, usize>,
    state: Result<spool::State, StoreError>,
    id: i64,
) {
    let key = match state {
        Ok(spool::State::Sent) => "sent",
        Ok(spool::State::ToProcess) => "resent",
        Ok(spool::State::Unknown) => "unknown",
        Ok(_) => "other",
        Err(e) => {
            // Still SENDING: the next start asks again.
            tracing::error!(message = id, error = %e, "cannot record the reconciliation");
            "not_recorded"
        }
    };
    *counts.entry(key).or_default() += 1;
}
