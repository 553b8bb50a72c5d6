//! The gateway's Prometheus metrics: one registry per gateway (no global recorder), the
//! names and help texts of every metric, and how each is counted.
//!
//! The hot path never touches the registry. What purchases and requests count goes into
//! plain atomic tallies ([`answers`], [`routes`]) that a scrape publishes; what only a
//! scrape needs to know (stock per shard, dead letters, queue depth, in-flight handlers) is
//! read at scrape time (`http::scrape`, beside the state it reads). Only the two histograms, whose samples cannot be
//! tallied in advance, record into the registry as they happen: one record per Redis
//! purchase call and one per order row committed. With `metrics.enabled = false` every
//! handle is a no-op and nothing is counted on the request path.

pub mod answers;
mod handles;
mod names;
pub mod routes;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use serde::Deserialize;

pub use answers::{MAX_OUTCOMES, PurchaseAnswers};
pub use handles::{CallTimer, PersistMetrics, ReturnMetrics};
pub use names::{
    DEAD_LETTERS, HTTP_REQUESTS, IN_FLIGHT_PURCHASES, OPEN_CONNECTIONS, ORDER_QUEUE_DEPTH,
    ORDERS_PERSISTED, ORDERS_RETURNED, PERSIST_LAG, PURCHASES, PURCHASES_SHED, REDIS_CALL_DURATION,
    REFUSALS, SCRAPE_ERRORS, STOCK_REMAINING,
};
use names::{DESCRIPTIONS, Kind};
pub use routes::RouteTallies;

/// `[metrics]`: whether the gateway keeps and serves metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `GET /metrics` and count what it shows (off: no counting on the request path,
    /// and `/metrics` is 404).
    pub enabled: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Upper bounds of the Redis call histogram: from 100 µs to a second.
const REDIS_CALL_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Upper bounds of the persistence lag histogram: from a millisecond to five minutes
/// (recovery persists orders whose gateway died, minutes later).
const PERSIST_LAG_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// A gauge no scrape has set for this long (a deleted sale's, a drained shard's) is dropped.
const GAUGE_IDLE: Duration = Duration::from_secs(300);

/// The metrics registry of one gateway, or nothing when metrics are off. Cheap to share
/// behind an `Arc`.
pub struct Metrics {
    exporter: Option<Exporter>,
    /// HTTP answers by route and status, published at scrape time.
    routes: Arc<RouteTallies>,
}

struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

/// Where handles are registered from (the exporter ignores it; the trait asks for it).
static METADATA: Metadata<'static> = Metadata::new("flashgate", Level::INFO, None);

impl Metrics {
    /// The registry `settings` ask for.
    pub fn new(settings: &MetricsSettings) -> Self {
        if settings.enabled {
            Self::enabled()
        } else {
            Self::disabled()
        }
    }

    /// A registry with every metric described and the histograms' buckets set.
    pub fn enabled() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(REDIS_CALL_DURATION.into()),
                &REDIS_CALL_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(PERSIST_LAG.into()), &PERSIST_LAG_BUCKETS)
            })
            .expect("the bucket lists are not empty")
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        for (name, kind, unit, help) in DESCRIPTIONS {
            let name = KeyName::from_const_str(name);
            match kind {
                Kind::Counter => recorder.describe_counter(name, unit, help.into()),
                Kind::Gauge => recorder.describe_gauge(name, unit, help.into()),
                Kind::Histogram => recorder.describe_histogram(name, unit, help.into()),
            }
        }
        let handle = recorder.handle();
        Self {
            exporter: Some(Exporter { recorder, handle }),
            routes: Arc::default(),
        }
    }

    /// No registry: every handle is a no-op and nothing is served.
    pub fn disabled() -> Self {
        Self {
            exporter: None,
            routes: Arc::default(),
        }
    }

    /// Whether metrics are kept (and `/metrics` served).
    pub fn is_enabled(&self) -> bool {
        self.exporter.is_some()
    }

    /// The per-route answer tallies the HTTP layer counts into.
    pub fn routes(&self) -> &Arc<RouteTallies> {
        &self.routes
    }

    /// The counter `name` with `labels` (a no-op when metrics are off).
    pub fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        match &self.exporter {
            Some(e) => e
                .recorder
                .register_counter(&Key::from_parts(name, labels), &METADATA),
            None => Counter::noop(),
        }
    }

    /// The gauge `name` with `labels` (a no-op when metrics are off).
    pub fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        match &self.exporter {
            Some(e) => e
                .recorder
                .register_gauge(&Key::from_parts(name, labels), &METADATA),
            None => Gauge::noop(),
        }
    }

    /// The histogram `name` with `labels` (a no-op when metrics are off).
    pub fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        match &self.exporter {
            Some(e) => e
                .recorder
                .register_histogram(&Key::from_parts(name, labels), &METADATA),
            None => Histogram::noop(),
        }
    }

    /// The Prometheus text exposition of everything registered (`None` when metrics are
    /// off).
    pub fn render(&self) -> Option<String> {
        self.exporter.as_ref().map(|e| e.handle.render())
    }

    /// Folds the histograms' recent samples into their buckets, so that memory stays
    /// bounded between scrapes (a worker calls it every few seconds).
    pub fn run_upkeep(&self) {
        if let Some(e) = &self.exporter {
            e.handle.run_upkeep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_registry_renders_nothing_and_counts_nowhere() {
        let metrics = Metrics::disabled();
        metrics.counter(PURCHASES, Vec::new()).increment(1);
        assert!(metrics.render().is_none());
        assert!(!metrics.is_enabled());
    }

    #[test]
    fn histograms_render_as_buckets_with_their_help() {
        let metrics = Metrics::enabled();
        let persist = PersistMetrics::new(&metrics);
        persist.committed(2, [1_000, 1_400].into_iter(), 1_500);
        let text = metrics.render().unwrap();
        assert!(
            text.contains("# HELP flashgate_persist_lag_seconds "),
            "{text}"
        );
        assert!(
            text.contains("flashgate_persist_lag_seconds_bucket{le=\"0.25\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("flashgate_persist_lag_seconds_bucket{le=\"0.5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("flashgate_persist_lag_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("flashgate_orders_persisted_total 2"),
            "{text}"
        );
    }
}
