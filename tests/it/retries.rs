//! Replay comes first: a retry with the same Idempotency-Key and body gets its order back
//! whatever happened since the first attempt — its purchase token expired, the sale ended
//! or sold out, the order queue filled up — and takes nothing more. Every test runs with
//! purchase tokens required, as a production gateway does, against a real Redis and a real
//! database.

use flashgate::testing::persist::queue::QueuePolicy;
use flashgate::testing::store::RedisTarget;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{TestApp, live_sale, problem_slug, spawn_app_with, test_settings};
use crate::support::db::TestDb;
use crate::support::redis::{RedisCluster, RedisServer};

async fn token_app(target: RedisTarget) -> TestApp {
    let mut settings = test_settings(&target);
    settings.tokens.require_purchase_token = true;
    spawn_app_with(settings).await
}

/// A purchase of `qty` with `key` and `token`: the order id of a 202 (and its status), or
/// the status and problem slug of a refusal.
async fn attempt(
    app: &TestApp,
    sale: &str,
    user: &str,
    key: &str,
    qty: u32,
    token: &str,
) -> Result<(String, String), (StatusCode, String)> {
    let response = app
        .purchase_with_token(sale, user, key, qty, Some(token))
        .await;
    if response.status() != StatusCode::ACCEPTED {
        return Err(problem_slug(response).await);
    }
    let body: Value = response.json().await.unwrap();
    Ok((
        body["order_id"].as_str().unwrap().to_owned(),
        body["status"].as_str().unwrap().to_owned(),
    ))
}

fn refused(status: StatusCode, slug: &str) -> Result<(String, String), (StatusCode, String)> {
    Err((status, slug.to_owned()))
}

