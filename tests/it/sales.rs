//! Sale definitions: every numeric field is bounded (422 naming the limit), and a sale whose
//! stored record cannot be read is reported to operators and skipped, never stopping the
//! refresh and recovery of the other sales.

use std::time::Duration;

use flashgate::testing::domain::SaleId;
use flashgate::testing::store::loans;
use serde_json::{Value, json};

use crate::support::app::{
    ADMIN_TOKEN, eventually, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::redis::RedisServer;

#[tokio::test]
async fn put_with_any_field_out_of_range_answers_422_naming_the_limit() {
    let (_redis, app) = crate::support::app::spawn_single().await;
    let long_name = "x".repeat(201);
    let cases: [(&str, Value, &str); 10] = [
        ("stock", json!(18_446_744_073_709_551_615u64), "1000000000"),
        ("stock", json!(1_000_000_001u64), "1000000000"),
        ("shards", json!(0), "1..=1024"),
        ("shards", json!(1025), "1..=1024"),
        ("per_user_limit", json!(1001), "1..=1000"),
        ("max_per_order", json!(3), "per_user_limit"),
        ("pow_difficulty", json!(33), "0..=32"),
        ("name", json!(""), "1..=200"),
        ("name", json!(long_name), "1..=200"),
        ("ends_at", json!("2000-01-01T00:00:00Z"), "after starts_at"),
    ];
    for (field, value, limit) in cases {
        let mut body = live_sale(10, 2, 2, 2);
        body[field] = value;
        let response = app.put_sale("bounded", &body).await;
        let (status, body): (u16, Value) = (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        );
        assert_eq!(status, 422, "{field}: {body}");
        assert_eq!(body["type"], "/problems/validation", "{field}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(field) && detail.contains(limit),
            "{field}: detail {detail:?} does not name {limit}"
        );
    }
    // The largest allowed stock is accepted.
    let mut body = live_sale(10, 2, 2, 2);
    body["stock"] = json!(1_000_000_000u64);
    assert_eq!(app.put_sale("bounded", &body).await.status(), 201);
}

/// Writes a sale record straight into Redis, as a damaged or foreign writer could.
async fn write_raw_sale(app: &crate::support::app::TestApp, id: &str, def: &str) {
    let sale = SaleId::parse(id).unwrap();
    let mut conn = app.redis.clone();
    redis::cmd("HSET")
        .arg(app.keys.sale_meta(&sale))
        .arg(&[("def", def), ("paused", "0"), ("epoch", "1")])
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("SADD")
        .arg(app.keys.sale_index())
        .arg(id)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_sale_is_reported_and_the_others_keep_refreshing_and_recovering() {
    let redis = RedisServer::start();
    let settings = test_settings(&flashgate::testing::store::RedisTarget::Single(redis.url()));
    // Two instances sharing one Redis; "good" is created through the second, so the first
    // learns of it (and recovers its loans) only through its refresh.
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    // Sales are refreshed in id order: both broken ones come before "good".
    write_raw_sale(&first, "a-garbage", "{not json").await;
    let huge = live_sale(18_446_744_073_709_551_615, 1, 1, 1).to_string();
    write_raw_sale(&first, "b-huge", &huge).await;
    second.create_sale("good", &live_sale(2, 2, 1, 1)).await;
    // Its workers stop with it, so only the first instance can finish the loan below.
    second.stop().await;
    // A loan of "good" abandoned by a dead borrower, for recovery to finish.
    let sale = SaleId::parse("good").unwrap();
    let mut conn = first.redis.clone();
    let long_ago = (time::OffsetDateTime::now_utc().unix_timestamp() - 3600) * 1000;
    let loan = loans::borrow(
        &mut conn,
        &first.keys.shard(&sale, 0),
        "lost",
        1,
        1,
        long_ago,
    )
    .await
    .unwrap();
    assert_eq!(loan.taken, 1);
    let counters = first.settled_counters("good", 2).await;
    assert_eq!(counters.iter().map(|c| c.stock).sum::<u64>(), 2);
    // An operator change of "good" (kill switch, new epoch) reaches the first instance.
    redis::cmd("HSET")
        .arg(first.keys.sale_meta(&sale))
        .arg("paused")
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("HINCRBY")
        .arg(first.keys.sale_meta(&sale))
        .arg("epoch")
        .arg(1)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // The refresh runs on its timer (every 200 ms in tests).
    let paused = eventually(Duration::from_secs(10), || async {
        let cached = first.state.sales.cached(&sale);
        cached.is_some_and(|rt| rt.paused).then_some(())
    })
    .await
    .is_some();
    assert!(paused, "the pause of \"good\" never reached the cache");
    // A paused sale is refused as a conflict (it may resume), not as ended.
    let answer = first.purchase("good", "alice", "while-paused", 1).await;
    let (status, slug) = problem_slug(answer).await;
    assert_eq!((status.as_u16(), slug.as_str()), (409, "sale-paused"));
    // The operator view names each unreadable sale and why.
    for (id, why) in [("a-garbage", "corrupt"), ("b-huge", "1000000000")] {
        let (status, body) = first
            .get_json(&format!("/admin/v1/sales/{id}"), Some(ADMIN_TOKEN))
            .await;
        assert_eq!(status, 200, "{id}: {body}");
        assert_eq!(body["state"], "unreadable", "{id}: {body}");
        assert_eq!(body["sale_id"], id);
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{id}: {error:?} does not say {why:?}");
    }
    let (status, body) = first
        .get_json("/admin/v1/sales/good", Some(ADMIN_TOKEN))
        .await;
    assert_eq!((status.as_u16(), &body["state"]), (200, &json!("paused")));
    // Buyers of the broken sale are not told anything false.
    let response = first
        .client
        .get(format!("{}/api/v1/sales/a-garbage", first.base))
        .send()
        .await
        .unwrap();
    let (status, _) = problem_slug(response).await;
    assert!(status.is_server_error(), "{status}");
}

/// Eight PUTs of one upcoming sale at once, each with its own shard count: the sale ends
/// with one of their definitions, its layout has exactly that many shards holding its
/// stock, and no shard of a losing PUT is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_end_in_one_definition_with_its_own_shards() {
    let (_redis, app) = crate::support::app::spawn_single().await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut body = live_sale(100, 1, 2, 2);
    body["starts_at"] = json!((now + time::Duration::hours(1)).format(fmt).unwrap());
    body["ends_at"] = json!((now + time::Duration::hours(2)).format(fmt).unwrap());
    app.create_sale("race", &body).await;
    let puts = (2..=9u32).map(|shards| {
        let mut body = body.clone();
        body["shards"] = json!(shards);
        body["stock"] = json!(100 + shards);
        let app = &app;
        async move { app.put_sale("race", &body).await.status().as_u16() }
    });
    let statuses = futures::future::join_all(puts).await;
    assert!(
        statuses.iter().all(|s| [200, 409].contains(s)) && statuses.contains(&200),
        "{statuses:?}"
    );
    let (_, view) = app
        .get_json("/admin/v1/sales/race", Some(ADMIN_TOKEN))
        .await;
    let current = &view["layout"]["current"];
    let (base, count) = (
        current["base"].as_u64().unwrap() as u32,
        current["count"].as_u64().unwrap() as u32,
    );
    assert_eq!(view["stock_total"], json!(100 + count), "{view}");
    // Every shard index ever reserved: only the winner's hold keys, with its whole stock.
    let sale = SaleId::parse("race").unwrap();
    let mut conn = app.redis.clone();
    let mut stocked = Vec::new();
    for shard in 0..64 {
        let exists: bool = redis::cmd("EXISTS")
            .arg(app.keys.shard(&sale, shard).shard)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            stocked.push(shard);
        }
    }
    assert_eq!(stocked, (base..base + count).collect::<Vec<_>>());
    assert_eq!(
        app.stock_left("race", base + count).await,
        u64::from(100 + count)
    );
}

