//! What a scrape reads and publishes before rendering: the tallies the request path kept
//! (answers by sale and by route, refusals by reason), the edge's own gauges, and the
//! figures only Redis knows (stock per shard, dead letters), read now. Nothing here runs on
//! the purchase path.
//!
//! A sale whose figures cannot be read from Redis keeps the values of the last scrape that
//! could, and counts one `flashgate_scrape_errors_total{source="redis"}`: the scrape itself
//! still answers, since an outage is when an operator needs the other figures most.

use metrics::Label;

use super::AppState;
use super::outcome::AnswerOutcome;
use crate::metrics::{
    DEAD_LETTERS, HTTP_REQUESTS, IN_FLIGHT_PURCHASES, Metrics, OPEN_CONNECTIONS, ORDER_QUEUE_DEPTH,
    PURCHASES, PURCHASES_SHED, REFUSALS, SCRAPE_ERRORS, STOCK_REMAINING,
};
use crate::persist::dead_letters;
use crate::stock::SaleRuntime;
use crate::store::StoreError;

/// Publishes every figure and renders the exposition (`None` when metrics are off).
pub async fn scrape(state: &AppState) -> Option<String> {
    let metrics = &state.metrics;
    if !metrics.is_enabled() {
        return None;
    }
    publish_routes(metrics);
    publish_edge(state);
    for rt in state.sales.all_cached() {
        publish_answers(metrics, &rt);
        if let Err(error) = publish_stored(state, &rt).await {
            tracing::warn!(sale = %rt.sale.id, %error, "metrics: cannot read the sale's figures");
            let source = vec![Label::from_static_parts("source", "redis")];
            metrics.counter(SCRAPE_ERRORS, source).increment(1);
        }
    }
    metrics.render()
}

/// HTTP answers by route and status.
fn publish_routes(metrics: &Metrics) {
    for tally in metrics.routes().all() {
        for (status, count) in tally.snapshot() {
            let labels = vec![
                Label::new("route", tally.route().to_owned()),
                Label::new("status", status.to_string()),
            ];
            metrics.counter(HTTP_REQUESTS, labels).absolute(count);
        }
    }
}

/// The gauges and counters this instance keeps in memory.
fn publish_edge(state: &AppState) {
    let metrics = &state.metrics;
    let gauge = |name| metrics.gauge(name, Vec::new());
    gauge(IN_FLIGHT_PURCHASES).set(state.in_flight.running() as f64);
    gauge(OPEN_CONNECTIONS).set(state.connections.open() as f64);
    gauge(ORDER_QUEUE_DEPTH).set(state.purchases.queue.len() as f64);
    metrics
        .counter(PURCHASES_SHED, Vec::new())
        .absolute(state.in_flight.shed() as u64);
}

/// The sale's answers by outcome and refusals by reason.
fn publish_answers(metrics: &Metrics, rt: &SaleRuntime) {
    let sale = rt.sale.id.as_str();
    for (slot, count) in rt.answers.snapshot() {
        let Some(outcome) = AnswerOutcome::of_slot(slot) else {
            continue;
        };
        let labels = vec![
            Label::new("sale", sale.to_owned()),
            Label::from_static_parts("outcome", outcome.label()),
        ];
        metrics.counter(PURCHASES, labels).absolute(count);
    }
    for (reason, count) in rt.stats.snapshot() {
        if count > 0 {
            let labels = vec![
                Label::new("sale", sale.to_owned()),
                Label::from_static_parts("reason", reason),
            ];
            metrics.counter(REFUSALS, labels).absolute(count);
        }
    }
}

/// The sale's stock per shard and its dead letters, read from Redis now.
async fn publish_stored(state: &AppState, rt: &SaleRuntime) -> Result<(), StoreError> {
    let metrics = &state.metrics;
    let sale = rt.sale.id.as_str();
    let (shards, dead) = tokio::try_join!(
        state.stock.collect(rt),
        dead_letters::count(&state.persister, rt)
    )?;
    for (shard, counters) in shards {
        let labels = vec![
            Label::new("sale", sale.to_owned()),
            Label::new("shard", shard.to_string()),
        ];
        metrics
            .gauge(STOCK_REMAINING, labels)
            .set(counters.stock as f64);
    }
    let labels = vec![Label::new("sale", sale.to_owned())];
    metrics.gauge(DEAD_LETTERS, labels).set(dead as f64);
    Ok(())
}