/// The buyer's own order listing, as order ids.
async fn my_orders(app: &TestApp, sale: &str, user: &str) -> Vec<String> {
    let path = format!("/api/v1/sales/{sale}/orders/mine");
    let (status, body) = app.get_json(&path, Some(&app.token(user))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect()
}

/// After the purchase token's lifetime, the retry gets its order; the same key with another
/// body is a conflict; a new key with the expired token is refused and takes nothing.
async fn a_retry_after_its_token_expired_gets_its_order_back(target: RedisTarget) {
    let app = token_app(target).await;
    app.create_sale("ttl", &live_sale(100, 4, 5, 2)).await;
    let token = app.purchase_token("ttl", "alice").await;
    let (order, _) = attempt(&app, "ttl", "alice", "k1", 1, &token)
        .await
        .expect("first attempt accepted");

    let ttl_ms = app.state.settings.tokens.token_ttl_ms;
    app.state
        .clock
        .advance(time::Duration::milliseconds(ttl_ms as i64 + 1));
    let retry = attempt(&app, "ttl", "alice", "k1", 1, &token).await;
    assert_eq!(retry.map(|(id, _)| id), Ok(order.clone()));
    assert_eq!(
        attempt(&app, "ttl", "alice", "k1", 2, &token).await,
        refused(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-conflict")
    );
    assert_eq!(
        attempt(&app, "ttl", "alice", "k2", 1, &token).await,
        refused(StatusCode::FORBIDDEN, "invalid-token")
    );
    assert_eq!(app.sold("ttl", 4).await, 1);
    assert_eq!(my_orders(&app, "ttl", "alice").await, [order]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_its_token_expired_gets_its_order_back_on_one_node() {
    let redis = RedisServer::start();
    a_retry_after_its_token_expired_gets_its_order_back(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_its_token_expired_gets_its_order_back_on_a_cluster() {
    let cluster = RedisCluster::start();
    a_retry_after_its_token_expired_gets_its_order_back(RedisTarget::Cluster(cluster.urls())).await;
}

/// After `ends_at`, the retry gets its order (202, as the first answer was); a new key is 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_sale_ended_gets_its_order_back() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    let mut sale = live_sale(100, 4, 5, 1);
    let ends_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(2);
    sale["ends_at"] = ends_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    app.create_sale("end", &sale).await;
    let token = app.purchase_token("end", "bob").await;
    let (order, _) = attempt(&app, "end", "bob", "k1", 1, &token)
        .await
        .expect("first attempt accepted");

    app.state.clock.advance(time::Duration::minutes(3));
    let retry = attempt(&app, "end", "bob", "k1", 1, &token).await;
    assert_eq!(retry.map(|(id, _)| id), Ok(order.clone()));
    assert_eq!(
        attempt(&app, "end", "bob", "k2", 1, &token).await,
        refused(StatusCode::GONE, "sale-ended")
    );
    assert_eq!(app.sold("end", 4).await, 1);
    assert_eq!(my_orders(&app, "end", "bob").await, [order]);
}

/// Once the sale sold out (and the token expired too), the holder's retry still gets its
/// order; everyone else is told sold out; nothing more is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sell_out_gets_its_order_back() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    app.create_sale("gone", &live_sale(2, 2, 5, 2)).await;
    let token = app.purchase_token("gone", "carol").await;
    let (order, _) = attempt(&app, "gone", "carol", "k1", 2, &token)
        .await
        .expect("first attempt accepted");
    let other = app.purchase_token("gone", "dave").await;
    assert_eq!(
        attempt(&app, "gone", "dave", "d1", 1, &other).await,
        refused(StatusCode::CONFLICT, "sold-out")
    );

    let retry = attempt(&app, "gone", "carol", "k1", 2, &token).await;
    assert_eq!(retry.map(|(id, _)| id), Ok(order.clone()));
    let ttl_ms = app.state.settings.tokens.token_ttl_ms;
    app.state
        .clock
        .advance(time::Duration::milliseconds(ttl_ms as i64 + 1));
    let retry = attempt(&app, "gone", "carol", "k1", 2, &token).await;
    assert_eq!(retry.map(|(id, _)| id), Ok(order.clone()));
    assert_eq!(app.sold("gone", 2).await, 2);
    assert_eq!(my_orders(&app, "gone", "carol").await, [order]);
    assert!(my_orders(&app, "gone", "dave").await.is_empty());
}

/// With the database down and the `reject` policy, the queue fills and new purchases get
/// 503; a retry of an order accepted before gets that order (pending), and takes nothing.
/// Once the database is back, the order is confirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_the_queue_is_full_gets_its_order_back() {
    let redis = RedisServer::start();
    let mut db = TestDb::sqlite();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.tokens.require_purchase_token = true;
    settings.database.url = db.url();
    settings.queue.policy = QueuePolicy::Reject;
    settings.queue.capacity = 1;
    settings.queue.batch_size = 1;
    settings.queue.writers = 1;
    settings.queue.max_backoff_ms = 100;
    let app = spawn_app_with(settings).await;
    app.create_sale("full", &live_sale(100, 4, 1, 1)).await;

    db.start_outage().await;
    let mut accepted = Vec::new();
    let mut full = None;
    for i in 0..10 {
        let user = format!("u{i}");
        let token = app.purchase_token("full", &user).await;
        match attempt(&app, "full", &user, "k", 1, &token).await {
            Ok((order, _)) => accepted.push((user, token, order)),
            Err(refusal) => {
                assert_eq!(
                    refusal,
                    (StatusCode::SERVICE_UNAVAILABLE, "overloaded".to_owned())
                );
                full = Some((user, token));
                break;
            }
        }
    }
    let (late_user, late_token) = full.expect("the queue filled up");
    assert!(!accepted.is_empty());

    for (user, token, order) in &accepted {
        let retry = attempt(&app, "full", user, "k", 1, token).await;
        assert_eq!(retry, Ok((order.clone(), "pending".to_owned())), "{user}");
    }
    assert_eq!(
        attempt(&app, "full", &late_user, "k", 1, &late_token).await,
        refused(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    assert_eq!(app.sold("full", 4).await, accepted.len() as u64);

    db.end_outage().await;
    app.drained_counters("full", 4).await;
    for (user, token, order) in &accepted {
        let retry = attempt(&app, "full", user, "k", 1, token).await;
        assert_eq!(retry, Ok((order.clone(), "confirmed".to_owned())), "{user}");
    }
    assert_eq!(app.db_orders("full").await.len(), accepted.len());
}
