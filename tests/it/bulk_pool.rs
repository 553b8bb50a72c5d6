//! The two kinds of Redis handle: bulk and background work (recovery, reconciliation,
//! holder loads, dead-letter listing, operators' changes) takes connections of the bounded
//! bulk pool, while purchases keep the multiplexed connection. With every bulk connection
//! taken, purchases still go through and bulk work waits; a large bulk reply breaks nothing.

use crate::support::app::{ADMIN_TOKEN, TestApp, live_sale, spawn_app_with, test_settings};
use crate::support::redis::RedisServer;
use flashgate::testing::store::RedisTarget;

const SHARDS: u32 = 4;

async fn app_with_pool(redis: &RedisServer, size: usize) -> TestApp {
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.redis.bulk_pool_size = size;
    // A taken pool answers within a second, not the tests' generous connect timeout.
    settings.redis.connect_timeout_ms = 1000;
    spawn_app_with(settings).await
}

/// How many clients are connected to Redis (`CLIENT LIST`), besides the asking one.
async fn other_clients(app: &TestApp) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    list.lines().count() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_opens_connections_of_the_bulk_pool() {
    let redis = RedisServer::start();
    let app = app_with_pool(&redis, 3).await;
    app.create_sale("bulk", &live_sale(20, SHARDS, 5, 5)).await;
    assert_eq!(app.purchase("bulk", "ann", "k1", 1).await.status(), 202);
    // The recovery worker and the sale refresh run every 200 ms, on the pool.
    let response = app
        .client
        .post(format!("{}/admin/v1/sales/bulk/reconcile", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let status = app.state.redis.bulk_pool().status();
    assert_eq!(status.max_size, 3);
    assert!(
        status.size >= 1,
        "no bulk connection was ever opened: {status:?}"
    );
    assert!(status.size <= 3, "the pool outgrew its bound: {status:?}");
    // The pool's connections are connections of their own, beside the multiplexed one.
    assert!(other_clients(&app).await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_go_on_while_every_bulk_connection_is_taken() {
    let redis = RedisServer::start();
    let app = app_with_pool(&redis, 1).await;
    app.create_sale("taken", &live_sale(20, SHARDS, 5, 5)).await;
    let held = app
        .state
        .redis
        .bulk()
        .await
        .expect("the one bulk connection");
    assert_eq!(app.state.redis.bulk_pool().status().available, 0);
    for i in 0..5 {
        let response = app.purchase("taken", &format!("u{i}"), "k", 1).await;
        assert_eq!(response.status(), 202, "a purchase waited on the bulk pool");
    }
    // Listing dead letters is bulk work: it waits for a connection, then gives up as if
    // Redis were unreachable.
    let (status, _) = app
        .get_json("/admin/v1/dead-letters", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 503);
    drop(held);
    let (status, body) = app
        .get_json("/admin/v1/dead-letters", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bulk_reply_breaks_nothing() {
    let redis = RedisServer::start();
    let app = app_with_pool(&redis, 2).await;
    app.create_sale("large", &live_sale(40, SHARDS, 5, 5)).await;
    // Tens of thousands of buyer records on one shard: reconciliation reads them in pages of
    // a thousand fields on a bulk connection.
    let sale = flashgate::testing::domain::SaleId::parse("large").unwrap();
    let buyers = app.keys.shard(&sale, 0).buyers;
    let mut conn = app.redis.clone();
    for chunk in 0..40 {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&buyers);
        for i in 0..1000 {
            cmd.arg(format!("filler{chunk}x{i}")).arg("0");
        }
        cmd.query_async::<()>(&mut conn).await.unwrap();
    }
    let reconcile = app
        .client
        .post(format!("{}/admin/v1/sales/large/reconcile", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send();
    let purchases = async {
        let mut accepted = 0;
        for i in 0..20 {
            let response = app.purchase("large", &format!("b{i}"), "k", 1).await;
            accepted += usize::from(response.status() == 202);
        }
        accepted
    };
    let (reconciled, accepted) = tokio::join!(reconcile, purchases);
    assert_eq!(reconciled.unwrap().status(), 200);
    assert_eq!(accepted, 20);
    assert_eq!(app.sold("large", SHARDS).await, 20);
}
