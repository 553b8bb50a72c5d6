//! Poison orders: orders the database refuses for what they are (here a trigger that
//! rejects some buyers) amid a storm. Every other order lands; each refused one becomes a
//! dead letter that operators list, retry once the cause is fixed, or drop; an unreadable
//! stream entry becomes one too. Against real PostgreSQL and SQLite, and a real Redis.

use std::collections::HashSet;
use std::time::Duration;

use flashgate::testing::domain::SaleId;
use flashgate::testing::persist::queue::QueuePolicy;
use flashgate::testing::store::RedisTarget;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, spawn_app_with, test_settings,
};
use crate::support::db::TestDb;
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios;

const SHARDS: u32 = 4;

const PG_TRIGGER: &str = "
    CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.user_id LIKE 'poison%' THEN RAISE EXCEPTION 'poison order refused'; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_poison BEFORE INSERT ON orders
        FOR EACH ROW EXECUTE FUNCTION refuse_poison();";
const PG_FIX: &str = "DROP TRIGGER refuse_poison ON orders";
const SQLITE_TRIGGER: &str = "
    CREATE TRIGGER refuse_poison BEFORE INSERT ON orders WHEN NEW.user_id LIKE 'poison%'
    BEGIN SELECT RAISE(ABORT, 'poison order refused'); END;";
const SQLITE_FIX: &str = "DROP TRIGGER refuse_poison";

