//! Which channels a dialer sends through now. A dialer on one gateway sends
//! through the ports its dial string names. A dialer on a channel group
//! sends through the group's primary channels while at least one of them
//! can send, and otherwise through its fallback channels; each switch, and
//! each switch back, is a journal entry (with every primary channel and why
//! it cannot send) and a count in `smsgate_failovers_total{dialer, to}`.

use std::sync::Arc;

use super::{Channel, Gateways};
use crate::config::{ChannelSet, Config, DialerConfig};

/// One dialer's side of the choice: whether its group is on its fallback
/// channels now. A group decides a switch only when it has traffic to move.
#[derive(Debug, Default)]
pub struct Failover {
    on_fallback: bool,
}

impl Failover {
    /// The channels `dialer` sends through now, in round-robin order.
    pub fn channels(
        &mut self,
        gateways: &Gateways,
        config: &Config,
        dialer: &DialerConfig,
    ) -> Vec<Arc<Channel>> {
        let Some(group) = config.channel_group(&dialer.provider) else {
            return gateways.channels_of(&dialer.provider, &dialer.ports);
        };
        let collect = |sets: &[ChannelSet]| -> Vec<Arc<Channel>> {
            sets.iter()
                .flat_map(|s| gateways.channels_of(&s.gateway, &s.ports))
                .collect()
        };
        let primary = collect(&group.primary);
        let reasons: Vec<String> = primary
            .iter()
            .filter_map(|c| c.usable().err().map(|why| format!("{}: {why}", c.id)))
            .collect();
        let primary_ok = reasons.len() < primary.len();
        if primary_ok == self.on_fallback {
            self.on_fallback = !primary_ok;
            let to = if self.on_fallback {
                tracing::warn!(dialer = %dialer.name, group = %group.name, reason = %reasons.join("; "), "no primary channel can send: traffic moves to the fallback channels");
                "fallback"
            } else {
                tracing::info!(dialer = %dialer.name, group = %group.name, "a primary channel can send again: traffic moves back from the fallback channels");
                "primary"
            };
            gateways
                .inner
                .shared
                .metrics
                .failovers
                .get_or_create(&crate::metrics::FailoverLabels {
                    dialer: dialer.name.clone(),
                    to,
                })
                .inc();
        }
        if self.on_fallback {
            collect(&group.fallback)
        } else {
            primary
        }
    }
}
