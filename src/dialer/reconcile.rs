//! What a crash left in SENDING (invariant 2), settled at start before any
//! dialer loads: each message is asked about through its gateway's
//! transport where the transport can tell (Dinstar by user_id); what
//! cannot be known becomes UNKNOWN, or goes back to the queue when its
//! dialer says `resend_unknown = true`.

use std::collections::HashMap;

use crate::gateways::Gateways;
use crate::runtime::Shared;
use crate::store::spool;
use crate::transport::Reconciled;

/// Settles messages a crash left in SENDING (invariant 2): ask the
/// transport where it can; otherwise UNKNOWN, or back to the queue when
/// the dialer allows resending.
pub async fn in_flight(shared: &Shared, gateways: &Gateways) {
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
    for m in in_flight {
        let port = m
            .channel
            .as_deref()
            .and_then(|c| c.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        let answer = match (
            m.gateway.as_deref().and_then(|g| gateways.transport(g)),
            port,
            m.reference,
        ) {
            (Some(transport), Some(port), Some(reference)) => {
                transport.reconcile(port, reference).await
            }
            _ => Reconciled::Unknown,
        };
        let resend = config.dialer(&m.dialer).is_some_and(|d| d.resend_unknown);
        let id = m.id;
        let (count, settle) = match answer {
            Reconciled::Sent { gateway_ref } => ("sent", Settle::Sent(gateway_ref)),
            Reconciled::NotSent => (
                "requeued",
                Settle::Requeue(
                    "not_sent",
                    "the gateway never received it (checked after a restart)",
                ),
            ),
            Reconciled::Unknown if resend => (
                "resent",
                Settle::Requeue(
                    "unknown",
                    "in flight at a crash; resending as configured (resend_unknown)",
                ),
            ),
            Reconciled::Unknown => ("unknown", Settle::Unknown),
        };
        *counts.entry(count).or_default() += 1;
        let latest = spool::AttemptRow::Latest;
        let result = store
            .write(move |tx| match settle {
                Settle::Sent(gateway_ref) => {
                    spool::mark_sent(tx, id, latest, &gateway_ref).map(|_| ())
                }
                Settle::Requeue(outcome, detail) => spool::requeue(tx, id, latest, outcome, detail),
                Settle::Unknown => spool::mark_unknown(
                    tx,
                    id,
                    latest,
                    "in flight when smsgate stopped; the gateway cannot tell whether it left",
                )
                .map(|_| ()),
            })
            .await;
        if let Err(e) = result {
            tracing::error!(message = id, error = %e, "cannot record the reconciliation");
        }
    }
    tracing::info!(?counts, "reconciliation done");
}

/// What becomes of one message left in SENDING.
enum Settle {
    /// It left: SENT with the gateway's reference.
    Sent(String),
    /// Back to the queue, with the attempt's outcome and why.
    Requeue(&'static str, &'static str),
    /// Nobody can tell.
    Unknown,
}
