//! Reconciliation finds what does not hold between Redis and the database: each mismatch is
//! injected into a real Redis or database, and both `POST /admin/v1/sales/{id}/reconcile`
//! and the `flashgate reconcile` binary must report it (the binary by exiting non-zero).

use std::process::Command;

use flashgate::testing::domain::{EntryId, OrderId, Quantity, SaleId, UserId};
use flashgate::testing::orders::NewOrder;
use flashgate::testing::store::RedisTarget;
use serde_json::{Value, json};

use crate::support::app::{
    ADMIN_TOKEN, JWT_SECRET, TestApp, live_sale, spawn_app_with, test_settings,
};
use crate::support::db::TestDb;
use crate::support::redis::RedisServer;

const SHARDS: u32 = 4;

async fn app() -> (RedisServer, TestApp, TestDb) {
    app_on(TestDb::sqlite()).await
}

async fn app_on(db: TestDb) -> (RedisServer, TestApp, TestDb) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    (redis, spawn_app_with(settings).await, db)
}

/// A sale of `stock` units whose `buyers` buyers each bought one, all persisted.
async fn sold_sale(app: &TestApp, sale: &str, stock: u64, buyers: usize) {
    app.create_sale(sale, &live_sale(stock, SHARDS, 3, 3)).await;
    for i in 0..buyers {
        let response = app
            .purchase(sale, &format!("u{i}"), &format!("k{i}"), 1)
            .await;
        assert_eq!(response.status(), 202);
    }
    app.drained_counters(sale, SHARDS).await;
}

/// The findings of `sale`, sorted so that a comparison ignores their order.
async fn findings(app: &TestApp, sale: &str) -> Vec<Value> {
    let mut found = app.reconcile(sale).await["findings"]
        .as_array()
        .cloned()
        .unwrap();
    found.sort_by_key(Value::to_string);
    found
}

fn sorted(mut expected: Vec<Value>) -> Vec<Value> {
    expected.sort_by_key(Value::to_string);
    expected
}

/// Runs `flashgate reconcile --sale <sale>` against the app's Redis and database; whether
/// it exited successfully.
fn cli_reconciles(app: &TestApp, redis: &RedisServer, sale: &str) -> bool {
    let output = Command::new(env!("CARGO_BIN_EXE_flashgate"))
        .args(["reconcile", "--sale", sale])
        .env("FLASHGATE_REDIS__URL", redis.url())
        .env(
            "FLASHGATE_REDIS__KEY_PREFIX",
            app.state.settings.redis.key_prefix.as_str(),
        )
        .env(
            "FLASHGATE_DATABASE__URL",
            app.state.settings.database.url.as_str(),
        )
        .env("FLASHGATE_AUTH__JWT_SECRET", JWT_SECRET)
        .env("FLASHGATE_ADMIN__TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "error")
        .output()
        .expect("flashgate binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("\"findings\""),
        "no ledger printed: {stdout}"
    );
    output.status.success()
}

async fn hincrby(app: &TestApp, key: &str, field: &str, by: i64) {
    redis::cmd("HINCRBY")
        .arg(key)
        .arg(field)
        .arg(by)
        .query_async::<i64>(&mut app.redis.clone())
        .await
        .unwrap();
}

