//! Exactly-once unit returns when the real `flashgate` binary is SIGKILLed: during a burst
//! of cancels, and again and again while its sweeper expires orders. After restarts every
//! cancelled or expired unit is back on the shelves once, every buyer holds nothing, and
//! reconciliation is exact. On a single Redis node and on a 3-master cluster.

use std::time::Duration;

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::domain::UserId;
use serde_json::{Value, json};

use crate::support::app::{ADMIN_TOKEN, JWT_SECRET, eventually, live_sale};
use crate::support::db::TestDb;
use crate::support::process::GatewayProcess;
use crate::support::redis::{RedisCluster, RedisServer};

const BUYERS: usize = 200;
const CANCELLING: usize = 80;
const SHARDS: u32 = 4;
const SALE: &str = "crashlife";
/// The sale's payment window: long enough for every cancel to land, through a SIGKILL and
/// a restart, before any order expires, even on a loaded machine.
const WINDOW_S: u64 = 10;

fn token(user: &str) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    JwtKeys::new(JWT_SECRET.as_bytes()).mint(&UserId::parse(user).unwrap(), exp)
}

/// Sends `request` until the gateway answers with one of `finals` (it may be down, or
/// answer 503 while it starts again); returns that answer's status and body.
async fn until_answered(
    request: impl Fn() -> reqwest::RequestBuilder,
    finals: &[u16],
) -> (u16, Value) {
    let mut last = String::from("no answer");
    for _ in 0..600 {
        match request().send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                if finals.contains(&status) {
                    return (status, response.json().await.unwrap_or(Value::Null));
                }
                last = format!("{status} {}", response.text().await.unwrap_or_default());
            }
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no final answer after 600 tries; the last: {last}");
}

async fn reconcile(client: &reqwest::Client, base: &str) -> Value {
    let (_, body) = until_answered(
        || {
            client
                .post(format!("{base}/admin/v1/sales/{SALE}/reconcile"))
                .bearer_auth(ADMIN_TOKEN)
        },
        &[200],
    )
    .await;
    body
}

