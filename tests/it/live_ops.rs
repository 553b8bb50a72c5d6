//! Operating a live sale while buyers buy, on two gateway instances over one Redis (single
//! node and 3-master cluster) and one PostgreSQL database: a live reshard (8 → 64 → 4), a
//! gateway SIGKILLed in the middle of one, a top-up after sell-out, `flashgate apply` with
//! a changed `shards`, concurrent PUTs, and DELETE. After each: exactly the stock sold,
//! nobody over the per-user limit, database rows = 202 answers, reconcile exact.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flashgate::testing::store::RedisTarget;
use reqwest::Response;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::app::{ADMIN_TOKEN, TestApp, live_sale, spawn_app_with, test_settings};
use crate::support::db::TestDb;
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios::{Answer, assert_ledger, tally};

const STOCK: u64 = 1000;
const BUYERS: usize = 10_000;
const ATTEMPTS: usize = 3;
const LIMIT: u32 = 2;
/// Requests in flight at once, over both instances.
const IN_FLIGHT: usize = 128;

/// Where buyers send their purchases: a gateway's base URL, with a client and JWTs.
#[derive(Clone)]
struct Door {
    base: String,
}

/// Two gateway instances over `target`, sharing a key prefix and a PostgreSQL database.
async fn two_instances(target: &RedisTarget, db: &TestDb) -> (TestApp, TestApp) {
    let mut settings = test_settings(target);
    settings.database.url = db.url();
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    (a, b)
}

/// One answer of the storm, with its buyer.
struct Bought {
    user: String,
    answer: Answer,
}

/// `BUYERS` buyers, `ATTEMPTS` one-unit attempts each (each with its own key), sent
/// alternately through `doors`; `accepted` counts the 202s as they come.
async fn storm(app: &TestApp, sale: &str, doors: &[Door], accepted: &AtomicUsize) -> Vec<Bought> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let calls = (0..ATTEMPTS).flat_map(|attempt| (0..BUYERS).map(move |i| (attempt, i)));
    let calls = calls.map(|(attempt, i)| {
        let gate = gate.clone();
        let door = &doors[(i + attempt) % doors.len()];
        async move {
            let _permit = gate.acquire().await.unwrap();
            let user = format!("buyer-{i}");
            let key = format!("k-{i}-{attempt}");
            let answer = Answer::of(purchase(app, door, sale, &user, &key).await).await;
            if answer.status == 202 {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            Bought { user, answer }
        }
    });
    futures::future::join_all(calls).await
}

async fn purchase(app: &TestApp, door: &Door, sale: &str, user: &str, key: &str) -> Response {
    app.client
        .post(format!("{}/api/v1/sales/{sale}/purchase", door.base))
        .bearer_auth(app.token(user))
        .header("Idempotency-Key", key)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap()
}

/// Waits until `accepted` reaches `n` (or the storm is long over: 120 s).
async fn when_accepted(accepted: &AtomicUsize, n: usize) {
    for _ in 0..12_000 {
        if accepted.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `POST {base}/admin/v1/sales/{sale}/{action}` with `body`: (status, JSON).
async fn admin_post(
    app: &TestApp,
    base: &str,
    sale: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{base}/admin/v1/sales/{sale}/{action}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reshards `sale` to `shards` through `base`; panics unless it is done.
async fn reshard(app: &TestApp, base: &str, sale: &str, shards: u32) {
    let (status, body) = admin_post(app, base, sale, "reshard", json!({ "shards": shards })).await;
    assert_eq!(status, 200, "reshard to {shards}: {body}");
    assert_eq!(
        body["change"]["state"], "done",
        "reshard to {shards}: {body}"
    );
}

/// Every invariant after a storm: only the answers a sale without operators would give,
/// exactly `STOCK` units sold to distinct orders, nobody over the limit, database rows =
/// 202 answers (over every shard the sale ever used), reconcile exact.
async fn assert_storm_invariants(
    a: &TestApp,
    b: &TestApp,
    sale: &str,
    shards_used: u32,
    bought: &[Bought],
) {
    let answers: Vec<Answer> = bought.iter().map(|b| b.answer.clone()).collect();
    let counts = tally(&answers);
    let allowed = ["202", "409 sold-out", "409 limit-reached"];
    assert!(
        counts.keys().all(|k| allowed.contains(&k.as_str())),
        "answers a sale without operators would not give: {counts:?}"
    );
    let mut per_user: HashMap<&str, HashSet<&str>> = HashMap::new();
    for b in bought.iter().filter(|b| b.answer.status == 202) {
        let order = b.answer.order_id.as_deref().expect("a 202 names its order");
        per_user.entry(&b.user).or_default().insert(order);
    }
    let over: Vec<_> = per_user
        .iter()
        .filter(|(_, o)| o.len() > LIMIT as usize)
        .collect();
    assert!(over.is_empty(), "buyers over the limit: {over:?}");
    let orders: usize = per_user.values().map(HashSet::len).sum();
    assert_eq!(orders as u64, STOCK, "{counts:?}");
    b.flush().await;
    assert_ledger(a, sale, shards_used, STOCK, &answers).await;
    let ledger = a.reconcile(sale).await;
    assert_eq!(ledger["difference"], 0, "{ledger}");
    assert_eq!(ledger["findings"], json!([]), "{ledger}");
}

async fn reshard_mid_storm_on(target: RedisTarget) {
    let db = TestDb::postgres();
    let (a, b) = two_instances(&target, &db).await;
    a.create_sale("hot", &live_sale(STOCK, 8, LIMIT, 1)).await;
    let doors = [
        Door {
            base: a.base.clone(),
        },
        Door {
            base: b.base.clone(),
        },
    ];
    let accepted = AtomicUsize::new(0);
    let operator = async {
        when_accepted(&accepted, 150).await;
        reshard(&a, &a.base, "hot", 64).await;
        when_accepted(&accepted, 500).await;
        reshard(&a, &b.base, "hot", 4).await;
    };
    let (bought, ()) = tokio::join!(storm(&a, "hot", &doors, &accepted), operator);
    // 8 + 64 + 4 shard indices were used.
    assert_storm_invariants(&a, &b, "hot", 76, &bought).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_8_to_64_to_4_mid_storm_sells_exactly_the_stock() {
    let redis = RedisServer::start();
    reshard_mid_storm_on(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_8_to_64_to_4_mid_storm_on_a_cluster_sells_exactly_the_stock() {
    let cluster = RedisCluster::start();
    reshard_mid_storm_on(RedisTarget::Cluster(cluster.urls())).await;
}
