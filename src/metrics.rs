//! Prometheus metrics. Labels are bounded: dialer, gateway, channel and
//! route names from the config, never phone numbers or texts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

impl ResultLabel {
    pub fn ok() -> Self {
        Self { result: "ok" }
    }
    pub fn refused() -> Self {
        Self { result: "refused" }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialerStateLabels {
    pub dialer: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialerLabel {
    pub dialer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelOutcomeLabels {
    pub channel: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GatewayLabel {
    pub gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InboundLabels {
    pub gateway: String,
    /// "true" when a campaign took it, "false" when it is unrouted.
    pub routed: &'static str,
}

/// What the system answered a customer on its own.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplyLabels {
    /// out_of_hours, opt_out_confirmation, opt_in_confirmation
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsentLabels {
    /// opt_out, opt_in
    pub action: &'static str,
    /// keyword, api, provider
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerLabels {
    pub gateway: String,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    pub dialer: String,
    pub to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabel {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookOutcomeLabels {
    pub webhook: String,
    /// delivered, failed (an attempt that will be retried), dead_lettered,
    /// replayed.
    pub outcome: &'static str,
}

pub struct Metrics {
    registry: Registry,
    /// Webhook delivery attempts by outcome.
    pub webhook_deliveries: Family<WebhookOutcomeLabels, Counter>,
    /// Events after a webhook's position not yet delivered or given up on.
    pub webhook_backlog: Family<WebhookLabel, Gauge>,
    /// Dead letters not replayed yet, per webhook.
    pub webhook_dead_letters: Family<WebhookLabel, Gauge>,
    /// Event streams (`GET /api/v1/events`) open now.
    pub event_streams: Gauge,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub api_requests: Family<RouteLabels, Counter>,
    /// Messages that reached a state, per dialer (queued, blocked, sent...).
    pub dialer_messages: Family<DialerStateLabels, Counter>,
    /// Messages held in memory by a dialer, waiting for a channel.
    pub dialer_in_memory: Family<DialerLabel, Gauge>,
    /// Messages of each dialer per current state (refreshed at scrape).
    pub dialer_state_messages: Family<DialerStateLabels, Gauge>,
    pub channel_sends: Family<ChannelOutcomeLabels, Counter>,
    pub channel_queued: Family<ChannelLabel, Gauge>,
    pub channel_healthy: Family<ChannelLabel, Gauge>,
    pub send_latency: Family<ChannelLabel, Histogram>,
    pub breaker_open: Family<GatewayLabel, Gauge>,
    /// Messages SENDING while their gateway is asked what became of them.
    pub messages_in_doubt: Family<GatewayLabel, Gauge>,
    /// WhatsApp: customers reached outside their window in the last 24 h,
    /// and the gateway's messaging limit (refreshed at scrape).
    pub whatsapp_limit_used: Family<GatewayLabel, Gauge>,
    pub whatsapp_limit: Family<GatewayLabel, Gauge>,
    /// Received messages stored (each once), routed to a campaign or not.
    pub inbound_messages: Family<InboundLabels, Counter>,
    pub automatic_replies: Family<ReplyLabels, Counter>,
    /// Interactions the ACD's assigner gave to an agent.
    pub acd_assignments: Counter,
    pub consent_changes: Family<ConsentLabels, Counter>,
    pub breaker_transitions: Family<BreakerLabels, Counter>,
    pub failovers: Family<FailoverLabels, Counter>,
    pub loop_age: Family<LoopLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub reports_waiting: Gauge,
    /// Events a transport could not queue for the engine (the queue full).
    pub events_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("smsgate");
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information (always 1)", build_info);

        let config_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result (ok or refused)",
            config_reloads.clone(),
        );
        let api_requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests answered, by method, route pattern and status",
            api_requests.clone(),
        );
        let webhook_deliveries = Family::<WebhookOutcomeLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by webhook and outcome (delivered, failed and retried, dead_lettered, replayed)",
            webhook_deliveries.clone(),
        );
        let webhook_backlog = Family::<WebhookLabel, Gauge>::default();
        registry.register(
            "webhook_backlog",
            "Events after a webhook's position not yet delivered, dead-lettered or passed over",
            webhook_backlog.clone(),
        );
        let webhook_dead_letters = Family::<WebhookLabel, Gauge>::default();
        registry.register(
            "webhook_dead_letters",
            "Dead-lettered webhook deliveries not replayed yet",
            webhook_dead_letters.clone(),
        );
        let event_streams = Gauge::default();
        registry.register(
            "event_streams",
            "Event streams (GET /api/v1/events) open now",
            event_streams.clone(),
        );
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Gateway events (reports, results, port health) dropped because the engine's queue was full; see docs/failure-modes.md",
            events_dropped.clone(),
        );
        let reports_waiting = Gauge::default();
        registry.register(
            "reports_waiting",
            "Delivery reports received but not recorded yet because the store cannot write (a full disk); kept and retried",
            reports_waiting.clone(),
        );
        let dialer_messages = Family::<DialerStateLabels, Counter>::default();
        registry.register(
            "dialer_messages",
            "Messages that entered a state, per dialer (queued, blocked, invalid, sent, failed...)",
            dialer_messages.clone(),
        );
        let dialer_in_memory = Family::<DialerLabel, Gauge>::default();
        registry.register(
            "dialer_in_memory_messages",
            "Messages a dialer holds in memory (at most 50)",
            dialer_in_memory.clone(),
        );
        let dialer_state_messages = Family::<DialerStateLabels, Gauge>::default();
        registry.register(
            "dialer_state_messages",
            "Messages of each dialer now in each state (to_process is the queue)",
            dialer_state_messages.clone(),
        );
        let channel_sends = Family::<ChannelOutcomeLabels, Counter>::default();
        registry.register(
            "channel_sends",
            "Send attempts per channel, by outcome",
            channel_sends.clone(),
        );
        let channel_queued = Family::<ChannelLabel, Gauge>::default();
        registry.register(
            "channel_queued_messages",
            "Messages waiting in a channel's queue",
            channel_queued.clone(),
        );
        let channel_healthy = Family::<ChannelLabel, Gauge>::default();
        registry.register(
            "channel_healthy",
            "1 when the channel can send, 0 when it is skipped",
            channel_healthy.clone(),
        );
        let send_latency = Family::<ChannelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register_with_unit(
            "send_latency",
            "Time the transport took to accept one message",
            prometheus_client::registry::Unit::Seconds,
            send_latency.clone(),
        );
        let breaker_open = Family::<GatewayLabel, Gauge>::default();
        registry.register(
            "breaker_open",
            "1 while a gateway's breaker is open (its channels take no messages)",
            breaker_open.clone(),
        );
        let inbound_messages = Family::<InboundLabels, Counter>::default();
        registry.register(
            "inbound_messages",
            "Received messages stored (a duplicate counts once), by gateway and whether a campaign took them",
            inbound_messages.clone(),
        );
        let automatic_replies = Family::<ReplyLabels, Counter>::default();
        registry.register(
            "automatic_replies",
            "Replies the system queued on its own (out of hours, opt-out and opt-in confirmations), by kind",
            automatic_replies.clone(),
        );
        let acd_assignments = Counter::default();
        registry.register(
            "acd_assignments",
            "Waiting interactions the ACD gave to an agent",
            acd_assignments.clone(),
        );
        let consent_changes = Family::<ConsentLabels, Counter>::default();
        registry.register(
            "consent_changes",
            "Changes of a number's consent kept in the ledger, by action and source (keyword, api, provider)",
            consent_changes.clone(),
        );
        let messages_in_doubt = Family::<GatewayLabel, Gauge>::default();
        registry.register(
            "messages_in_doubt",
            "Messages sent without a clear answer (or found in flight at a start), SENDING while the gateway is asked about them",
            messages_in_doubt.clone(),
        );
        let whatsapp_limit_used = Family::<GatewayLabel, Gauge>::default();
        registry.register(
            "whatsapp_messaging_limit_used",
            "WhatsApp gateways: distinct customers sent a template outside their 24-hour window in the last 24 hours",
            whatsapp_limit_used.clone(),
        );
        let whatsapp_limit = Family::<GatewayLabel, Gauge>::default();
        registry.register(
            "whatsapp_messaging_limit",
            "WhatsApp gateways: the configured messaging limit (absent when unlimited)",
            whatsapp_limit.clone(),
        );
        let breaker_transitions = Family::<BreakerLabels, Counter>::default();
        registry.register(
            "breaker_transitions",
            "Times a gateway's breaker opened or closed",
            breaker_transitions.clone(),
        );
        let failovers = Family::<FailoverLabels, Counter>::default();
        registry.register(
            "failovers",
            "Times a dialer's channel group moved its traffic to the fallback or back to the primary channels",
            failovers.clone(),
        );
        let loop_age = Family::<LoopLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register_with_unit(
            "loop_heartbeat_age",
            "Time since each main loop last turned (the watchdog's view)",
            prometheus_client::registry::Unit::Seconds,
            loop_age.clone(),
        );
        Self {
            registry,
            config_reloads,
            api_requests,
            dialer_messages,
            dialer_in_memory,
            reports_waiting,
            events_dropped,
            dialer_state_messages,
            channel_sends,
            channel_queued,
            channel_healthy,
            send_latency,
            breaker_open,
            messages_in_doubt,
            whatsapp_limit_used,
            whatsapp_limit,
            inbound_messages,
            automatic_replies,
            acd_assignments,
            consent_changes,
            breaker_transitions,
            failovers,
            loop_age,
            webhook_deliveries,
            webhook_backlog,
            webhook_dead_letters,
            event_streams,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (0.0.4), which promtool and older
    /// scrapers read: counter families carry their `_total` name, and there
    /// are no UNIT or EOF lines.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }
}

fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counters_with_total_and_drops_openmetrics_lines() {
        let m = Metrics::new();
        m.config_reloads.get_or_create(&ResultLabel::ok()).inc();
        m.loop_age
            .get_or_create(&LoopLabel { task: "x".into() })
            .set(1.5);
        let text = m.encode_prometheus();
        assert!(
            text.contains("# TYPE smsgate_config_reloads_total counter"),
            "{text}"
        );
        assert!(
            text.contains("# HELP smsgate_config_reloads_total "),
            "{text}"
        );
        assert!(
            text.contains("smsgate_config_reloads_total{result=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE smsgate_loop_heartbeat_age_seconds gauge"),
            "{text}"
        );
    }
}
