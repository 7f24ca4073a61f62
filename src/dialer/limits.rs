//! What a dialer's gateways can take, for every way a message comes in
//! (single sends and imports check the same limit).

use crate::config::{Config, DialerConfig};

/// The longest text a dialer can send, in UTF-16 units, when one of the
/// gateways it may send through caps it (a Dinstar gateway takes at most
/// 670 characters whatever the encoding), with that gateway's name. None
/// when only the ten-part SMS limit applies.
pub fn text_limit(config: &Config, dialer: &DialerConfig) -> Option<(usize, String)> {
    let gateways: Vec<&str> = match config.channel_group(&dialer.provider) {
        Some(group) => group
            .primary
            .iter()
            .chain(&group.fallback)
            .map(|set| set.gateway.as_str())
            .collect(),
        None => vec![dialer.provider.as_str()],
    };
    gateways
        .into_iter()
        .filter_map(|name| config.gateway(name))
        .filter_map(|g| {
            crate::transport::capabilities(g)
                .text_limit
                .map(|max| (max, g.name.clone()))
        })
        .min_by_key(|(max, _)| *max)
}
