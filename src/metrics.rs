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
pub struct LoopLabel {
    pub task: String,
}

pub struct Metrics {
    registry: Registry,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub api_requests: Family<RouteLabels, Counter>,
    /// Messages that reached a state, per dialer (queued, blocked, sent...).
    pub dialer_messages: Family<DialerStateLabels, Counter>,
    /// Messages held in memory by a dialer, waiting for a channel.
    pub dialer_in_memory: Family<DialerLabel, Gauge>,
    pub channel_sends: Family<ChannelOutcomeLabels, Counter>,
    pub channel_queued: Family<ChannelLabel, Gauge>,
    pub channel_healthy: Family<ChannelLabel, Gauge>,
    pub send_latency: Family<ChannelLabel, Histogram>,
    pub loop_age: Family<LoopLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
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
        registry.register("build", "Build information (always 1)", build_info);

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
            channel_sends,
            channel_queued,
            channel_healthy,
            send_latency,
            loop_age,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
