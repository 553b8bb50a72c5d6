//! Purchases batched into one `purchase.lua` call on a single node: each purchase of a call
//! is decided exactly as if it were a call of its own, one purchase's failure leaves the
//! others standing, and batches really form while Redis is busy.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use flashgate::testing::domain::{IdempotencyKey, SaleId, UserId};
use flashgate::testing::stock::SpendToken;
use flashgate::testing::stock::batch::PurchaseBatcher;
use flashgate::testing::store::purchase::{self, Import, PurchaseCall, PurchaseReply};
use flashgate::testing::store::{Keys, RedisConn, RedisTarget, RedisTimeouts, StoreError};
use flashgate::testing::tokens::TokenId;

use crate::support::app::{TestApp, live_sale, spawn_app_with, spawn_single, test_settings};
use crate::support::redis::RedisServer;
use crate::support::scenarios;

/// A purchase of `quantity` by `user` with idempotency key `key` on `shard` of `sale`.
fn call(keys: &Keys, sale: &str, shard: u32, user: &str, key: &str, quantity: u32) -> PurchaseCall {
    let sale = SaleId::parse(sale).unwrap();
    PurchaseCall {
        keys: Arc::new(keys.shard(&sale, shard)),
        user: UserId::parse(user).unwrap(),
        quantity,
        limit: 2,
        idem_key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: format!("fp-{quantity}"),
        sale,
        now_ms: 0,
        shard,
        credits: Vec::new(),
        token: None,
        import: Import::Settled,
    }
}