/// DELETE is refused while the sale runs; once it has ended and its orders are rows, every
/// Redis key of the sale goes (the orders stay in the database) and the sale is unknown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_is_deleted_once_ended_and_persisted_and_its_keys_are_gone() {
    let (_redis, app) = crate::support::app::spawn_single().await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut body = live_sale(10, 2, 1, 1);
    body["ends_at"] = json!((now + time::Duration::seconds(2)).format(fmt).unwrap());
    app.create_sale("gone", &body).await;
    for user in ["ann", "bob", "cid"] {
        assert_eq!(app.purchase("gone", user, "k", 1).await.status(), 202);
    }
    let delete = || async {
        app.client
            .delete(format!("{}/admin/v1/sales/gone", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    };
    assert_eq!(problem_slug(delete().await).await.1, "sale-live");
    app.flush().await;
    let deleted = eventually(Duration::from_secs(10), || async {
        (delete().await.status() == 204).then_some(())
    })
    .await;
    assert!(deleted.is_some(), "the ended sale was never deleted");
    let mut conn = app.redis.clone();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:*gone*", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "keys left behind: {left:?}");
    let (status, _) = app
        .get_json("/admin/v1/sales/gone", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.db_orders("gone").await.len(), 3, "the orders stay");
    assert!(
        app.state
            .sales
            .cached(&SaleId::parse("gone").unwrap())
            .is_none()
    );
}
