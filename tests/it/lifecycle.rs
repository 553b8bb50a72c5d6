//! The order lifecycle after the purchase, against real Redis (single node and cluster) and
//! real databases: cancel and paid endpoints (owner only, idempotent, `order-state`), expiry
//! that gives units back exactly once so a sold-out sale sells again on every instance, and
//! pay racing cancel across two instances. Background passes are driven with
//! `lifecycle.run_once()`, not waited for: the gateways' own sweeper is set to run once an
//! hour ([`settings`]), so what a test counts is what its own passes did.

use std::collections::HashMap;
use std::time::Duration;

use flashgate::testing::domain::{OrderId, Quantity, SaleId, UserId};
use flashgate::testing::lifecycle::{ReturnOutcome, return_units};
use flashgate::testing::store::RedisTarget;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use flashgate::testing::config::Settings;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::db::TestDb;
use crate::support::redis::{RedisCluster, RedisServer};

/// A live sale whose orders must be paid within `window_s` seconds.
fn sale_with_window(stock: u64, shards: u32, per_user_limit: u32, window_s: u32) -> Value {
    let mut body = live_sale(stock, shards, per_user_limit, 1);
    body["payment_window_s"] = json!(window_s);
    body
}

/// Test settings for `target` with the gateway's own lifecycle pass out of the way (once an
/// hour): the tests run the passes themselves and count what each did.
fn settings(target: &RedisTarget) -> Settings {
    let mut settings = test_settings(target);
    settings.lifecycle.sweep_interval_ms = 3_600_000;
    settings
}

/// Two gateways on the same Redis keys and database (two instances of one deployment).
async fn two_instances(target: &RedisTarget, db_url: &str) -> (TestApp, TestApp) {
    let mut settings = settings(target);
    settings.database.url = db_url.to_owned();
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    (first, second)
}

async fn buy(app: &TestApp, sale: &str, user: &str, key: &str) -> String {
    let response = app.purchase(sale, user, key, 1).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{user} buys");
    let body: Value = response.json().await.unwrap();
    body["order_id"].as_str().unwrap().to_owned()
}

async fn cancel(app: &TestApp, user: &str, order: &str) -> Response {
    app.client
        .post(format!("{}/api/v1/orders/{order}/cancel", app.base))
        .bearer_auth(app.token(user))
        .send()
        .await
        .unwrap()
}

