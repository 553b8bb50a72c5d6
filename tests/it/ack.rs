//! `ack.lua` against a real redis-server: persisted orders leave their streams, and each
//! adds its units to its shard's `acked` exactly once — whatever the mix of quantities, and
//! however often the same orders are acknowledged again (the writer and the recovery worker
//! may both persist one order).

use std::sync::Arc;

use flashgate::testing::domain::{EntryId, IdempotencyKey, SaleId, UserId};
use flashgate::testing::store::RedisConn;
use flashgate::testing::store::orders::{self, ShardAcks};
use flashgate::testing::store::purchase::{self, Import, PurchaseCall, PurchaseReply};
use flashgate::testing::store::shards;

use crate::support::app::{TestApp, live_sale, spawn_app_with, test_settings};
use crate::support::redis::RedisServer;

/// Buys `quantity` units on `shard` of sale "a" for a buyer of its own; the stream entry id.
async fn buy(
    conn: &mut RedisConn,
    app: &TestApp,
    shard: u32,
    buyer: usize,
    quantity: u32,
) -> String {
    let sale = SaleId::parse("a").unwrap();
    let call = PurchaseCall {
        keys: Arc::new(app.keys.shard(&sale, shard)),
        user: UserId::parse(&format!("buyer{buyer}")).unwrap(),
        quantity,
        limit: 10,
        idem_key: IdempotencyKey::parse("k").unwrap(),
        fingerprint: "fp".into(),
        sale,
        now_ms: 0,
        shard,
        credits: Vec::new(),
        token: None,
        import: Import::Settled,
    };
    match purchase::purchase(conn, &call).await.unwrap() {
        PurchaseReply::Accepted { entry_id, .. } => entry_id,
        other => panic!("buyer {buyer} was answered {other:?}"),
    }
}

fn acks(app: &TestApp, shard: u32, orders: &[(String, u32)]) -> ShardAcks {
    ShardAcks {
        keys: app.keys.shard(&SaleId::parse("a").unwrap(), shard),
        orders: orders
            .iter()
            .map(|(id, quantity)| (EntryId::parse(id).unwrap(), *quantity))
            .collect(),
    }
}

/// (entries left in the stream, units pending) of `shard`.
async fn left(conn: &mut RedisConn, app: &TestApp, shard: u32) -> (u64, u64) {
    let keys = app.keys.shard(&SaleId::parse("a").unwrap(), shard);
    let entries: u64 = redis::cmd("XLEN")
        .arg(&keys.orders)
        .query_async(conn)
        .await
        .unwrap();
    let counters = shards::read_counters(conn, &keys).await.unwrap();
    (entries, counters.pending_units)
}

