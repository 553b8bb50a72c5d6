//! Orders reach the database: the bounded queue and its rejection policies, database
//! outages, and reconciliation — against real PostgreSQL and SQLite, and a real Redis.

use std::collections::HashSet;
use std::time::Duration;

use flashgate::testing::db::DbError;
use flashgate::testing::domain::{OrderId, SaleId};
use flashgate::testing::persist::queue::QueuePolicy;
use flashgate::testing::store::RedisTarget;
use sqlx::{Connection, PgConnection};

use crate::support::app::{TestApp, live_sale, spawn_app_with, test_settings};
use crate::support::db::TestDb;
use crate::support::redis::RedisServer;
use crate::support::scenarios::{self, Answer};

async fn app_on(db: &TestDb, policy: QueuePolicy, capacity: usize) -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    settings.queue.policy = policy;
    settings.queue.capacity = capacity;
    settings.queue.batch_size = 50;
    settings.queue.max_backoff_ms = 200;
    settings.queue.claim_idle_ms = 500;
    settings.queue.recovery_interval_ms = 200;
    (redis, spawn_app_with(settings).await)
}

fn buyers(n: usize) -> Vec<(String, String, u32)> {
    (0..n)
        .map(|i| (format!("p{i}"), format!("k{i}"), 1))
        .collect()
}

/// The writer's flush, the hook the other tests await instead of polling: once it returns,
/// every order accepted before it is a row and gone from its stream — written by the writer
/// itself (recovery would wait ten minutes for these entries, and its timer is off).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flush_returns_once_every_accepted_order_is_a_row() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.queue.batch_size = 50;
    settings.queue.batch_wait_ms = 300;
    settings.queue.claim_idle_ms = 600_000;
    settings.queue.recovery_interval_ms = 600_000;
    let app = spawn_app_with(settings).await;
    app.create_sale("flush", &live_sale(1000, 4, 1, 1)).await;
    let answers = scenarios::storm(&app, "flush", buyers(300)).await;
    app.flush().await;
    let accepted: HashSet<String> = answers.iter().filter_map(|a| a.order_id.clone()).collect();
    assert_eq!(accepted.len(), 300, "{:?}", scenarios::tally(&answers));
    let rows: HashSet<String> = app
        .db_orders("flush")
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(rows, accepted);
    assert_eq!(app.stream_orders("flush", 4).await, Vec::new());
}

/// With `reject` and the database down, the queue fills and every later purchase is
/// refused with 503 before taking stock; when the database returns, every 202 is a row.
async fn reject_refuses_without_taking_stock_while_the_database_is_down(mut db: TestDb) {
    let (_redis, app) = app_on(&db, QueuePolicy::Reject, 10).await;
    app.create_sale("rej", &live_sale(5000, 8, 1, 1)).await;
    db.start_outage().await;
    let answers = scenarios::storm(&app, "rej", buyers(1000)).await;
    let counts = scenarios::tally(&answers);
    let refused = counts.get("503 overloaded").copied().unwrap_or(0);
    let accepted = counts.get("202").copied().unwrap_or(0);
    assert!(refused > 0, "the queue never filled: {counts:?}");
    assert_eq!(accepted + refused, 1000, "{counts:?}");
    let sold: u64 = app.sold("rej", 8).await;
    assert_eq!(sold, accepted as u64, "a 503 took stock");
    db.end_outage().await;
    scenarios::assert_ledger(&app, "rej", 8, 5000, &answers).await;
    assert_eq!(app.reconcile("rej").await["difference"], 0);
}

/// With `spill`, a full queue accepts anyway: the orders wait in their streams, and the
/// recovery worker persists every one of them once the database is back.
async fn spill_accepts_and_every_order_becomes_a_row(mut db: TestDb) {
    let (_redis, app) = app_on(&db, QueuePolicy::Spill, 10).await;
    app.create_sale("spill", &live_sale(5000, 8, 1, 1)).await;
    db.start_outage().await;
    let answers = scenarios::storm(&app, "spill", buyers(1000)).await;
    let counts = scenarios::tally(&answers);
    assert_eq!(counts.get("202").copied(), Some(1000), "{counts:?}");
    db.end_outage().await;
    scenarios::assert_ledger(&app, "spill", 8, 5000, &answers).await;
    assert_eq!(app.reconcile("spill").await["difference"], 0);
}