async fn pay(app: &TestApp, order: &str) -> Response {
    app.client
        .post(format!("{}/admin/v1/orders/{order}/paid", app.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
}

async fn status_of(response: Response) -> (StatusCode, String) {
    let code = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let status = body["status"].as_str().or(body["order_status"].as_str());
    (code, status.unwrap_or_default().to_owned())
}

async fn order_view(app: &TestApp, user: &str, order: &str) -> Value {
    let (code, body) = app
        .get_json(&format!("/api/v1/orders/{order}"), Some(&app.token(user)))
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

fn assert_exact(reconciliation: &Value) {
    assert_eq!(reconciliation["difference"], 0, "{reconciliation:#}");
    assert_eq!(reconciliation["findings"], json!([]), "{reconciliation:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_paid_are_owner_only_idempotent_and_refuse_forbidden_transitions() {
    let redis = RedisServer::start();
    let app = spawn_app_with(settings(&RedisTarget::Single(redis.url()))).await;
    app.create_sale("life", &live_sale(10, 2, 1, 1)).await;
    // Cancelled while still pending in Redis: its row is written first.
    let mine = buy(&app, "life", "alice", "k1").await;
    assert_eq!(
        problem_slug(cancel(&app, "mallory", &mine).await).await,
        (StatusCode::NOT_FOUND, "not-found".to_owned()),
        "another buyer's order is not found"
    );
    for _ in 0..2 {
        assert_eq!(
            status_of(cancel(&app, "alice", &mine).await).await,
            (StatusCode::OK, "cancelled".to_owned())
        );
    }
    assert_eq!(
        status_of(pay(&app, &mine).await).await,
        (StatusCode::CONFLICT, "cancelled".to_owned()),
        "a cancelled order cannot be paid"
    );
    let view = order_view(&app, "alice", &mine).await;
    assert_eq!(view["status"], "cancelled");
    assert_eq!(view["pay_by"], Value::Null, "the sale sets no window");

    let bobs = buy(&app, "life", "bob", "k1").await;
    app.flush().await;
    for _ in 0..2 {
        assert_eq!(
            status_of(pay(&app, &bobs).await).await,
            (StatusCode::OK, "paid".to_owned())
        );
    }
    let (code, slug) = problem_slug(cancel(&app, "bob", &bobs).await).await;
    assert_eq!((code, slug.as_str()), (StatusCode::CONFLICT, "order-state"));
    assert_eq!(
        pay(&app, "life.0.1-0").await.status(),
        StatusCode::NOT_FOUND
    );

    // Alice's unit went back and her held count dropped: at a limit of 1 she buys again.
    let again = buy(&app, "life", "alice", "k2").await;
    assert_ne!(again, mine);
    app.flush().await;
    assert_eq!(app.stock_left("life", 2).await, 8);
    let reconciliation = app.reconcile("life").await;
    assert_exact(&reconciliation);
    assert_eq!(reconciliation["returned_units"], 1);
    assert_eq!(reconciliation["paid_units"], 1);
    assert_eq!(reconciliation["awaiting_units"], 1);
    let metrics = app.metrics_text().await;
    let returned: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("flashgate_orders_returned_total{"))
        .collect();
    assert_eq!(
        returned,
        [r#"flashgate_orders_returned_total{sale="life",reason="cancelled"} 1"#],
        "{metrics}"
    );
}

/// Expiry on `target` with `db`: a sold-out sale with a 2 s window; one buyer pays, the
/// others do not; their units come back once, the sale sells again on both instances, to
/// an expired buyer and to a newcomer.
async fn unpaid_orders_expire_and_the_sale_sells_again(target: RedisTarget, db: TestDb) {
    let (a, b) = two_instances(&target, &db.url()).await;
    a.create_sale("exp", &sale_with_window(3, 2, 1, 2)).await;
    let orders: Vec<String> =
        futures_util::future::join_all(["u1", "u2", "u3"].map(|u| buy(&a, "exp", u, "k"))).await;
    a.flush().await;
    for app in [&a, &b] {
        let (code, slug) = problem_slug(app.purchase("exp", "late", "k", 1).await).await;
        assert_eq!((code, slug.as_str()), (StatusCode::CONFLICT, "sold-out"));
        // From now on each instance answers newcomers "sold out" from memory.
        app.await_sold_out_holders("exp").await;
    }
    assert_eq!(
        status_of(pay(&b, &orders[0]).await).await,
        (StatusCode::OK, "paid".to_owned())
    );
    let view = order_view(&a, "u2", &orders[1]).await;
    assert!(view["pay_by"].is_string(), "{view}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Both instances sweep at once: each order is expired and returned by one of them.
    let (swept_a, swept_b) =
        tokio::join!(a.state.lifecycle.run_once(), b.state.lifecycle.run_once());
    assert_eq!(
        swept_a.expired + swept_b.expired,
        2,
        "{swept_a:?} {swept_b:?}"
    );
    assert_eq!(
        swept_a.returns.returned + swept_b.returns.returned,
        2,
        "{swept_a:?} {swept_b:?}"
    );
    let again = b.state.lifecycle.run_once().await;
    assert_eq!(again.expired + again.returns.returned, 0, "nothing twice");
    assert_eq!(order_view(&b, "u2", &orders[1]).await["status"], "expired");
    assert_eq!(order_view(&b, "u1", &orders[0]).await["status"], "paid");
    assert_eq!(
        status_of(pay(&a, &orders[2]).await).await,
        (StatusCode::CONFLICT, "expired".to_owned()),
        "an expired order cannot be paid"
    );

    // Both instances see the sale on sale again within a refresh interval.
    for app in [&a, &b] {
        let live = eventually(Duration::from_secs(10), || async {
            let (_, sale) = app.get_json("/api/v1/sales/exp", None).await;
            (sale["state"] == "live").then_some(())
        })
        .await;
        assert!(live.is_some(), "the sale is live again on {}", app.base);
    }
    // The expired buyer buys again; a newcomer (whom a sold-out instance would answer from
    // memory) buys on the other instance.
    buy(&a, "exp", "u2", "k-again").await;
    buy(&b, "exp", "newcomer", "k").await;
    let (code, slug) = problem_slug(a.purchase("exp", "late", "k2", 1).await).await;
    assert_eq!((code, slug.as_str()), (StatusCode::CONFLICT, "sold-out"));
    a.flush().await;
    b.flush().await;
    let reconciliation = a.reconcile("exp").await;
    assert_exact(&reconciliation);
    assert_eq!(reconciliation["returned_units"], 2);
    assert_eq!(reconciliation["paid_units"], 1);
    assert_eq!(reconciliation["awaiting_units"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpaid_orders_expire_and_the_sale_sells_again_on_postgres_and_single_redis() {
    let redis = RedisServer::start();
    unpaid_orders_expire_and_the_sale_sells_again(
        RedisTarget::Single(redis.url()),
        TestDb::postgres(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpaid_orders_expire_and_the_sale_sells_again_on_a_cluster_and_sqlite() {
    let cluster = RedisCluster::start();
    unpaid_orders_expire_and_the_sale_sells_again(
        RedisTarget::Cluster(cluster.urls()),
        TestDb::sqlite(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_and_cancel_racing_from_two_instances_end_each_order_in_one_state() {
    let redis = RedisServer::start();
    pay_and_cancel_race(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_and_cancel_racing_from_two_instances_on_a_cluster_end_each_order_in_one_state() {
    let cluster = RedisCluster::start();
    pay_and_cancel_race(RedisTarget::Cluster(cluster.urls())).await;
}

/// 1,000 orders, each paid through one instance and cancelled through the other at the
/// same moment (PostgreSQL): each ends in exactly one of the two states, the winner's answer
/// is 200 and the loser's 409, the cancelled units are back once, reconciliation is exact.
async fn pay_and_cancel_race(target: RedisTarget) {
    const ORDERS: usize = 1000;
    let db = TestDb::postgres();
    let (a, b) = two_instances(&target, &db.url()).await;
    a.create_sale("race", &live_sale(ORDERS as u64, 8, 1, 1))
        .await;
    let users: Vec<String> = (0..ORDERS).map(|i| format!("r{i}")).collect();
    let orders =
        futures_util::future::join_all(users.iter().map(|u| buy(&a, "race", u, "k"))).await;
    a.flush().await;

    let races = users.iter().zip(&orders).map(|(user, order)| {
        let (a, b) = (&a, &b);
        async move {
            let (paid, cancelled) = tokio::join!(pay(a, order), cancel(b, user, order));
            (status_of(paid).await, status_of(cancelled).await)
        }
    });
    let outcomes = futures_util::future::join_all(races).await;
    let mut tally: HashMap<&str, usize> = HashMap::new();
    for ((paid, paid_state), (cancelled, cancelled_state)) in &outcomes {
        let winner = match (*paid, *cancelled) {
            (StatusCode::OK, StatusCode::CONFLICT) => "paid",
            (StatusCode::CONFLICT, StatusCode::OK) => "cancelled",
            other => panic!("both or neither won: {other:?}"),
        };
        assert_eq!(paid_state, winner);
        assert_eq!(cancelled_state, winner);
        *tally.entry(winner).or_default() += 1;
    }
    a.state.lifecycle.run_once().await;
    b.state.lifecycle.run_once().await;
    for (user, order) in users.iter().zip(&orders).take(50) {
        let status = order_view(&b, user, order).await["status"].clone();
        assert!(status == "paid" || status == "cancelled", "{status}");
    }
    let cancelled = tally.get("cancelled").copied().unwrap_or(0) as u64;
    let paid = tally.get("paid").copied().unwrap_or(0) as u64;
    assert_eq!(paid + cancelled, ORDERS as u64);
    assert_eq!(
        a.stock_left("race", 8).await,
        cancelled,
        "every cancelled unit is back once"
    );
    let reconciliation = b.reconcile("race").await;
    assert_exact(&reconciliation);
    assert_eq!(reconciliation["returned_units"], cancelled);
    assert_eq!(reconciliation["paid_units"], paid);
    assert_eq!(reconciliation["awaiting_units"], 0);
}

/// A buyer whose record a live reshard handed over to a new home cancels an order bought
/// on the old layout, through an instance whose cached layout is still the old one: the old
/// home answers `moved`, the instance reloads the sale, and the units go back at the new
/// home, where their record (and its held count) now is; a second run of the script finds
/// the marker and does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_after_a_live_reshard_goes_to_the_buyers_new_home_once() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let mut settings = settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    let a = spawn_app_with(settings.clone()).await;
    // The second instance does not refresh its cache during the test.
    settings.stock.refresh_interval_ms = 600_000;
    let b = spawn_app_with(settings).await;
    a.create_sale("moved", &live_sale(8, 2, 1, 1)).await;
    let users = ["m1", "m2", "m3", "m4"];
    let orders = futures_util::future::join_all(users.map(|u| buy(&b, "moved", u, "k"))).await;
    b.flush().await;
    let response = a
        .client
        .post(format!("{}/admin/v1/sales/moved/reshard", a.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "shards": 4 }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["change"]["state"], "done", "{body}");
    let id = SaleId::parse("moved").unwrap();
    assert_eq!(
        b.state.sales.cached(&id).unwrap().layout.current.base(),
        0,
        "the second instance still has the first layout"
    );

    assert_eq!(
        status_of(cancel(&b, "m1", &orders[0]).await).await,
        (StatusCode::OK, "cancelled".to_owned())
    );
    // Shards 0..2 were the first layout, 2..6 are the new one.
    assert_eq!(a.stock_left("moved", 6).await, 5);
    let rt = a.state.sales.reload(&id).await.unwrap().unwrap();
    let user = UserId::parse("m1").unwrap();
    let home = a.keys.shard(&id, rt.home_of(&user));
    let order = OrderId::parse(&orders[0]).unwrap();
    let rerun = return_units(
        &mut a.redis.clone(),
        &home,
        &user,
        &order,
        Quantity::new(1).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(rerun, ReturnOutcome::Already);
    assert_eq!(a.stock_left("moved", 6).await, 5, "nothing returned twice");

    buy(&a, "moved", "m1", "k-again").await;
    a.flush().await;
    let reconciliation = a.reconcile("moved").await;
    assert_exact(&reconciliation);
    assert_eq!(reconciliation["returned_units"], 1);
}

/// A return the database records as due but Redis never took (the instance died between
/// the two steps, or Redis was down): the outbox drives it once Redis answers again, and
/// only then marks it done; NOSCRIPT after the restart is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_return_left_due_by_a_crash_or_a_redis_outage_is_driven_once_redis_is_back() {
    let mut redis = RedisServer::start();
    let db = TestDb::sqlite();
    let mut settings = settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    let app = spawn_app_with(settings).await;
    app.create_sale("due", &live_sale(2, 1, 1, 1)).await;
    let order = buy(&app, "due", "d1", "k").await;
    app.flush().await;
    // What a cancel leaves when its instance dies right after the database's step.
    db.execute("UPDATE orders SET status = 'cancelled', settled_at_ms = 1")
        .await;

    redis.stop();
    let during = app.state.lifecycle.run_once().await;
    assert_eq!(during.returns.returned + during.returns.already, 0);
    redis.restart();
    let after = eventually(Duration::from_secs(20), || async {
        let pass = app.state.lifecycle.run_once().await;
        (pass.returns.returned == 1).then_some(pass)
    })
    .await;
    assert!(after.is_some(), "the outbox drove the return");
    let again = app.state.lifecycle.run_once().await;
    assert_eq!(
        again.returns.returned + again.returns.already,
        0,
        "done once"
    );
    assert_eq!(order_view(&app, "d1", &order).await["status"], "cancelled");
    assert_eq!(app.stock_left("due", 1).await, 2);
    assert_exact(&app.reconcile("due").await);
}

/// `return_units.lua` writes nothing where the buyer's record is not: a tombstone left by a
/// reshard or a sealed shard answer `moved`, a shard without the buyer `absent`, a record
/// without the order `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn return_units_writes_nothing_where_the_buyers_record_is_not() {
    let redis = RedisServer::start();
    let app = spawn_app_with(settings(&RedisTarget::Single(redis.url()))).await;
    let sale = SaleId::parse("lua").unwrap();
    let keys = app.keys.shard(&sale, 0);
    let (user, other) = (UserId::parse("t1").unwrap(), UserId::parse("t2").unwrap());
    let order = OrderId::parse("lua.0.5-0").unwrap();
    let one = Quantity::new(1).unwrap();
    let mut conn = app.redis.clone();
    let record = format!("1\nk {order} 1 fp");
    let _: () = redis::cmd("HSET")
        .arg(&keys.buyers)
        .arg(user.as_str())
        .arg(format!(">{record}"))
        .arg(other.as_str())
        .arg("1\nk lua.0.6-0 1 fp")
        .query_async(&mut conn)
        .await
        .unwrap();
    let script_conn = app.redis.clone();
    let run = |user: UserId| {
        let (mut conn, keys, order) = (script_conn.clone(), keys.clone(), order.clone());
        async move {
            return_units(&mut conn, &keys, &user, &order, one)
                .await
                .unwrap()
        }
    };
    assert_eq!(run(user.clone()).await, ReturnOutcome::Moved);
    assert_eq!(run(other.clone()).await, ReturnOutcome::Unknown);
    assert_eq!(
        run(UserId::parse("t3").unwrap()).await,
        ReturnOutcome::Absent
    );
    let _: () = redis::cmd("HSET")
        .arg(&keys.buyers)
        .arg(user.as_str())
        .arg(&record)
        .arg("!")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(run(user.clone()).await, ReturnOutcome::Moved, "sealed");
    let stock: Option<u64> = redis::cmd("HGET")
        .arg(&keys.shard)
        .arg("stock")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stock, None, "no unit went anywhere");
}

/// A payment that reaches the gateway after `pay_by` finds the order expired (whether the
/// sweeper got there first or not) and its unit back on the shelf; a cancel while the
/// database is down is 503 and changes nothing, and succeeds once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_payment_finds_the_order_expired_and_a_cancel_waits_out_a_database_outage() {
    let redis = RedisServer::start();
    let mut db = TestDb::postgres();
    let mut settings = settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    let app = spawn_app_with(settings).await;
    app.create_sale("late", &sale_with_window(5, 1, 1, 1)).await;
    let tardy = buy(&app, "late", "tardy", "k").await;
    app.flush().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status_of(pay(&app, &tardy).await).await,
        (StatusCode::CONFLICT, "expired".to_owned())
    );
    app.state.lifecycle.run_once().await;
    assert_eq!(app.stock_left("late", 1).await, 5);

    let mut sale = sale_with_window(5, 1, 1, 0);
    sale["name"] = json!("no window");
    app.create_sale("calm", &sale).await;
    let calm = buy(&app, "calm", "calm", "k").await;
    app.flush().await;
    db.start_outage().await;
    let (code, slug) = problem_slug(cancel(&app, "calm", &calm).await).await;
    assert_eq!(
        (code, slug.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded")
    );
    db.end_outage().await;
    let cancelled = eventually(Duration::from_secs(20), || async {
        let (code, status) = status_of(cancel(&app, "calm", &calm).await).await;
        (code == StatusCode::OK).then_some(status)
    })
    .await;
    assert_eq!(cancelled.as_deref(), Some("cancelled"));
    assert_eq!(app.stock_left("calm", 1).await, 5);
    for sale in ["late", "calm"] {
        assert_exact(&app.reconcile(sale).await);
    }
}

/// Once a sale is deleted (ended, every order a row), its orders can still be cancelled:
/// there are no shelves to give the units back to, so the return is recorded done without
/// recreating any of the sale's Redis keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_an_order_of_a_deleted_sale_recreates_none_of_its_keys() {
    let redis = RedisServer::start();
    let app = spawn_app_with(settings(&RedisTarget::Single(redis.url()))).await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut body = live_sale(4, 2, 1, 1);
    body["ends_at"] = json!((now + time::Duration::seconds(1)).format(fmt).unwrap());
    app.create_sale("gone", &body).await;
    let order = buy(&app, "gone", "g1", "k").await;
    app.flush().await;
    let deleted = eventually(Duration::from_secs(10), || async {
        let response = app
            .client
            .delete(format!("{}/admin/v1/sales/gone", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        (response.status() == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
    assert!(deleted.is_some(), "the ended sale was deleted");

    assert_eq!(
        status_of(cancel(&app, "g1", &order).await).await,
        (StatusCode::OK, "cancelled".to_owned())
    );
    let pass = app.state.lifecycle.run_once().await;
    assert_eq!(
        pass.returns.returned + pass.returns.already,
        0,
        "nothing left due"
    );
    let mut conn = app.redis.clone();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*gone*", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "keys recreated: {left:?}");
}