async fn app_on(db: &TestDb, redis: &RedisTarget) -> TestApp {
    let mut settings = test_settings(redis);
    settings.database.url = db.url();
    settings.queue.policy = QueuePolicy::Reject;
    settings.queue.batch_size = 50;
    settings.queue.max_backoff_ms = 200;
    settings.queue.claim_idle_ms = 500;
    settings.queue.recovery_interval_ms = 200;
    settings.queue.poison_attempts = 2;
    spawn_app_with(settings).await
}

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    let (status, body) = app
        .get_json("/admin/v1/dead-letters", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["dead_letters"].as_array().cloned().unwrap_or_default()
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The status the buyer `user` sees for `order`.
async fn order_status(app: &TestApp, order: &str, user: &str) -> Value {
    let path = format!("/api/v1/orders/{order}");
    let (status, body) = app.get_json(&path, Some(&app.token(user))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["status"].clone()
}

async fn row_ids(app: &TestApp, sale: &str) -> HashSet<String> {
    let rows = app.db_orders(sale).await;
    rows.into_iter().map(|(id, _, _)| id).collect()
}

/// Appends to shard 0's stream, before any purchase, an entry no order record reads from.
async fn inject_unreadable_entry(app: &TestApp, sale: &str) {
    let keys = app.keys.shard(&SaleId::parse(sale).unwrap(), 0);
    redis::cmd("XADD")
        .arg(&keys.orders)
        .arg("1-1")
        .arg("user_id")
        .arg("not a user")
        .arg("quantity")
        .arg("lots")
        .query_async::<String>(&mut app.redis.clone())
        .await
        .unwrap();
}

/// 300 buyers and two poison ones storm a sale whose database refuses the poison rows.
async fn poison_orders_become_dead_letters_and_the_rest_lands(
    redis: &RedisTarget,
    db: TestDb,
    trigger: &'static str,
    fix: &'static str,
) {
    let app = app_on(&db, redis).await;
    db.execute(trigger).await;
    app.create_sale("p", &live_sale(1000, SHARDS, 1, 1)).await;
    inject_unreadable_entry(&app, "p").await;
    let mut requests: Vec<_> = (0..300)
        .map(|i| (format!("b{i}"), format!("k{i}"), 1))
        .collect();
    requests.insert(100, ("poison1".into(), "kp1".into(), 1));
    requests.insert(200, ("poison2".into(), "kp2".into(), 1));
    let answers = scenarios::storm(&app, "p", requests).await;
    assert!(
        answers.iter().all(|a| a.status == 202),
        "{:?}",
        scenarios::tally(&answers)
    );
    let order_of = |i: usize| answers[i].order_id.clone().unwrap();
    let (poison1, poison2) = (order_of(100), order_of(200));
    let accepted: HashSet<String> = answers.iter().filter_map(|a| a.order_id.clone()).collect();

    // Every order but the poison ones lands, and the poison ones are listed. The writer
    // buries the poison orders; recovery (on its timer, holding a shard lock while it runs)
    // buries the unreadable entry, so that one is waited for.
    app.flush().await;
    let letters = eventually(Duration::from_secs(60), || async {
        app.run_recovery_once().await;
        let letters = dead_letters(&app).await;
        (letters.len() == 3).then_some(letters)
    })
    .await
    .expect("three dead letters within 60 s");
    let mut expected = accepted.clone();
    expected.remove(&poison1);
    expected.remove(&poison2);
    assert_eq!(
        row_ids(&app, "p").await,
        expected,
        "every other order a row"
    );
    let by_order = |id: &str| {
        letters
            .iter()
            .find(|l| l["order_id"] == id)
            .cloned()
            .unwrap()
    };
    for poison in [&poison1, &poison2] {
        let letter = by_order(poison);
        assert_eq!(letter["sale_id"], "p");
        assert_eq!(letter["attempts"], 2, "{letter}");
        assert!(
            letter["error"]
                .as_str()
                .unwrap()
                .contains("poison order refused"),
            "{letter}"
        );
    }
    assert_eq!(order_status(&app, &poison1, "poison1").await, "pending");
    let unreadable = by_order("p.0.1-1");
    assert_eq!(unreadable["attempts"], 0, "{unreadable}");
    assert_eq!(unreadable["error"], "unreadable order record");
    assert!(
        app.stream_orders("p", SHARDS).await.is_empty(),
        "dead letters left in streams"
    );

    // Reconcile counts them; retrying before the fix is refused again.
    let ledger = app.reconcile("p").await;
    assert_eq!(ledger["dead_letters"], 3, "{ledger}");
    assert_eq!(ledger["dead_letter_units"], 2, "{ledger}");
    assert_eq!(ledger["difference"], 0, "{ledger}");
    let findings = ledger["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["kind"] == "dead_letters"),
        "{ledger}"
    );
    let id_of = |order: &str| by_order(order)["id"].as_str().unwrap().to_owned();
    let retry = |order: &str| format!("/admin/v1/dead-letters/{}/retry", id_of(order));
    let (status, body) = admin(&app, reqwest::Method::POST, &retry(&poison1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "/problems/dead-letter-refused");

    // The fix; then one poison order is retried into a row, the other and the unreadable
    // entry are dropped: an operator's decision.
    db.execute(fix).await;
    let (status, body) = admin(&app, reqwest::Method::POST, &retry(&poison1)).await;
    assert_eq!(
        (status, body["order_id"].as_str()),
        (StatusCode::OK, Some(poison1.as_str()))
    );
    for order in [&poison2, "p.0.1-1"] {
        let path = format!("/admin/v1/dead-letters/{}", id_of(order));
        let (status, _) = admin(&app, reqwest::Method::DELETE, &path).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (again, _) = admin(&app, reqwest::Method::DELETE, &path).await;
        assert_eq!(again, StatusCode::NOT_FOUND, "dropping twice");
    }
    assert!(dead_letters(&app).await.is_empty());
    assert_eq!(order_status(&app, &poison1, "poison1").await, "confirmed");
    let (status, _) = admin(&app, reqwest::Method::POST, &retry(&poison1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "retrying twice");

    let mut rows = expected;
    rows.insert(poison1);
    assert_eq!(row_ids(&app, "p").await, rows);
    let counters = app.drained_counters("p", SHARDS).await;
    assert_eq!(counters.iter().map(|c| c.sold).sum::<u64>(), 302);
    let ledger = app.reconcile("p").await;
    assert_eq!(ledger["findings"], serde_json::json!([]), "{ledger}");
    assert_eq!(ledger["difference"], 0, "{ledger}");
    assert_eq!(ledger["dropped_units"], 1, "{ledger}");
    assert_eq!(ledger["units_in_db"], 301, "{ledger}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_orders_on_postgres_are_dead_lettered_while_the_rest_lands() {
    let redis = RedisServer::start();
    let target = RedisTarget::Single(redis.url());
    poison_orders_become_dead_letters_and_the_rest_lands(
        &target,
        TestDb::postgres(),
        PG_TRIGGER,
        PG_FIX,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_orders_on_sqlite_are_dead_lettered_while_the_rest_lands() {
    let redis = RedisServer::start();
    let target = RedisTarget::Single(redis.url());
    poison_orders_become_dead_letters_and_the_rest_lands(
        &target,
        TestDb::sqlite(),
        SQLITE_TRIGGER,
        SQLITE_FIX,
    )
    .await;
}

/// On a Redis Cluster each shard's order stream and dead letters share one slot, so the
/// move, the retry and the drop each stay one script call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_orders_on_a_redis_cluster_are_dead_lettered_while_the_rest_lands() {
    let cluster = RedisCluster::start();
    let target = RedisTarget::Cluster(cluster.urls());
    poison_orders_become_dead_letters_and_the_rest_lands(
        &target,
        TestDb::sqlite(),
        SQLITE_TRIGGER,
        SQLITE_FIX,
    )
    .await;
}