/// With `caller-runs`, a request that finds the queue full writes its own row: its 202 says
/// `confirmed`, and the row exists when the answer arrives. Each answer is checked the
/// moment it arrives, before the writer or recovery could have written its row.
async fn caller_runs_confirms_rows_before_answering(db: TestDb) {
    let (_redis, app) = app_on(&db, QueuePolicy::CallerRuns, 1).await;
    app.create_sale("cr", &live_sale(5000, 8, 1, 1)).await;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(512));
    let calls = buyers(1000).into_iter().map(|(user, key, qty)| {
        let (app, gate) = (&app, gate.clone());
        async move {
            let _permit = gate.acquire().await.unwrap();
            let answer = Answer::of(app.purchase("cr", &user, &key, qty).await).await;
            let row_at_answer = match (&answer.order_id, answer.body["status"] == "confirmed") {
                (Some(id), true) => Some(
                    !app.db
                        .existing(&[OrderId::parse(id).unwrap()])
                        .await
                        .unwrap()
                        .is_empty(),
                ),
                _ => None,
            };
            (answer, row_at_answer)
        }
    });
    let (answers, rows_at_answer): (Vec<Answer>, Vec<Option<bool>>) =
        futures::future::join_all(calls).await.into_iter().unzip();
    let counts = scenarios::tally(&answers);
    assert_eq!(counts.get("202").copied(), Some(1000), "{counts:?}");
    let confirmed = rows_at_answer.iter().flatten().count();
    let pending = answers
        .iter()
        .filter(|a| a.body["status"] == "pending")
        .count();
    assert_eq!(confirmed + pending, 1000, "{counts:?}");
    assert!(confirmed > 0, "no request ran its own write");
    let missing = rows_at_answer.iter().filter(|r| **r == Some(false)).count();
    assert_eq!(
        missing, 0,
        "{missing} of {confirmed} confirmed answers arrived before their row"
    );
    // Every accepted order becomes exactly one row; 1000 units sold, 4000 left.
    scenarios::assert_ledger(&app, "cr", 8, 5000, &answers).await;
    assert_eq!(app.db_orders("cr").await.len(), 1000);
    assert_eq!(app.stock_left("cr", 8).await, 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_policy_on_sqlite() {
    reject_refuses_without_taking_stock_while_the_database_is_down(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reject_policy_on_postgres() {
    reject_refuses_without_taking_stock_while_the_database_is_down(TestDb::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spill_policy_on_sqlite() {
    spill_accepts_and_every_order_becomes_a_row(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spill_policy_on_postgres() {
    spill_accepts_and_every_order_becomes_a_row(TestDb::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_runs_policy_on_sqlite() {
    caller_runs_confirms_rows_before_answering(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn caller_runs_policy_on_postgres() {
    caller_runs_confirms_rows_before_answering(TestDb::postgres()).await;
}

/// PostgreSQL stopped for 10 s in the middle of a storm: no crash, no accepted order lost,
/// the backlog drains when it returns, and Redis and the database reconcile exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_mid_storm_loses_no_accepted_order() {
    let mut db = TestDb::postgres();
    let (_redis, app) = app_on(&db, QueuePolicy::Reject, 200).await;
    app.create_sale("pgout", &live_sale(100_000, 8, 1, 1)).await;
    let storm = async {
        let mut answers = Vec::new();
        for wave in 0..12 {
            let requests = (0..200)
                .map(|i| (format!("w{wave}-{i}"), format!("k{wave}-{i}"), 1))
                .collect();
            answers.extend(scenarios::storm(&app, "pgout", requests).await);
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
        answers
    };
    let outage = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        db.start_outage().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        db.end_outage().await;
    };
    let (answers, ()) = tokio::join!(storm, outage);
    let counts = scenarios::tally(&answers);
    assert!(
        counts.get("503 overloaded").copied().unwrap_or(0) > 0,
        "the outage never filled the queue: {counts:?}"
    );
    assert!(counts.get("202").copied().unwrap_or(0) > 200, "{counts:?}");
    let (status, _) = app.get_json("/health/live", None).await;
    assert_eq!(status, 200);
    scenarios::assert_ledger(&app, "pgout", 8, 100_000, &answers).await;
    let ledger = app.reconcile("pgout").await;
    assert_eq!(ledger["difference"], 0, "{ledger}");
    assert_eq!(ledger["pending"], 0, "{ledger}");
}

/// `GET /health/ready`: (status, the reasons it gives when not ready).
async fn readiness(app: &TestApp) -> (u16, Vec<String>) {
    let (status, body) = app.get_json("/health/ready", None).await;
    let reasons = body["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (status.as_u16(), reasons)
}

/// Polls readiness (bounded: 60 s) until `wanted` accepts it; returns the reasons.
async fn wait_for_readiness(app: &TestApp, wanted: impl Fn(u16, &[String]) -> bool) -> Vec<String> {
    let mut last = (0, Vec::new());
    for _ in 0..300 {
        last = readiness(app).await;
        if wanted(last.0, &last.1) {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("readiness never became what was wanted; last: {last:?}");
}

/// PostgreSQL black-holed (SIGSTOP: its connections stay open and nothing answers, as with a
/// dead host) in the middle of a storm, while the writer's inserts and a reader's query are
/// in flight on their connections (held up by a table lock when the server stops): the
/// in-flight call fails within its deadline instead of hanging, readiness reports the
/// stalled writer, and once PostgreSQL answers again readiness recovers and every accepted
/// order lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn black_holed_postgres_stalls_readiness_and_every_accepted_order_lands_after() {
    let db = TestDb::postgres();
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    settings.database.acquire_timeout_ms = 500;
    settings.database.statement_timeout_ms = 1000;
    settings.queue.capacity = 200;
    settings.queue.batch_size = 50;
    settings.queue.max_backoff_ms = 200;
    settings.queue.stall_after_ms = 2000;
    let app = spawn_app_with(settings).await;
    app.create_sale("bh", &live_sale(10_000, 8, 1, 1)).await;
    let mut answers = scenarios::storm(&app, "bh", buyers(200)).await;
    wait_for_readiness(&app, |status, _| status == 200).await;

    // Hold the table so that calls are in flight, then stop the server under them.
    let mut lock = PgConnection::connect(&db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    let during = (0..400)
        .map(|i| (format!("h{i}"), format!("kh{i}"), 1))
        .collect();
    answers.extend(scenarios::storm(&app, "bh", during).await);
    let store = app.state.persister.db().clone();
    let sale = SaleId::parse("bh").unwrap();
    // While the server runs, PostgreSQL itself ends a statement that waits too long.
    let blocked = store.totals(&sale).await;
    assert!(
        matches!(&blocked, Err(DbError::Query(sqlx::Error::Database(e))) if e.code().as_deref() == Some("57014")),
        "not ended by statement_timeout: {blocked:?}"
    );
    let in_flight = tokio::spawn(async move { store.totals(&sale).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.black_hole();
    let call = tokio::time::timeout(Duration::from_secs(60), in_flight)
        .await
        .expect("a call in flight on a black-holed server returns")
        .unwrap();
    assert!(call.is_err(), "a black-holed server answered");
    // The storm goes on against the black hole: Redis takes orders while the queue has room.
    let after = (0..200)
        .map(|i| (format!("x{i}"), format!("kx{i}"), 1))
        .collect();
    answers.extend(scenarios::storm(&app, "bh", after).await);
    let reasons = wait_for_readiness(&app, |status, reasons| {
        status == 503 && reasons.iter().any(|r| r.contains("writer is stalled"))
    })
    .await;
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("database is not reachable")),
        "{reasons:?}"
    );

    db.restore();
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    wait_for_readiness(&app, |status, _| status == 200).await;
    let counts = scenarios::tally(&answers);
    assert!(counts.get("202").copied().unwrap_or(0) > 200, "{counts:?}");
    scenarios::assert_ledger(&app, "bh", 8, 10_000, &answers).await;
    let ledger = app.reconcile("bh").await;
    assert_eq!(ledger["difference"], 0, "{ledger}");
    assert_eq!(ledger["findings"], serde_json::json!([]), "{ledger}");
}
