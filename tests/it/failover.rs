//! A Redis master killed mid-storm: a Redis Cluster of three masters with one replica each
//! (`cluster-node-timeout` 1 s), a gateway writing orders to PostgreSQL, buyers purchasing
//! before, during and after one master is SIGKILLed and its replica promoted.
//!
//! During the failover window a purchase is answered 202, 409, or 503/429 problem+json, never
//! 500 and never not at all; each buyer retries a 503/429 with the same idempotency key, and
//! gets a final answer within a bounded number of tries. Afterwards: the cluster's ledger
//! adds up, nothing is oversold, nobody holds more than the limit, every 202 is a database
//! row, and every row is known to the surviving cluster, except (with `durability = async`)
//! the records the killed master had not yet sent to its replica. With `durability =
//! replica` there are none: a 202 waited for the replica. The killed node is restarted once
//! the replica took over, and rejoins as a replica.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use flashgate::testing::config::DurabilityMode;
use flashgate::testing::store::RedisTarget;
use reqwest::StatusCode;
use tokio::task::JoinSet;

use crate::support::app::{TestApp, live_sale, spawn_app_with, test_settings};
use crate::support::db::TestDb;
use crate::support::redis::{RedisCluster, RedisServer};

const SHARDS: u32 = 6;
const PER_USER_LIMIT: u32 = 2;
/// Buyers starting before and while the master is killed, one every `STAGGER`.
const FIRST_WAVE: usize = 120;
/// Buyers starting once the replica was promoted.
const SECOND_WAVE: usize = 40;
const STAGGER: Duration = Duration::from_millis(20);
/// When the master is killed, after the first buyer started.
const KILL_AFTER: Duration = Duration::from_millis(800);
/// Tries of one purchase (the first and its retries after 503/429), 100 ms apart: a failover
/// of a few seconds fits many times over.
const MAX_TRIES: usize = 150;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_loses_only_the_records_its_replica_never_received() {
    // Enough stock that the sale does not sell out: under `async` a record the replica never
    // received also takes its units back, and a sold-out sale would sell them again.
    let run = run_failover(DurabilityMode::Async, 1_000).await;
    let lost = run.rows_unknown_to_redis();
    eprintln!(
        "async: {} accepted, {} rows, {} lost with the killed master",
        run.accepted.len(),
        run.rows.len(),
        lost.len()
    );
    // A lost record's units went back to the shelf with it: the cluster counts them unsold.
    let lost_units: u64 = lost.iter().map(|id| run.rows[*id].1).sum();
    assert_eq!(run.db_units(), run.redis_sold + lost_units);
    assert!(run.db_units() <= run.stock, "oversold: {}", run.db_units());
    // Only a buyer whose earlier order was lost can have bought past the limit.
    let lost_buyers: HashSet<&str> = lost.iter().map(|id| run.rows[*id].0.as_str()).collect();
    for (user, units) in run.units_per_buyer() {
        assert!(
            units <= u64::from(PER_USER_LIMIT) || lost_buyers.contains(user.as_str()),
            "{user} holds {units} units"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_durability_a_killed_master_loses_no_accepted_purchase() {
    // Fewer units than the buyers want: the sale sells out across the failover.
    let run = run_failover(DurabilityMode::Replica, 300).await;
    let lost = run.rows_unknown_to_redis();
    assert!(lost.is_empty(), "records lost with the master: {lost:?}");
    assert_eq!(run.redis_sold, run.stock, "the sale did not sell out");
    assert_eq!(run.db_units(), run.stock);
    for (user, units) in run.units_per_buyer() {
        assert!(
            units <= u64::from(PER_USER_LIMIT),
            "{user} holds {units} units"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replica_durability_and_no_replica_a_purchase_is_accepted_and_the_unacknowledged_wait_counted()
 {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.redis.durability = DurabilityMode::Replica;
    settings.redis.replica_wait_timeout_ms = 20;
    let app = spawn_app_with(settings).await;
    app.create_sale("lonely", &live_sale(10, 2, 1, 1)).await;
    for (user, key) in [("a", "a-1"), ("b", "b-1")] {
        let response = app.purchase("lonely", user, key, 1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    // A refusal by the script (over the per-buyer limit) took nothing: its wait is not
    // counted.
    let response = app.purchase("lonely", "a", "a-2", 1).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let scrape = app.metrics_text().await;
    let counted = scrape
        .lines()
        .find_map(|line| line.strip_prefix("flashgate_replica_wait_timeouts_total "))
        .expect("the counter is exported");
    assert_eq!(counted.trim(), "2", "{scrape}");
}

/// What a failover run left behind.
struct FailoverRun {
    stock: u64,
    /// The order ids answered 202.
    accepted: HashSet<String>,
    /// Database rows: order id -> (user, quantity).
    rows: HashMap<String, (String, u64)>,
    /// Order ids the surviving cluster's buyer records hold.
    known_to_redis: HashSet<String>,
    /// Units the surviving cluster counts as sold.
    redis_sold: u64,
}

impl FailoverRun {
    fn rows_unknown_to_redis(&self) -> Vec<&String> {
        let mut lost: Vec<_> = self
            .rows
            .keys()
            .filter(|id| !self.known_to_redis.contains(*id))
            .collect();
        lost.sort();
        lost
    }

    fn db_units(&self) -> u64 {
        self.rows.values().map(|(_, units)| units).sum()
    }

    fn units_per_buyer(&self) -> HashMap<String, u64> {
        let mut units = HashMap::new();
        for (user, quantity) in self.rows.values() {
            *units.entry(user.clone()).or_insert(0) += quantity;
        }
        units
    }
}

/// Runs the storm with `durability` over a sale of `stock` units, kills the master holding
/// most of its shards, waits for the promotion, runs a second wave, restarts the killed node,
/// and checks what holds in every mode: every answer was 202/409/503/429, every buyer got a
/// final answer, every 202 is a row, the surviving ledger adds up.
async fn run_failover(durability: DurabilityMode, stock: u64) -> FailoverRun {
    let mut cluster = RedisCluster::start_with_replicas();
    let db = TestDb::postgres();
    let mut settings = test_settings(&RedisTarget::Cluster(cluster.urls()));
    settings.database.url = db.url();
    settings.redis.durability = durability;
    // A wait blocks the gateway's connection to that node for every later command: short
    // enough that a master without a replica (between the failover and the restart) still
    // answers, long enough that a replica acknowledges on a busy machine.
    settings.redis.replica_wait_timeout_ms = 500;
    let app = spawn_app_with(settings).await;
    let sale = "failover";
    app.create_sale(sale, &live_sale(stock, SHARDS, PER_USER_LIMIT, 1))
        .await;
    let victim = master_holding_most_shards(&mut cluster, &app).await;

    let app = std::sync::Arc::new(app);
    let mut buyers = JoinSet::new();
    for i in 0..FIRST_WAVE {
        let app = app.clone();
        buyers.spawn(async move {
            tokio::time::sleep(STAGGER * i as u32).await;
            buyer(&app, sale, &format!("first-{i}")).await
        });
    }
    tokio::time::sleep(KILL_AFTER).await;
    cluster.kill(victim);
    tokio::task::block_in_place(|| cluster.wait_until_failed_over());
    // The operator brings the node back: it rejoins as the promoted node's replica (until
    // then, under `replica`, every wait on that node runs to its timeout).
    tokio::task::block_in_place(|| cluster.restart(victim));
    let mut second = JoinSet::new();
    for i in 0..SECOND_WAVE {
        let app = app.clone();
        second.spawn(async move { buyer(&app, sale, &format!("second-{i}")).await });
    }
    let mut accepted = HashSet::new();
    while let Some(orders) = buyers.join_next().await {
        accepted.extend(orders.expect("a buyer panicked"));
    }
    let mut accepted_after = 0;
    while let Some(orders) = second.join_next().await {
        let orders = orders.expect("a buyer panicked");
        accepted_after += orders.len();
        accepted.extend(orders);
    }
    // The first wave alone cannot sell out either sale: the gateway sold after the failover.
    assert!(accepted_after > 0, "nothing accepted after the failover");

    let counters = app.drained_counters(sale, SHARDS).await;
    let left: u64 = counters.iter().map(|c| c.stock).sum();
    let redis_sold: u64 = counters.iter().map(|c| c.sold).sum();
    assert_eq!(
        left + redis_sold,
        stock,
        "units appeared or vanished: {counters:?}"
    );
    let rows: HashMap<String, (String, u64)> = app
        .db_orders(sale)
        .await
        .into_iter()
        .map(|(id, user, units)| (id, (user, units)))
        .collect();
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !rows.contains_key(*id))
        .collect();
    assert!(missing.is_empty(), "202 answers without a row: {missing:?}");
    let known_to_redis = order_ids_in_buyer_records(&mut cluster, &app.prefix).await;
    FailoverRun {
        stock,
        accepted,
        rows,
        known_to_redis,
        redis_sold,
    }
}

/// One buyer: `PER_USER_LIMIT` + 1 orders of one unit, one after the other, each with its
/// own idempotency key (the last one is over the limit unless the sale sold out). Returns
/// the order ids answered 202.
async fn buyer(app: &TestApp, sale: &str, user: &str) -> Vec<String> {
    let mut accepted = Vec::new();
    for order in 0..=PER_USER_LIMIT {
        let key = format!("{user}-{order}");
        if let Some(order_id) = purchase_until_answered(app, sale, user, &key).await {
            accepted.push(order_id);
        }
    }
    accepted
}

/// Sends one purchase, again with the same key after each 503/429, until it is answered 202
/// (its order id) or 409 (`None`). Panics on any other answer, on a request that gets no
/// answer within the client's timeout, and after [`MAX_TRIES`] tries.
async fn purchase_until_answered(
    app: &TestApp,
    sale: &str,
    user: &str,
    key: &str,
) -> Option<String> {
    for _ in 0..MAX_TRIES {
        let response = app.purchase(sale, user, key, 1).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        match status {
            StatusCode::ACCEPTED => {
                let order_id = body["order_id"].as_str().expect("a 202 names its order");
                return Some(order_id.to_owned());
            }
            StatusCode::CONFLICT => return None,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(content_type, "application/problem+json", "{status} {body}");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => panic!("purchase {key} answered {other}: {body}"),
        }
    }
    panic!("purchase {key} still answered 503/429 after {MAX_TRIES} tries");
}

/// The master (index into the cluster's nodes) holding most of the sale's shards.
async fn master_holding_most_shards(cluster: &mut RedisCluster, app: &TestApp) -> usize {
    let pattern = format!("{}:*:stock", app.prefix);
    let mut best = (0, usize::MAX);
    for index in cluster.masters() {
        let keys: Vec<String> = node_query(cluster, index, redis::cmd("KEYS").arg(&pattern)).await;
        if best.1 == usize::MAX || keys.len() > best.0 {
            best = (keys.len(), index);
        }
    }
    assert!(best.0 > 0, "no master holds a shard of the sale");
    best.1
}

/// Every order id in the buyer records of the prefix, on the cluster's masters now: a record
/// holds `<units>` then one line `<idempotency key> <order id> <quantity> <fingerprint>` per
/// accepted order.
async fn order_ids_in_buyer_records(cluster: &mut RedisCluster, prefix: &str) -> HashSet<String> {
    let pattern = format!("{prefix}:*:buyers");
    let mut ids = HashSet::new();
    for index in cluster.masters() {
        let keys: Vec<String> = node_query(cluster, index, redis::cmd("KEYS").arg(&pattern)).await;
        for key in keys {
            let records: HashMap<String, String> =
                node_query(cluster, index, redis::cmd("HGETALL").arg(&key)).await;
            for (field, record) in records {
                if field.starts_with('#') {
                    continue;
                }
                let orders = record.lines().skip(1);
                ids.extend(orders.filter_map(|line| line.split(' ').nth(1).map(str::to_owned)));
            }
        }
    }
    ids
}

/// Runs `cmd` on node `index` alone (not through the cluster's routing).
async fn node_query<T: redis::FromRedisValue>(
    cluster: &RedisCluster,
    index: usize,
    cmd: &redis::Cmd,
) -> T {
    let client = redis::Client::open(cluster.nodes()[index].url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}
