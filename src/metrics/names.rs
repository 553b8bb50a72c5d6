//! The name, kind, unit and help text of every metric the gateway exports.

use metrics::Unit;

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
/// Units given back to their sale by cancelled and expired orders, by sale and reason.
pub const ORDERS_RETURNED: &str = "flashgate_orders_returned_total";

/// Every metric: name, kind, unit and help text (the `# HELP` lines).
pub(super) const DESCRIPTIONS: [(&str, Kind, Option<Unit>, &str); 14] = [
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
    (
        ORDERS_RETURNED,
        Kind::Counter,
        None,
        "Orders whose units this instance gave back to their sale, by sale and reason (cancelled or expired).",
    ),
];

/// What a metric is.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
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
}
