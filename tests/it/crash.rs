//! Crash safety of accepted orders, with the real `flashgate` binary: SIGKILL at random
//! moments during a purchase storm, and SIGTERM (graceful shutdown) during one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::db::OrderDb;
use flashgate::testing::domain::{SaleId, UserId};
use flashgate::testing::store::shards::{self, ShardCounters};
use flashgate::testing::store::{Keys, RedisConn, RedisTarget, RedisTimeouts};
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::app::{ADMIN_TOKEN, JWT_SECRET, live_sale};
use crate::support::db::TestDb;
use crate::support::process::GatewayProcess;
use crate::support::redis::RedisServer;

const SHARDS: u32 = 8;

/// What a buyer finally got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Final {
    Accepted(String),
    Refused(String),
}

struct Storm {
    client: reqwest::Client,
    base: String,
    tokens: Vec<String>,
}

impl Storm {
    fn new(base: String, buyers: usize) -> Self {
        let keys = JwtKeys::new(JWT_SECRET.as_bytes());
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let tokens = (0..buyers)
            .map(|i| keys.mint(&UserId::parse(&format!("c{i}")).unwrap(), exp))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        Self {
            client,
            base,
            tokens,
        }
    }

    /// One attempt of buyer `i` (always with the same Idempotency-Key): `None` when the
    /// answer is unknown (connection lost, gateway down, 503) and the buyer must retry.
    async fn attempt(&self, sale: &str, i: usize) -> Option<Final> {
        let response = self
            .client
            .post(format!("{}/api/v1/sales/{sale}/purchase", self.base))
            .bearer_auth(&self.tokens[i])
            .header("Idempotency-Key", format!("key-{i}"))
            .json(&json!({ "quantity": 1 }))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.ok()?;
        match status {
            202 => Some(Final::Accepted(body["order_id"].as_str()?.to_owned())),
            409 => Some(Final::Refused(body["type"].as_str()?.to_owned())),
            _ => None,
        }
    }