fn shard_keys(app: &TestApp, sale: &str, shard: u32) -> flashgate::testing::store::ShardKeys {
    app.keys.shard(&SaleId::parse(sale).unwrap(), shard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistent_sale_has_no_findings_and_the_binary_exits_zero() {
    let (redis, app, _db) = app().await;
    sold_sale(&app, "ok", 100, 30).await;
    assert_eq!(findings(&app, "ok").await, Vec::<Value>::new());
    assert!(cli_reconciles(&app, &redis, "ok"));
}

/// Once no purchase is being accepted, every reconciliation is exact, also those that run
/// while the order writer is still moving the orders from their streams to the database
/// in batches of a few: a commit and its acknowledgement falling between the reads of the
/// two sides must neither lose an order nor count it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciling_while_the_writer_persists_is_exact_every_time_on_sqlite() {
    reconciling_while_the_writer_persists_on(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciling_while_the_writer_persists_is_exact_every_time_on_postgres() {
    reconciling_while_the_writer_persists_on(TestDb::postgres()).await;
}

async fn reconciling_while_the_writer_persists_on(db: TestDb) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    // Small batches, one after the other: commits land all through the reconciliations.
    settings.queue.batch_size = 4;
    settings.queue.batch_wait_ms = 1;
    let app = spawn_app_with(settings).await;
    const BUYERS: usize = 400;
    app.create_sale("busy", &live_sale(BUYERS as u64, SHARDS, 1, 1))
        .await;
    let buys = (0..BUYERS).map(|i| {
        let app = &app;
        async move {
            app.purchase("busy", &format!("u{i}"), "k", 1)
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(buys).await;
    assert!(statuses.iter().all(|s| s.as_u16() == 202), "{statuses:?}");
    for round in 0..10_000 {
        let ledger = app.reconcile("busy").await;
        assert_eq!(
            (
                &ledger["deducted"],
                &ledger["difference"],
                &ledger["findings"]
            ),
            (&json!(BUYERS), &json!(0), &json!([])),
            "{ledger}"
        );
        // Orders still pending at the first reconciliation: the writer was at work during
        // at least one.
        if ledger["pending"] == 0 {
            assert!(
                round > 0,
                "the writer was done before the first reconciliation"
            );
            return;
        }
    }
    panic!("the writer never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_whose_allotments_do_not_sum_to_the_stock_are_found() {
    let (redis, app, _db) = app().await;
    sold_sale(&app, "allot", 100, 10).await;
    // Five units appear on shard 2's shelf as if allotted: nothing sold changes.
    let key = shard_keys(&app, "allot", 2).shard;
    hincrby(&app, &key, "allotted", 5).await;
    hincrby(&app, &key, "stock", 5).await;
    assert_eq!(
        findings(&app, "allot").await,
        [json!({"kind": "allotment_mismatch", "allotted": 105, "stock_total": 100})]
    );
    assert!(!cli_reconciles(&app, &redis, "allot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_sold_than_the_stock_is_found() {
    let (redis, app, _db) = app().await;
    sold_sale(&app, "over", 8, 8).await;
    // Three units credited to shard 1 that no loan gave: sold becomes 11 of 8.
    hincrby(&app, &shard_keys(&app, "over", 1).shard, "received", 3).await;
    assert_eq!(
        findings(&app, "over").await,
        sorted(vec![
            json!({"kind": "oversold", "sold": 11, "stock_total": 8}),
            json!({"kind": "difference", "shard": 1, "difference": 3}),
        ])
    );
    assert!(!cli_reconciles(&app, &redis, "over"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lent_units_without_loan_records_are_found() {
    let (redis, app, _db) = app().await;
    sold_sale(&app, "lent", 100, 10).await;
    // Two units move from shard 3's shelf into `lent` with no loan record.
    let key = shard_keys(&app, "lent", 3).shard;
    hincrby(&app, &key, "stock", -2).await;
    hincrby(&app, &key, "lent", 2).await;
    assert_eq!(
        findings(&app, "lent").await,
        [json!({"kind": "lent_without_loans", "shard": 3, "lent": 2, "on_loan": 0})]
    );
    assert!(!cli_reconciles(&app, &redis, "lent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_count_that_disagrees_with_the_buyers_orders_is_found() {
    let (redis, app, _db) = app().await;
    sold_sale(&app, "held", 100, 10).await;
    // Buyer u0 bought one unit; their record now says they hold three.
    let (shard, record) = buyer_record(&app, "held", "u0").await;
    let (_, orders) = record.split_once('\n').unwrap();
    redis::cmd("HSET")
        .arg(shard_keys(&app, "held", shard).buyers)
        .arg("u0")
        .arg(format!("3\n{orders}"))
        .query_async::<i64>(&mut app.redis.clone())
        .await
        .unwrap();
    assert_eq!(
        findings(&app, "held").await,
        [
            json!({"kind": "held_mismatch", "shard": shard, "user_id": "u0", "held": 3, "in_orders": 1})
        ]
    );
    assert!(!cli_reconciles(&app, &redis, "held"));
}

/// A row whose order id no buyer record names; on `db`.
async fn a_row_that_redis_never_recorded_is_found_on(db: TestDb) {
    let (redis, app, _db) = app_on(db).await;
    sold_sale(&app, "ghost", 100, 10).await;
    let ghost = NewOrder {
        order_id: OrderId::new(
            SaleId::parse("ghost").unwrap(),
            0,
            EntryId::parse("1-5").unwrap(),
        ),
        user: UserId::parse("nobody").unwrap(),
        quantity: Quantity::new(2).unwrap(),
        created_ms: 1,
    };
    assert_eq!(app.db.insert(&[ghost], 2).await.unwrap(), 1);
    assert_eq!(
        findings(&app, "ghost").await,
        sorted(vec![
            json!({"kind": "unrecorded_row", "order_id": "ghost.0.1-5"}),
            json!({"kind": "difference", "shard": 0, "difference": -2}),
        ])
    );
    assert!(!cli_reconciles(&app, &redis, "ghost"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_redis_never_recorded_is_found_on_sqlite() {
    a_row_that_redis_never_recorded_is_found_on(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_redis_never_recorded_is_found_on_postgres() {
    a_row_that_redis_never_recorded_is_found_on(TestDb::postgres()).await;
}

/// The home shard of `user` in `sale` and their record there.
async fn buyer_record(app: &TestApp, sale: &str, user: &str) -> (u32, String) {
    for shard in 0..SHARDS {
        let record: Option<String> = redis::cmd("HGET")
            .arg(shard_keys(app, sale, shard).buyers)
            .arg(user)
            .query_async(&mut app.redis.clone())
            .await
            .unwrap();
        if let Some(record) = record {
            return (shard, record);
        }
    }
    panic!("{user} has no record in {sale}");
}
