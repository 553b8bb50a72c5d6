//! Stock loans between shards under crash cases: a loan abandoned between borrow and credit
//! (the borrower died) is neither lost nor counted twice, and while it is in flight nobody
//! is told "sold out".

use std::time::Duration;

use flashgate::testing::domain::SaleId;
use flashgate::testing::store::RedisTarget;
use flashgate::testing::store::loans;

use crate::support::app::{TestApp, live_sale, spawn_app};
use crate::support::redis::RedisServer;
use crate::support::scenarios::Answer;

async fn app() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let app = spawn_app(&RedisTarget::Single(redis.url())).await;
    (redis, app)
}

fn long_ago_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_loan_is_finished_by_recovery_and_never_reads_as_sold_out() {
    let (_redis, app) = app().await;
    // stock 1 over 2 shards: shard 0 holds the unit, shard 1 none.
    app.create_sale("loan", &live_sale(1, 2, 1, 1)).await;
    let sale = SaleId::parse("loan").unwrap();
    let mut conn = app.redis.clone();
    // A borrower takes the unit towards shard 1 and dies before crediting it.
    let donor = app.keys.shard(&sale, 0);
    let reply = loans::borrow(&mut conn, &donor, "dead-loan", 1, 1, long_ago_ms())
        .await
        .unwrap();
    assert_eq!(reply.taken, 1);
    // While the unit is in flight, no buyer may be told it is sold out.
    let answer = Answer::of(app.purchase("loan", "early", "k", 1).await).await;
    assert_ne!(
        answer.slug.as_deref(),
        Some("sold-out"),
        "false sold-out: {:?}",
        answer.body
    );
    // Recovery (every 200 ms in tests) credits shard 1 and settles the loan.
    let counters = app.settled_counters("loan", 2).await;
    let unsold: u64 = counters.iter().map(|c| c.stock).sum();
    let sold: u64 = counters.iter().map(|c| c.sold).sum();
    assert_eq!(unsold + sold, 1, "{counters:?}");
    // The unit can be bought (by whoever asks first), and then the sale is sold out.
    let mut bought = u64::from(answer.status == 202);
    for i in 0..20 {
        if bought == 1 {
            break;
        }
        bought += u64::from(
            app.purchase("loan", &format!("b{i}"), "k", 1)
                .await
                .status()
                == 202,
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bought, 1);
    let late = Answer::of(app.purchase("loan", "late", "k", 1).await).await;
    assert_eq!(late.slug.as_deref(), Some("sold-out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credit_and_settle_apply_at_most_once() {
    let (_redis, app) = app().await;
    app.create_sale("once", &live_sale(10, 2, 1, 1)).await;
    let sale = SaleId::parse("once").unwrap();
    let (donor, recipient) = (app.keys.shard(&sale, 0), app.keys.shard(&sale, 1));
    let mut conn = app.redis.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let reply = loans::borrow(&mut conn, &donor, "L1", 3, 1, now)
        .await
        .unwrap();
    assert_eq!((reply.taken, reply.stock_left), (3, 2));
    assert!(loans::credit(&mut conn, &recipient, "L1", 3).await.unwrap());
    assert!(!loans::credit(&mut conn, &recipient, "L1", 3).await.unwrap());
    assert!(loans::settle(&mut conn, &donor, "L1").await.unwrap());
    assert!(!loans::settle(&mut conn, &donor, "L1").await.unwrap());
    let counters = app.shard_counters("once", 2).await;
    assert_eq!((counters[0].stock, counters[0].lent), (2, 0));
    assert_eq!((counters[1].stock, counters[1].lent), (8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn borrowing_more_than_a_donor_holds_takes_what_is_there() {
    let (_redis, app) = app().await;
    app.create_sale("partial", &live_sale(3, 2, 1, 1)).await; // shard 0: 2, shard 1: 1
    let sale = SaleId::parse("partial").unwrap();
    let mut conn = app.redis.clone();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let reply = loans::borrow(&mut conn, &app.keys.shard(&sale, 1), "L", 5, 0, now)
        .await
        .unwrap();
    assert_eq!((reply.taken, reply.stock_left), (1, 0));
    let empty = loans::borrow(&mut conn, &app.keys.shard(&sale, 1), "L2", 5, 0, now)
        .await
        .unwrap();
    assert_eq!(empty.taken, 0);
    let counters = app.settled_counters("partial", 2).await; // recovery finishes "L" after the grace
    assert_eq!(counters.iter().map(|c| c.stock).sum::<u64>(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_re_sent_borrow_still_lets_the_sale_sell_out_exactly() {
    let (_redis, app) = app().await;
    // 8 units over 2 shards, one unit a buyer.
    app.create_sale("resent", &live_sale(8, 2, 1, 1)).await;
    let sale = SaleId::parse("resent").unwrap();
    let donor = app.keys.shard(&sale, 1);
    let mut conn = app.redis.clone();
    // A borrow whose reply was lost is sent again with the same loan id (as redis-rs's
    // cluster connection does); then its borrower dies, leaving the loan to recovery.
    let first = loans::borrow(&mut conn, &donor, "resent-loan", 2, 0, long_ago_ms())
        .await
        .unwrap();
    assert_eq!(first.taken, 2);
    loans::borrow(&mut conn, &donor, "resent-loan", 2, 0, long_ago_ms())
        .await
        .unwrap();
    // Buyers come until one is told the sale is sold out: exactly the 8 units sell.
    let mut accepted = 0;
    let mut last = None;
    for i in 0..16 {
        let answer = Answer::of(app.purchase("resent", &format!("b{i}"), "k", 1).await).await;
        if answer.status == 202 {
            accepted += 1;
            continue;
        }
        last = Some(answer);
        if accepted == 8 {
            break;
        }
    }
    let last = last.expect("someone was refused");
    assert_eq!(accepted, 8, "last refusal: {:?}", last.body);
    assert_eq!(last.slug.as_deref(), Some("sold-out"), "{:?}", last.body);
    // No unit is stuck in `lent`: every unit is sold, none left anywhere.
    let counters = app.settled_counters("resent", 2).await;
    let sold: u64 = counters.iter().map(|c| c.sold).sum();
    let stock: u64 = counters.iter().map(|c| c.stock).sum();
    assert_eq!((sold, stock), (8, 0), "{counters:?}");
}
