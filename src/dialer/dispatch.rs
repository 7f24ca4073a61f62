//! A dialer's hand-out: strict round-robin over its channels in dial
//! string order (0-1-2-3-0-...).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::DialerConfig;
use crate::gateways::{Channel, Job, JobDone};
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
