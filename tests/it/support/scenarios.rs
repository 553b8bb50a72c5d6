//! Invariant scenarios shared by the single-node and cluster test crates.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Response;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::app::{TestApp, live_sale};

/// Most requests a scenario keeps in flight at once.
const IN_FLIGHT: usize = 512;

/// The gist of one purchase answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub slug: Option<String>,
    pub order_id: Option<String>,
    pub quantity: u64,
    pub body: Value,
}

impl Answer {
    pub async fn of(response: Response) -> Self {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            slug: body["type"]
                .as_str()
                .map(|t| t.trim_start_matches("/problems/").to_owned()),
            order_id: body["order_id"].as_str().map(str::to_owned),
            quantity: body["quantity"].as_u64().unwrap_or(0),
            body,
        }
    }
}

/// Sends one purchase per `(user, key, quantity)`, all concurrently (bounded), and returns
/// the answers in input order.
pub async fn storm(app: &TestApp, sale: &str, requests: Vec<(String, String, u32)>) -> Vec<Answer> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let calls = requests.into_iter().map(|(user, key, qty)| {
        let gate = gate.clone();
        async move {
            let _permit = gate.acquire().await.unwrap();
            Answer::of(app.purchase(sale, &user, &key, qty).await).await
        }
    });
    futures::future::join_all(calls).await
}

