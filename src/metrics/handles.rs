//! The handles the background paths record through: the purchase call timer, the
//! persistence counters and the returned-orders counter. Each is a no-op when metrics are off.

use std::future::Future;

use metrics::{Counter, Histogram, Label};

use std::sync::Arc;

use super::{Metrics, ORDERS_PERSISTED, ORDERS_RETURNED, PERSIST_LAG, REDIS_CALL_DURATION};

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

/// What the order lifecycle counts: orders whose units went back to their sale.
#[derive(Clone)]
pub struct ReturnMetrics(Option<Arc<Metrics>>);

impl ReturnMetrics {
    /// The lifecycle metrics of `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self(Some(metrics))
    }

    /// A handle that counts nothing.
    pub fn noop() -> Self {
        Self(None)
    }

    /// Counts one order of `sale` whose units went back, settled as `reason`.
    pub fn returned(&self, sale: &str, reason: &'static str) {
        if let Some(metrics) = &self.0 {
            let labels = vec![
                Label::new("sale", sale.to_owned()),
                Label::from_static_parts("reason", reason),
            ];
            metrics.counter(ORDERS_RETURNED, labels).increment(1);
        }
    }
}