/// Units on the shelves of every shard of the sale's current layout (the admin view reads
/// each shard's counters from Redis).
async fn stock_on_shelves(client: &reqwest::Client, base: &str) -> u64 {
    let (_, view) = until_answered(
        || {
            client
                .get(format!("{base}/admin/v1/sales/{SALE}"))
                .bearer_auth(ADMIN_TOKEN)
        },
        &[200],
    )
    .await;
    let shards = view["shards"].as_array().expect("per-shard figures");
    assert_eq!(shards.len(), SHARDS as usize, "{view}");
    shards.iter().map(|s| s["stock"].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_cancels_and_the_sweeper_returns_every_unit_exactly_once() {
    let redis = RedisServer::start();
    returns_survive_sigkills(("FLASHGATE_REDIS__URL", redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_sigkill_during_cancels_and_the_sweeper_returns_every_unit_exactly_once() {
    let cluster = RedisCluster::start();
    returns_survive_sigkills(("FLASHGATE_REDIS__CLUSTER_URLS", cluster.urls().join(","))).await;
}

/// Cancels and expiries through SIGKILLs of the only gateway, on the Redis that `redis`
/// (one `FLASHGATE_REDIS__*` setting) names.
async fn returns_survive_sigkills(redis: (&'static str, String)) {
    let db = TestDb::postgres();
    let prefix = format!("crashlife{:06x}", rand::random::<u32>() & 0xff_ffff);
    let env = [
        redis,
        ("FLASHGATE_REDIS__KEY_PREFIX", prefix),
        ("FLASHGATE_DATABASE__URL", db.url()),
        ("FLASHGATE_QUEUE__CLAIM_IDLE_MS", "500".to_owned()),
        ("FLASHGATE_QUEUE__RECOVERY_INTERVAL_MS", "200".to_owned()),
        // Small, frequent sweeps: a kill lands between their steps.
        ("FLASHGATE_LIFECYCLE__SWEEP_INTERVAL_MS", "20".to_owned()),
        ("FLASHGATE_LIFECYCLE__BATCH", "10".to_owned()),
        ("FLASHGATE_LIFECYCLE__RETURN_LEASE_MS", "300".to_owned()),
    ];
    let mut gateway = GatewayProcess::start(&env).await;
    let base = gateway.base();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut sale = live_sale(BUYERS as u64, SHARDS, 1, 1);
    sale["payment_window_s"] = json!(WINDOW_S);
    let created = client
        .put(format!("{base}/admin/v1/sales/{SALE}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&sale)
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());

    let users: Vec<String> = (0..BUYERS).map(|i| format!("k{i}")).collect();
    let buys = users.iter().map(|user| {
        let (client, base) = (&client, &base);
        async move {
            let (_, body) = until_answered(
                || {
                    client
                        .post(format!("{base}/api/v1/sales/{SALE}/purchase"))
                        .bearer_auth(token(user))
                        .header("Idempotency-Key", "buy")
                        .json(&json!({ "quantity": 1 }))
                },
                &[202],
            )
            .await;
            body["order_id"].as_str().unwrap().to_owned()
        }
    });
    let orders: Vec<String> = futures_util::future::join_all(buys).await;
    // Every order was created before this moment, so every one is due by a window after it.
    let all_due = tokio::time::Instant::now() + Duration::from_secs(WINDOW_S);

    // Cancels, retried through a SIGKILL and a restart of the only gateway.
    let cancels = tokio::spawn({
        let (client, base) = (client.clone(), base.clone());
        let pairs: Vec<(String, String)> = users
            .iter()
            .cloned()
            .zip(orders.iter().cloned())
            .take(CANCELLING)
            .collect();
        async move {
            let each = pairs.iter().map(|(user, order)| {
                let (client, base) = (&client, &base);
                async move {
                    until_answered(
                        || {
                            client
                                .post(format!("{base}/api/v1/orders/{order}/cancel"))
                                .bearer_auth(token(user))
                        },
                        &[200],
                    )
                    .await
                }
            });
            futures_util::future::join_all(each).await
        }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    gateway.kill9();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gateway.restart().await;
    for (_, body) in cancels.await.unwrap() {
        assert_eq!(body["status"], "cancelled");
    }

    // Past the window the sweeper expires the rest: kill it again and again meanwhile.
    tokio::time::sleep_until(all_due).await;
    for pause_ms in [40, 90, 150] {
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        gateway.restart().await;
    }

    let settled = eventually(Duration::from_secs(30), || async {
        let reconciliation = reconcile(&client, &base).await;
        (reconciliation["returned_units"] == BUYERS && reconciliation["findings"] == json!([]))
            .then_some(reconciliation)
    })
    .await;
    let reconciliation = settled.unwrap_or_else(|| panic!("returns never completed"));
    assert_eq!(reconciliation["difference"], 0);
    assert_eq!(reconciliation["paid_units"], 0);
    assert_eq!(reconciliation["awaiting_units"], 0);
    assert_eq!(
        stock_on_shelves(&client, &base).await,
        BUYERS as u64,
        "every unit is back once: none lost, none twice"
    );
    let mut statuses = std::collections::HashMap::new();
    for (user, order) in users.iter().zip(&orders) {
        let (_, view) = until_answered(
            || {
                client
                    .get(format!("{base}/api/v1/orders/{order}"))
                    .bearer_auth(token(user))
            },
            &[200],
        )
        .await;
        *statuses
            .entry(view["status"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(statuses.get("cancelled"), Some(&CANCELLING));
    assert_eq!(statuses.get("expired"), Some(&(BUYERS - CANCELLING)));
    let (status, out) = gateway.run_cli(&["reconcile", "--sale", SALE]);
    assert!(status.success(), "reconcile reported a difference: {out}");
}
