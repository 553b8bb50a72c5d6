//! The gateway's Prometheus metrics: one registry per gateway (no global recorder), the
//! names and help texts of every metric, and how each is counted.
//!
//! The hot path never touches the registry. What purchases and requests count goes into
//! plain atomic tallies ([`answers`], [`routes`]) that a scrape publishes; what only a
//! scrape needs to know (stock per shard, dead letters, queue depth, in-flight handlers) is
//! read at scrape time ([`scrape`]). Only the two histograms, whose samples cannot be
//! tallied in advance, record into the registry as they happen: one record per Redis
//! purchase call and one per order row committed. With `metrics.enabled = false` every
//! handle is a no-op and nothing is counted on the request path.

pub mod answers;
pub mod routes;
pub mod scrape;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use metrics_util::MetricKindMask;
use serde::Deserialize;

pub use answers::{AnswerOutcome, PurchaseAnswers};
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

/// Purchase answers by sale and outcome (`accepted`, `replayed`, or a problem slug).
pub const PURCHASES: &str = "flashgate_purchases_total";
/// Units on each shard's shelf, read from Redis at scrape time.
pub const STOCK_REMAINING: &str = "flashgate_stock_remaining";
/// Accepted orders waiting in this instance's in-memory queue for the writer.
pub const ORDER_QUEUE_DEPTH: &str = "flashgate_order_queue_depth";
/// Order rows inserted into the database by this instance.
pub const ORDERS_PERSISTED: &str = "flashgate_orders_persisted_total";
/// Seconds from an order's acceptance to its row's commit.
pub const PERSIST_LAG: &str = "flashgate_persist_lag_seconds";
/// Seconds per Redis call of the purchase path.
pub const REDIS_CALL_DURATION: &str = "flashgate_redis_call_duration_seconds";
/// Purchase handlers running now.
pub const IN_FLIGHT_PURCHASES: &str = "flashgate_in_flight_purchases";
/// Purchases shed by the in-flight cap.
pub const PURCHASES_SHED: &str = "flashgate_purchases_shed_total";
/// HTTP answers by route template and status.
pub const HTTP_REQUESTS: &str = "flashgate_http_requests_total";
/// Orders waiting among the dead letters, per sale.
pub const DEAD_LETTERS: &str = "flashgate_dead_letters";
/// Client connections open now.
pub const OPEN_CONNECTIONS: &str = "flashgate_open_connections";
/// Refusals by sale and the reason the admin view names (`rejected_by_reason`).
pub const REFUSALS: &str = "flashgate_purchase_refusals_total";
/// Scrape-time reads that failed (their figures keep the last value read).
pub const SCRAPE_ERRORS: &str = "flashgate_scrape_errors_total";

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

/// Every metric: name, kind, unit and help text (the `# HELP` lines).
const DESCRIPTIONS: [(&str, Kind, Option<Unit>, &str); 13] = [
    (
        PURCHASES,
        Kind::Counter,
        None,
        "Purchase answers by sale and outcome: accepted (stock taken), replayed (a retry answered with its earlier order), or the problem slug of the refusal.",
    ),
    (
        STOCK_REMAINING,
        Kind::Gauge,
        None,
        "Units on each shard's shelf, read from Redis at scrape time.",
    ),
    (
        ORDER_QUEUE_DEPTH,
        Kind::Gauge,
        None,
        "Accepted orders waiting in this instance's queue for the database writer.",
    ),
    (
        ORDERS_PERSISTED,
        Kind::Counter,
        None,
        "Order rows this instance inserted into the database.",
    ),
    (
        PERSIST_LAG,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Seconds from an order's acceptance to the commit of its row.",
    ),
    (
        REDIS_CALL_DURATION,
        Kind::Histogram,
        Some(Unit::Seconds),
        "Seconds per Redis call of the purchase path, by call.",
    ),
    (
        IN_FLIGHT_PURCHASES,
        Kind::Gauge,
        None,
        "Purchase handlers running now.",
    ),
    (
        PURCHASES_SHED,
        Kind::Counter,
        None,
        "Purchases answered 503 at once because http.max_in_flight handlers were running.",
    ),
    (
        HTTP_REQUESTS,
        Kind::Counter,
        None,
        "HTTP answers by route template and status.",
    ),
    (
        DEAD_LETTERS,
        Kind::Gauge,
        None,
        "Orders the database refused repeatedly, waiting for an operator, per sale.",
    ),
    (
        OPEN_CONNECTIONS,
        Kind::Gauge,
        None,
        "Client connections open now.",
    ),
    (
        REFUSALS,
        Kind::Counter,
        None,
        "Purchase refusals by sale and reason, as the admin view counts them.",
    ),
    (
        SCRAPE_ERRORS,
        Kind::Counter,
        None,
        "Scrape-time reads that failed, by source; their figures keep the last value read.",
    ),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

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

/// The purchase path's Redis call timer: one histogram handle, timed with one
/// `Instant::now()` pair per call.
#[derive(Clone)]
pub struct CallTimer(Histogram);

impl CallTimer {
    /// Times the calls named `call` in `metrics`.
    pub fn new(metrics: &Metrics, call: &'static str) -> Self {
        Self(metrics.histogram(
            REDIS_CALL_DURATION,
            vec![Label::from_static_parts("call", call)],
        ))
    }

    /// A timer that records nothing.
    pub fn noop() -> Self {
        Self(Histogram::noop())
    }

    /// Runs `call` and records how long it took.
    pub async fn time<T>(&self, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        self.0.record(started.elapsed().as_secs_f64());
        result
    }
}

impl Default for CallTimer {
    fn default() -> Self {
        Self::noop()
    }
}

/// What the order writer counts: rows inserted, and the lag from acceptance to commit.
#[derive(Clone)]
pub struct PersistMetrics {
    persisted: Counter,
    lag: Histogram,
}

impl PersistMetrics {
    /// The persistence metrics of `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            persisted: metrics.counter(ORDERS_PERSISTED, Vec::new()),
            lag: metrics.histogram(PERSIST_LAG, Vec::new()),
        }
    }

    /// Counts `rows` inserted, and the lag of each order accepted at `created_ms` whose
    /// row committed at `committed_ms` (Unix milliseconds).
    pub fn committed(&self, rows: u64, created_ms: impl Iterator<Item = i64>, committed_ms: i64) {
        self.persisted.increment(rows);
        for created in created_ms {
            let lag_ms = committed_ms.saturating_sub(created).max(0);
            self.lag.record(lag_ms as f64 / 1000.0);
        }
    }
}

impl Default for PersistMetrics {
    fn default() -> Self {
        Self {
            persisted: Counter::noop(),
            lag: Histogram::noop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_once() {
        let mut names: Vec<_> = DESCRIPTIONS.iter().map(|d| d.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DESCRIPTIONS.len());
    }

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
