//! What a dialer's gateways can take, for every way a message comes in
//! (single sends and imports check the same limit).

use crate::config::{Config, DialerConfig, GatewayConfig};

/// The gateways a dialer may send through: its provider, or every gateway
/// of its channel group (primary and fallback).
pub fn gateways<'a>(config: &'a Config, dialer: &DialerConfig) -> Vec<&'a GatewayConfig> {
    let mut names: Vec<&str> = match config.channel_group(&dialer.provider) {
        Some(group) => group
            .primary
            .iter()
            .chain(&group.fallback)
            .map(|set| set.gateway.as_str())
            .collect(),
        None => vec![dialer.provider.as_str()],
    };
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| config.gateway(name))
        .collect()
}

/// Whether every gateway a dialer may send through is under WhatsApp's
/// rules (free text only inside the customer's window), and whether any
/// is (templates can go).
pub fn whatsapp(config: &Config, dialer: &DialerConfig) -> (bool, bool) {
    let gws = gateways(config, dialer);
    let wa = |g: &&GatewayConfig| crate::transport::capabilities(g).whatsapp;
    (!gws.is_empty() && gws.iter().all(wa), gws.iter().any(wa))
}

/// The longest text a dialer can send, in UTF-16 units, when one of the
/// gateways it may send through caps it (a Dinstar gateway takes at most
/// 670 characters whatever the encoding), with that gateway's name. None
/// when only the ten-part SMS limit applies.
pub fn text_limit(config: &Config, dialer: &DialerConfig) -> Option<(usize, String)> {
    gateways(config, dialer)
        .into_iter()
        .filter_map(|g| {
            crate::transport::capabilities(g)
                .text_limit
                .map(|max| (max, g.name.clone()))
        })
        .min_by_key(|(max, _)| *max)
}