/// A fresh redis-server and a gateway whose recovery worker leaves the test's orders alone
/// (it persists only entries older than ten minutes).
async fn app_without_recovery() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&flashgate::testing::store::RedisTarget::Single(redis.url()));
    settings.queue.claim_idle_ms = 600_000;
    let app = spawn_app_with(settings).await;
    (redis, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_order_is_forgotten_and_counted_once_whatever_its_quantity() {
    let (_redis, app) = app_without_recovery().await;
    app.create_sale("a", &live_sale(200, 2, 10, 10)).await;
    let mut conn = app.redis.clone();

    // Shard 0: orders of 1, 2, 1, 3, 2 and 1 units; shard 1: one order of 4.
    let mut shard0 = Vec::new();
    for (buyer, quantity) in [1, 2, 1, 3, 2, 1].into_iter().enumerate() {
        shard0.push((buy(&mut conn, &app, 0, buyer, quantity).await, quantity));
    }
    let shard1 = vec![(buy(&mut conn, &app, 1, 100, 4).await, 4)];
    assert_eq!(left(&mut conn, &app, 0).await, (6, 10));
    assert_eq!(left(&mut conn, &app, 1).await, (1, 4));

    // Two orders of shard 0 (one of 1 unit, one of 3) persisted first.
    let first = [shard0[0].clone(), shard0[3].clone()];
    assert_eq!(
        orders::ack(&mut conn, &[acks(&app, 0, &first)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(left(&mut conn, &app, 0).await, (4, 6));

    // Then every order of both shards, those two again among them, one of them twice in the
    // same call: only the five still there count, each with its own units.
    let mut all = shard0.clone();
    all.push(shard0[3].clone());
    let forgotten = orders::ack(&mut conn, &[acks(&app, 0, &all), acks(&app, 1, &shard1)])
        .await
        .unwrap();
    assert_eq!(forgotten, 5);
    assert_eq!(left(&mut conn, &app, 0).await, (0, 0));
    assert_eq!(left(&mut conn, &app, 1).await, (0, 0));

    // Acknowledging them all once more changes nothing.
    let again = orders::ack(&mut conn, &[acks(&app, 0, &all), acks(&app, 1, &shard1)])
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(left(&mut conn, &app, 0).await, (0, 0));
    let sale = SaleId::parse("a").unwrap();
    let counters = shards::read_counters(&mut conn, &app.keys.shard(&sale, 0))
        .await
        .unwrap();
    assert_eq!(
        counters.sold, 10,
        "acknowledging moves no unit out of `sold`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_forgets_more_orders_of_one_quantity_than_lua_can_unpack_at_once() {
    // A cluster's ack call carries all of a batch's orders on one shard; Lua's `unpack`
    // pushes at most ~8,000 values, so the ids must reach XDEL in bounded groups.
    let (_redis, app) = app_without_recovery().await;
    let mut conn = app.redis.clone();
    let keys = app.keys.shard(&SaleId::parse("big").unwrap(), 0);
    const ORDERS: u64 = 9_000;
    let mut pipe = redis::pipe();
    for i in 1..=ORDERS {
        pipe.cmd("XADD")
            .arg(&keys.orders)
            .arg(format!("1-{i}"))
            .arg("user_id")
            .arg("u")
            .arg("quantity")
            .arg(1)
            .ignore();
    }
    pipe.query_async::<()>(&mut conn).await.unwrap();
    let orders = (1..=ORDERS)
        .map(|i| (EntryId::parse(&format!("1-{i}")).unwrap(), 1))
        .collect();
    let call = [ShardAcks {
        keys: keys.clone(),
        orders,
    }];
    assert_eq!(orders::ack(&mut conn, &call).await.unwrap(), ORDERS);
    let (entries, acked): (u64, u64) = redis::pipe()
        .cmd("XLEN")
        .arg(&keys.orders)
        .cmd("HGET")
        .arg(&keys.shard)
        .arg("acked")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((entries, acked), (0, ORDERS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_moves_to_the_dead_letters_once_however_often_it_is_moved_and_leaves_them_once() {
    use flashgate::testing::domain::{EntryId, OrderId};
    use flashgate::testing::persist::dead_letters::{self, DropOutcome};

    let (_redis, app) = app_without_recovery().await;
    app.create_sale("a", &live_sale(200, 2, 10, 10)).await;
    let mut conn = app.redis.clone();
    let persister = &app.state.persister;
    let sale = SaleId::parse("a").unwrap();
    let order = |entry: &str| OrderId::new(sale.clone(), 0, EntryId::parse(entry).unwrap());
    let (kept, dropped) = (
        buy(&mut conn, &app, 0, 1, 2).await,
        buy(&mut conn, &app, 0, 2, 3).await,
    );

    let first = dead_letters::bury(persister, &order(&kept), "refused", 3)
        .await
        .unwrap();
    let again = dead_letters::bury(persister, &order(&kept), "refused", 4)
        .await
        .unwrap();
    assert!(first.is_some());
    assert_eq!(again, None, "a second move finds nothing to move");
    let buried = dead_letters::bury(persister, &order(&dropped), "refused", 3)
        .await
        .unwrap();
    let listed = dead_letters::list_shard(persister, &sale, 0).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0].attempts, listed[0].quantity), (3, Some(2)));
    // Out of the stream, and still sold and unacknowledged: `sold - acked` counts them.
    assert_eq!(left(&mut conn, &app, 0).await, (0, 5));

    // Dropping forgets the order's units once; a second drop finds nothing.
    let id = buried.unwrap();
    let outcome = dead_letters::drop_letter(persister, &id).await.unwrap();
    assert_eq!(outcome, DropOutcome::Dropped { units: 3 });
    assert!(dead_letters::drop_letter(persister, &id).await.is_err());
    assert_eq!(left(&mut conn, &app, 0).await, (0, 2));

    // Retrying writes the row and forgets the dead letter once.
    let id = first.unwrap();
    let row = dead_letters::retry(persister, &id).await.unwrap();
    assert_eq!(row, order(&kept));
    assert!(dead_letters::retry(persister, &id).await.is_err());
    assert_eq!(left(&mut conn, &app, 0).await, (0, 0));
    assert!(
        dead_letters::list_shard(persister, &sale, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let counters = shards::read_counters(&mut conn, &app.keys.shard(&sale, 0))
        .await
        .unwrap();
    assert_eq!(
        counters.sold, 5,
        "neither dropping nor retrying moves a unit out of `sold`"
    );
}