    /// Retries every unresolved buyer until all have a final answer (bounded rounds).
    async fn run(self: Arc<Self>, sale: &str) -> HashMap<usize, Final> {
        let gate = Arc::new(Semaphore::new(64));
        let mut finals = HashMap::new();
        for _round in 0..300 {
            let unresolved: Vec<usize> = (0..self.tokens.len())
                .filter(|i| !finals.contains_key(i))
                .collect();
            if unresolved.is_empty() {
                return finals;
            }
            let tries = unresolved.into_iter().map(|i| {
                let (storm, gate) = (self.clone(), gate.clone());
                async move {
                    let _permit = gate.acquire().await.unwrap();
                    (i, storm.attempt(sale, i).await)
                }
            });
            for (i, outcome) in futures::future::join_all(tries).await {
                if let Some(outcome) = outcome {
                    finals.insert(i, outcome);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("buyers still unresolved after 300 rounds");
    }
}

async fn create_sale(base: &str, sale: &str, stock: u64) {
    let response = reqwest::Client::new()
        .put(format!("{base}/admin/v1/sales/{sale}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&live_sale(stock, SHARDS, 1, 1))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// A connection to the test's Redis.
async fn connect(redis_url: &str) -> RedisConn {
    let timeouts = RedisTimeouts {
        response: Duration::from_secs(2),
        connect: Duration::from_secs(2),
    };
    RedisConn::connect(&RedisTarget::Single(redis_url.to_owned()), timeouts)
        .await
        .unwrap()
}

/// The counters of every shard of `sale`, summed, as Redis holds them now.
async fn counters_now(redis_url: &str, prefix: &str, sale: &str) -> ShardCounters {
    let mut conn = connect(redis_url).await;
    let (keys, sale) = (Keys::new(prefix), SaleId::parse(sale).unwrap());
    let mut total = ShardCounters::default();
    for shard in 0..SHARDS {
        let c = shards::read_counters(&mut conn, &keys.shard(&sale, shard))
            .await
            .unwrap();
        total.pending_units += c.pending_units;
        total.lent += c.lent;
        total.sold += c.sold;
    }
    total
}

/// Waits until Redis holds no pending order of `sale`, then returns units sold.
async fn drained_sold(redis_url: &str, prefix: &str, sale: &str) -> u64 {
    for _ in 0..600 {
        let c = counters_now(redis_url, prefix, sale).await;
        if c.pending_units + c.lent == 0 {
            return c.sold;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("orders still pending after 30 s");
}

/// The buyers refused a final answer although Redis records an order of theirs (a retry
/// that should have been answered with it).
async fn refused_holders(
    redis_url: &str,
    prefix: &str,
    sale: &str,
    finals: &HashMap<usize, Final>,
) -> Vec<String> {
    let mut conn = connect(redis_url).await;
    let (keys, sale) = (Keys::new(prefix), SaleId::parse(sale).unwrap());
    let mut holding = Vec::new();
    for (i, outcome) in finals {
        if !matches!(outcome, Final::Refused(_)) {
            continue;
        }
        let user = UserId::parse(&format!("c{i}")).unwrap();
        for shard in 0..SHARDS {
            let record = shards::read_buyer_record(&mut conn, &keys.shard(&sale, shard), &user)
                .await
                .unwrap();
            if let Some(record) = record {
                holding.push(format!("{user}: {record:?}"));
            }
        }
    }
    holding
}

/// Every 202 is a row, rows == units deducted, no duplicates, and the reconcile command
/// agrees (exit 0).
async fn assert_every_accepted_order_is_a_row(
    gateway: &GatewayProcess,
    db_url: &str,
    redis_url: &str,
    prefix: &str,
    sale: &str,
    finals: &HashMap<usize, Final>,
) {
    let sold = drained_sold(redis_url, prefix, sale).await;
    let accepted: HashSet<&String> = finals
        .values()
        .filter_map(|f| match f {
            Final::Accepted(id) => Some(id),
            Final::Refused(_) => None,
        })
        .collect();
    let accepted_count = finals
        .values()
        .filter(|f| matches!(f, Final::Accepted(_)))
        .count();
    assert_eq!(
        accepted.len(),
        accepted_count,
        "two buyers got the same order id"
    );
    let store = OrderDb::connect(db_url).await.unwrap();
    let rows = store.list(&SaleId::parse(sale).unwrap()).await.unwrap();
    let row_ids: HashSet<String> = rows.iter().map(|r| r.order_id.to_string()).collect();
    assert_eq!(row_ids.len(), rows.len(), "duplicate rows");
    let accepted: HashSet<String> = accepted.into_iter().cloned().collect();
    let unanswered: Vec<&String> = row_ids.difference(&accepted).collect();
    let missing: Vec<&String> = accepted.difference(&row_ids).collect();
    assert!(
        unanswered.is_empty() && missing.is_empty(),
        "rows and 202 answers differ: {} rows, {} answers; rows never answered 202: \
         {unanswered:?}; 202 answers with no row: {missing:?}",
        row_ids.len(),
        accepted.len(),
    );
    assert_eq!(
        rows.iter().map(|r| u64::from(r.quantity)).sum::<u64>(),
        sold,
        "rows != units deducted"
    );
    let (status, out) = gateway.run_cli(&["reconcile", "--sale", sale]);
    assert!(status.success(), "reconcile reported a difference: {out}");
}

/// The gateway's settings for these tests: its Redis, database and key prefix, and quick
/// recovery of orders and loans left behind by a killed process.
fn gateway_env(redis: &RedisServer, db: &TestDb, prefix: &str) -> [(&'static str, String); 7] {
    [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_REDIS__KEY_PREFIX", prefix.to_owned()),
        ("FLASHGATE_DATABASE__URL", db.url()),
        ("FLASHGATE_QUEUE__CLAIM_IDLE_MS", "500".to_owned()),
        ("FLASHGATE_QUEUE__RECOVERY_INTERVAL_MS", "200".to_owned()),
        ("FLASHGATE_STOCK__LOAN_GRACE_MS", "500".to_owned()),
        ("FLASHGATE_STOCK__RECOVERY_INTERVAL_MS", "200".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_ten_times_during_a_storm_loses_no_accepted_order() {
    let redis = RedisServer::start();
    let db = TestDb::postgres();
    let prefix = format!("k{:08x}", rand::random::<u32>());
    let env = gateway_env(&redis, &db, &prefix);
    let mut gateway = GatewayProcess::start(&env).await;
    create_sale(&gateway.base(), "crash", 2000).await;
    let storm = Arc::new(Storm::new(gateway.base(), 3000));
    let buying = tokio::spawn(storm.clone().run("crash"));
    for _ in 0..10 {
        let pause = rand::rng().random_range(150..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        gateway.restart().await; // SIGKILL, then start again
    }
    let finals = buying.await.unwrap();
    let accepted = finals
        .values()
        .filter(|f| matches!(f, Final::Accepted(_)))
        .count();
    if accepted != 2000 {
        let mut refusals: HashMap<&str, usize> = HashMap::new();
        for f in finals.values() {
            if let Final::Refused(slug) = f {
                *refusals.entry(slug.as_str()).or_default() += 1;
            }
        }
        let sold = drained_sold(&redis.url(), &prefix, "crash").await;
        let holding = refused_holders(&redis.url(), &prefix, "crash", &finals).await;
        panic!(
            "accepted {accepted}, refusals {refusals:?}, units sold in redis {sold}, \
             refused buyers who hold an order: {holding:?}"
        );
    }
    assert_every_accepted_order_is_a_row(
        &gateway,
        &db.url(),
        &redis.url(),
        &prefix,
        "crash",
        &finals,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_storm_exits_zero_and_keeps_every_accepted_order() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let prefix = format!("t{:08x}", rand::random::<u32>());
    let env = gateway_env(&redis, &db, &prefix);
    let mut gateway = GatewayProcess::start(&env).await;
    create_sale(&gateway.base(), "term", 5000).await;
    let storm = Arc::new(Storm::new(gateway.base(), 3000));
    // One pass only: answers lost to the shutdown stay unknown here.
    let gate = Arc::new(Semaphore::new(64));
    let answered = Arc::new(AtomicUsize::new(0));
    let attempts = (0..3000).map(|i| {
        let (storm, gate, answered) = (storm.clone(), gate.clone(), answered.clone());
        async move {
            let _permit = gate.acquire().await.unwrap();
            let outcome = storm.attempt("term", i).await;
            answered.fetch_add(1, Ordering::Relaxed);
            (i, outcome)
        }
    });
    let buying = tokio::spawn(futures::future::join_all(attempts));
    // SIGTERM in the middle of the storm, whatever the machine's speed: once a tenth of
    // the buyers have an answer, with the next 64 requests in flight.
    for _ in 0..6000 {
        if answered.load(Ordering::Relaxed) >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = gateway.terminate();
    assert!(status.success(), "graceful shutdown exited with {status}");
    let first_pass: HashMap<usize, Final> = buying
        .await
        .unwrap()
        .into_iter()
        .filter_map(|(i, f)| Some((i, f?)))
        .collect();
    assert!(
        first_pass.values().any(|f| matches!(f, Final::Accepted(_))),
        "nothing was bought before SIGTERM"
    );
    // Before any restart, so no recovery can have helped: the drain at SIGTERM made a row
    // of every order answered 202, and left no accepted unit without its row.
    let rows = OrderDb::connect(&db.url())
        .await
        .unwrap()
        .list(&SaleId::parse("term").unwrap())
        .await
        .unwrap();
    let row_ids: HashSet<String> = rows.iter().map(|r| r.order_id.to_string()).collect();
    for outcome in first_pass.values() {
        if let Final::Accepted(id) = outcome {
            assert!(
                row_ids.contains(id),
                "order {id} answered 202 has no row after SIGTERM"
            );
        }
    }
    let at_exit = counters_now(&redis.url(), &prefix, "term").await;
    assert_eq!(
        at_exit.pending_units, 0,
        "accepted units left unpersisted: {at_exit:?}"
    );
    assert_eq!(
        rows.iter().map(|r| u64::from(r.quantity)).sum::<u64>(),
        at_exit.sold,
        "rows != units deducted after SIGTERM"
    );
    // The next start recovers whatever the drain left; the buyers whose answers were lost
    // retry with their keys and get their original orders.
    gateway.restart().await;
    let finals = storm.clone().run("term").await;
    for (i, outcome) in &first_pass {
        assert_eq!(
            finals.get(i),
            Some(outcome),
            "buyer {i} got a different answer on retry"
        );
    }
    assert_every_accepted_order_is_a_row(
        &gateway,
        &db.url(),
        &redis.url(),
        &prefix,
        "term",
        &finals,
    )
    .await;
}
