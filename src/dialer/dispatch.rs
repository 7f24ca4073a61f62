//! A dialer's hand-out: strict round-robin over its channels in dial
//! string order (0-1-2-3-0-...); or, for the built-in reply dialers, each
//! message to the one channel it is pinned to.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::DialerConfig;
use crate::gateways::{Channel, Gateways, Job, JobDone};
use crate::store::spool;

/// Hands pending messages to the dialer's channels, round-robin in dial
/// string order (0-1-2-3-0-...), skipping channels that are unusable.
/// A usable channel whose queue is full is not skipped: the loader
/// waits for it, so every channel sends its share in turn. (Skipping
/// busy channels let a channel whose worker had not yet taken its last
/// job lose its turn to the next one, so the order depended on thread
/// scheduling. Pacing makes the channels of a dialer progress at the
/// same rate, so waiting for the one whose turn it is costs nothing.)
pub(super) fn dispatch(
    channels: &[Arc<Channel>],
    dialer: &Arc<DialerConfig>,
    pending: &mut VecDeque<spool::Queued>,
    cursor: &mut usize,
    done: &mpsc::UnboundedSender<JobDone>,
) -> Option<(Arc<Channel>, usize)> {
    if pending.is_empty() || channels.is_empty() {
        return None;
    }
    'messages: while let Some(q) = pending.pop_front() {
        let mut job = Job {
            message: q,
            dialer: dialer.clone(),
            done: done.clone(),
        };
        for _ in 0..channels.len() {
            let ch = &channels[*cursor % channels.len()];
            if ch.usable().is_err() {
                *cursor = (*cursor + 1) % channels.len();
                continue;
            }
            match ch.offer(job) {
                Ok(()) => {
                    *cursor = (*cursor + 1) % channels.len();
                    continue 'messages;
                }
                // Its worker has gone (the gateway is being
                // replaced): skip it like an unusable channel.
                Err(j) if ch.is_closed() => {
                    job = j;
                    *cursor = (*cursor + 1) % channels.len();
                }
                // Its turn, but busy: wait until it has room.
                Err(j) => {
                    let depth = ch.claim_depth(dialer);
                    pending.push_front(j.message);
                    return Some((ch.clone(), depth));
                }
            }
        }
        pending.push_front(job.message);
        break;
    }
    None
}

/// A pinned message whose channel left the config: its id and why it can
/// never be sent.
pub(super) type Orphan = (i64, String);

/// The channels a pin names: one port (`gateway:port`), or any channel of
/// a provider's gateway (`gateway:*`), the least busy first. Empty when
/// the gateway or port is not running.
fn pinned_channels(gateways: &Gateways, pin: &str) -> Vec<Arc<Channel>> {
    let Some((gateway, port)) = pin.rsplit_once(':') else {
        return Vec::new();
    };
    if port == "*" {
        let mut all = gateways.all_channels_of(gateway);
        all.sort_by_key(|c| c.queued());
        return all;
    }
    match port.parse::<u32>() {
        Ok(p) => gateways.channels_of(gateway, &[p]),
        Err(_) => Vec::new(),
    }
}

/// Hands each pending message to the channel it is pinned to (a reply
/// leaves by the number the customer wrote to, never by another). A
/// message whose channel cannot take it now stays pending, in order,
/// without holding up messages for other channels. Returns the first busy
/// channel to wait for, and the messages whose channel no longer exists
/// (the gateway or port left the config): they can never be sent.
pub(super) fn pinned(
    gateways: &Gateways,
    dialer: &Arc<DialerConfig>,
    pending: &mut VecDeque<spool::Queued>,
    done: &mpsc::UnboundedSender<JobDone>,
) -> (Option<(Arc<Channel>, usize)>, Vec<Orphan>) {
    let mut turn = None;
    let mut orphans = Vec::new();
    let mut kept = VecDeque::with_capacity(pending.len());
    while let Some(q) = pending.pop_front() {
        let candidates = q
            .pin
            .as_deref()
            .map(|pin| pinned_channels(gateways, pin))
            .unwrap_or_default();
        if candidates.is_empty() {
            let pin = q.pin.clone().unwrap_or_default();
            orphans.push((
                q.id,
                format!("the channel {pin:?} it must go out on is not in the config any more"),
            ));
            continue;
        }
        let mut job = Some(Job {
            message: q,
            dialer: dialer.clone(),
            done: done.clone(),
        });
        for channel in candidates.iter().filter(|c| c.usable().is_ok()) {
            let Some(j) = job.take() else { break };
            if let Err(j) = channel.offer(j) {
                job = Some(j);
                if turn.is_none() && !channel.is_closed() {
                    turn = Some((channel.clone(), channel.claim_depth(dialer)));
                }
            }
        }
        if let Some(j) = job {
            kept.push_back(j.message);
        }
    }
    *pending = kept;
    (turn, orphans)
}