async fn stock_of(conn: &mut RedisConn, app: &TestApp, sale: &str, shard: u32) -> i64 {
    let key = app.keys.shard(&SaleId::parse(sale).unwrap(), shard).shard;
    redis::cmd("HGET")
        .arg(key)
        .arg("stock")
        .query_async(conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purchases_of_one_call_are_decided_in_order_as_separate_calls_would_be() {
    let (_redis, app) = spawn_single().await;
    // 5 units on each of 4 shards, at most 2 per buyer.
    app.create_sale("b", &live_sale(20, 4, 2, 2)).await;
    let mut conn = app.redis.clone();
    let token = SpendToken(TokenId::random());
    let with_token = |mut c: PurchaseCall| {
        c.token = Some(token);
        c
    };
    let mut other_body = call(&app.keys, "b", 0, "alice", "k1", 1);
    other_body.fingerprint = "another body".into();
    let mut big_buyer = call(&app.keys, "b", 2, "dave", "k", 5);
    big_buyer.limit = 5;
    // The stock hash of a shard 9 (outside the sale) is made a string: a purchase there fails.
    let broken = app.keys.shard(&SaleId::parse("b").unwrap(), 9).shard;
    redis::cmd("SET")
        .arg(&broken)
        .arg("not a hash")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let calls = [
        call(&app.keys, "b", 0, "alice", "k1", 1), // 0: accepted
        call(&app.keys, "b", 0, "alice", "k1", 1), // 1: the same request again
        other_body,                                // 2: same key, another body
        call(&app.keys, "b", 0, "alice", "k2", 2), // 3: 1 held + 2 > limit 2
        with_token(call(&app.keys, "b", 1, "bob", "k", 2)), // 4: accepted, spends the token
        with_token(call(&app.keys, "b", 1, "bob", "k2", 1)), // 5: the token is spent
        big_buyer,                                 // 6: accepted, empties shard 2
        call(&app.keys, "b", 2, "erin", "k", 1),   // 7: shard 2 is now empty
        call(&app.keys, "b", 9, "frank", "k", 1),  // 8: its shard is broken
        call(&app.keys, "b", 1, "frank", "k", 1),  // 9: accepted after the failure
    ];
    let replies = purchase::purchase_many(&mut conn, &calls).await.unwrap();
    assert_eq!(replies.len(), calls.len());

    let Ok(PurchaseReply::Accepted {
        entry_id,
        stock_left: 4,
    }) = &replies[0]
    else {
        panic!("first purchase: {:?}", replies[0])
    };
    let first_order = format!("b.0.{entry_id}");
    assert_eq!(
        replies[1].as_ref().unwrap(),
        &PurchaseReply::Replay {
            order_id: first_order,
            quantity: 1
        }
    );
    assert_eq!(replies[2].as_ref().unwrap(), &PurchaseReply::Conflict);
    assert_eq!(
        replies[3].as_ref().unwrap(),
        &PurchaseReply::Limit { held: 1 }
    );
    assert!(matches!(
        replies[4],
        Ok(PurchaseReply::Accepted { stock_left: 3, .. })
    ));
    assert_eq!(replies[5].as_ref().unwrap(), &PurchaseReply::TokenUsed);
    assert!(matches!(
        replies[6],
        Ok(PurchaseReply::Accepted { stock_left: 0, .. })
    ));
    assert_eq!(
        replies[7].as_ref().unwrap(),
        &PurchaseReply::Short { stock: 0 }
    );
    let Err(StoreError::Redis(err)) = &replies[8] else {
        panic!("the broken shard answered {:?}", replies[8])
    };
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    assert!(matches!(
        replies[9],
        Ok(PurchaseReply::Accepted { stock_left: 2, .. })
    ));

    // Exactly the accepted units left their shards, and each accepted order is in its stream.
    assert_eq!(stock_of(&mut conn, &app, "b", 0).await, 4);
    assert_eq!(stock_of(&mut conn, &app, "b", 1).await, 2);
    assert_eq!(stock_of(&mut conn, &app, "b", 2).await, 0);
    let sale = SaleId::parse("b").unwrap();
    let mut entries = 0;
    for shard in 0..3 {
        let n: u64 = redis::cmd("XLEN")
            .arg(app.keys.shard(&sale, shard).orders)
            .query_async(&mut conn)
            .await
            .unwrap();
        entries += n;
    }
    assert_eq!(entries, 4, "one stream entry per accepted purchase");
}

/// Sends 50 purchases through a batcher of `max_batch` while Redis is paused, checks that
/// every one was accepted with its own order, and returns how many script calls carried
/// them.
async fn paused_storm(max_batch: usize) -> u64 {
    // No gateway: its background work would run scripts of its own meanwhile.
    let redis = RedisServer::start();
    let mut conn = RedisConn::connect(
        &RedisTarget::Single(redis.url()),
        RedisTimeouts {
            response: Duration::from_secs(10),
            connect: Duration::from_secs(10),
        },
    )
    .await
    .unwrap();
    let keys = Keys::new("q");
    let sale = SaleId::parse("q").unwrap();
    for shard in 0..8 {
        redis::cmd("HSET")
            .arg(keys.shard(&sale, shard).shard)
            .arg("stock")
            .arg(100)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let batcher = PurchaseBatcher::spawn(conn.clone(), max_batch);
    // A first purchase loads the script (calls that meet NOSCRIPT are sent twice).
    let warm_up = batcher.purchase(call(&keys, "q", 0, "first", "k", 1));
    assert!(matches!(
        warm_up.await.unwrap(),
        PurchaseReply::Accepted { .. }
    ));
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let buyers = 50;
    let purchases = (0..buyers).map(|i| {
        let batcher = batcher.clone();
        let call = call(&keys, "q", i % 8, &format!("buyer{i}"), "k", 1);
        tokio::spawn(async move { (i % 8, batcher.purchase(call).await) })
    });
    let mut orders = HashSet::new();
    for purchase in futures::future::join_all(purchases).await {
        let (shard, reply) = purchase.unwrap();
        match reply.unwrap() {
            PurchaseReply::Accepted { entry_id, .. } => {
                assert!(orders.insert(format!("{shard}.{entry_id}")));
            }
            other => panic!("a purchase with stock left was answered {other:?}"),
        }
    }
    assert_eq!(orders.len(), buyers as usize);

    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no evalsha in {stats}"))
}

/// Purchases sent while Redis is paused queue up behind the calls already outstanding and
/// then go out together: far fewer script calls than purchases, every purchase answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_that_arrive_while_calls_are_outstanding_share_a_call() {
    let calls = paused_storm(64).await;
    // Two calls go out at once (the in-flight pair); all the others wait for them and then
    // travel together, so a handful of calls carry the fifty purchases.
    assert!(
        calls <= 3,
        "{calls} script calls for 50 purchases: no batch formed"
    );
}

/// A call never carries more than `purchase_batch_max` purchases: with 4, the fifty take at
/// least 13 calls, and every one is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_carries_at_most_the_configured_batch() {
    let calls = paused_storm(4).await;
    assert!(
        (13..=50).contains(&calls),
        "{calls} script calls for 50 purchases in batches of at most 4"
    );
}

/// The path without batching (`stock.purchase_batch_max = 1`) on a single node keeps every
/// invariant too (a cluster always takes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_without_batching_buy_exactly_the_stock() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.stock.purchase_batch_max = 1;
    let app = spawn_app_with(settings).await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "u64", 100, 64, 10_000).await;
}