/// Counts answers by `status slug`.
pub fn tally(answers: &[Answer]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for a in answers {
        let label = format!("{} {}", a.status, a.slug.as_deref().unwrap_or(""));
        *counts.entry(label.trim().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Checks the ledger after a storm, once the writer has drained: no loan outstanding, every
/// shard non-negative (the counters are unsigned, a negative would fail to decode), units
/// sold + units left == stock, the database holds exactly the accepted orders, each once,
/// and the streams hold nothing unpersisted.
pub async fn assert_ledger(app: &TestApp, sale: &str, shards: u32, stock: u64, answers: &[Answer]) {
    let shards = app.indices_used(sale, shards).await;
    let counters = app.drained_counters(sale, shards).await;
    let left: u64 = counters.iter().map(|c| c.stock).sum();
    let sold: u64 = counters.iter().map(|c| c.sold).sum();
    assert_eq!(
        left + sold,
        stock,
        "units appeared or vanished: {counters:?}"
    );
    let accepted: HashSet<String> = answers.iter().filter_map(|a| a.order_id.clone()).collect();
    let accepted_units: u64 = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| a.quantity)
        .sum();
    let rows = app.db_orders(sale).await;
    let persisted: HashSet<String> = rows.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(
        persisted, accepted,
        "database rows and 202 answers disagree"
    );
    let persisted_units: u64 = rows.iter().map(|(_, _, q)| q).sum();
    assert_eq!(persisted_units, sold);
    assert_eq!(accepted_units, sold);
    assert!(
        app.stream_orders(sale, shards).await.is_empty(),
        "persisted orders left in streams"
    );
}

/// 10,000-style storm: `buyers` distinct buyers want one unit each of a `stock`-unit sale
/// over `shards` shards. Exactly `stock` succeed; everyone else is told sold-out.
pub async fn distinct_buyers_storm_sells_exactly_the_stock(
    app: &TestApp,
    sale: &str,
    stock: u64,
    shards: u32,
    buyers: usize,
) {
    app.create_sale(sale, &live_sale(stock, shards, 1, 1)).await;
    let requests = (0..buyers)
        .map(|i| (format!("buyer-{i}"), format!("key-{i}"), 1))
        .collect();
    let answers = storm(app, sale, requests).await;
    let counts = tally(&answers);
    if let Some(odd) = answers.iter().find(|a| a.status != 202 && a.status != 409) {
        panic!("unexpected answer {:?}; all: {counts:?}", odd.body);
    }
    assert_eq!(
        counts.get("202").copied().unwrap_or(0) as u64,
        stock,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("409 sold-out").copied().unwrap_or(0),
        buyers - stock as usize,
        "{counts:?}"
    );
    assert_ledger(app, sale, shards, stock, &answers).await;
    let used = app.indices_used(sale, shards).await;
    let counters = app.shard_counters(sale, used).await;
    assert!(
        counters.iter().all(|c| c.stock == 0),
        "a shard kept stock: {counters:?}"
    );
}

/// One buyer fires `attempts` concurrent one-unit purchases (distinct keys) at a sale with
/// `per_user_limit` over `shards` shards: exactly `per_user_limit` units are theirs.
pub async fn one_buyer_storm_respects_the_limit(
    app: &TestApp,
    sale: &str,
    shards: u32,
    limit: u32,
    attempts: usize,
) {
    app.create_sale(sale, &live_sale(1000, shards, limit, 1))
        .await;
    let requests = (0..attempts)
        .map(|i| ("greedy".to_owned(), format!("k{i}"), 1))
        .collect();
    let answers = storm(app, sale, requests).await;
    let counts = tally(&answers);
    assert_eq!(
        counts.get("202").copied().unwrap_or(0),
        limit as usize,
        "{counts:?}"
    );
    assert_eq!(
        counts.get("409 limit-reached").copied().unwrap_or(0),
        attempts - limit as usize,
        "{counts:?}"
    );
    assert_ledger(app, sale, shards, 1000, &answers).await;
}

/// Mixed quantities on stock that the shard count does not divide: once buyers of single
/// units sweep up, units sold == stock exactly, and nobody was refused while enough stock
/// remained for them.
pub async fn mixed_quantities_sell_every_unit(app: &TestApp, sale: &str, stock: u64, shards: u32) {
    app.create_sale(sale, &live_sale(stock, shards, 3, 3)).await;
    let first: Vec<_> = (0..stock as usize)
        .map(|i| (format!("m-{i}"), format!("k-{i}"), (i % 3) as u32 + 1))
        .collect();
    let mut answers = storm(app, sale, first).await;
    for a in answers
        .iter()
        .filter(|a| a.slug.as_deref() == Some("insufficient-stock"))
    {
        let remaining = a.body["remaining"].as_u64().unwrap();
        assert!(
            remaining >= 1,
            "insufficient with nothing left: {:?}",
            a.body
        );
    }
    let sweep: Vec<_> = (0..stock as usize)
        .map(|i| (format!("s-{i}"), format!("k-{i}"), 1))
        .collect();
    answers.extend(storm(app, sale, sweep).await);
    let sold: u64 = answers
        .iter()
        .filter(|a| a.status == 202)
        .map(|a| a.quantity)
        .sum();
    assert_eq!(sold, stock, "{:?}", tally(&answers));
    let refused_early = answers
        .iter()
        .filter(|a| a.status != 202)
        .filter(|a| !matches!(a.slug.as_deref(), Some("sold-out" | "insufficient-stock")));
    assert_eq!(refused_early.count(), 0, "{:?}", tally(&answers));
    assert_ledger(app, sale, shards, stock, &answers).await;
}

/// How far a storm has got, and how far the operator lets it go: the storm sends no new
/// request once `accepted` reaches the ceiling, so an operator's change lands while stock
/// remains however slow the machine (the requests already in flight still run beside it,
/// so a ceiling must leave room for them). The operator raises the ceiling once its change is done.
pub struct Progress {
    accepted: AtomicUsize,
    ceiling: AtomicUsize,
}

impl Progress {
    /// A storm that may have `ceiling` purchases accepted (plus those in flight) before
    /// the operator raises the ceiling.
    pub fn up_to(ceiling: usize) -> Self {
        Self {
            accepted: AtomicUsize::new(0),
            ceiling: AtomicUsize::new(ceiling),
        }
    }

    /// Counts one accepted purchase.
    pub fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Purchases accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Lets the storm go on up to `ceiling` (`usize::MAX`: to the end).
    pub fn allow_up_to(&self, ceiling: usize) {
        self.ceiling.store(ceiling, Ordering::Relaxed);
    }

    /// Waits until `n` purchases were accepted (or the storm is long over: 120 s).
    pub async fn when_accepted(&self, n: usize) {
        for _ in 0..12_000 {
            if self.accepted() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the storm may send another request (at most 120 s: an operator that
    /// never raises the ceiling fails its own assertions, not a hang).
    pub async fn below_ceiling(&self) {
        for _ in 0..12_000 {
            if self.accepted() < self.ceiling.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
