//! The purchase path against a real single-node redis-server: invariants under storms,
//! idempotency, input validation, and Redis outages.

use std::sync::Arc;
use std::time::Duration;

use flashgate::testing::store::RedisTarget;
use serde_json::json;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, live_sale, problem_slug, spawn_app_with, spawn_single, test_settings,
};
use crate::support::redis::RedisServer;
use crate::support::scenarios::{self, Answer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_on_one_shard_buy_exactly_the_stock() {
    let (_redis, app) = spawn_single().await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "s1", 100, 1, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_on_eight_shards_buy_exactly_the_stock() {
    let (_redis, app) = spawn_single().await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "s8", 100, 8, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_buyers_on_sixty_four_shards_buy_exactly_the_stock() {
    let (_redis, app) = spawn_single().await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "s64", 100, 64, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_quantities_on_indivisible_stock_sell_every_unit() {
    let (_redis, app) = spawn_single().await;
    scenarios::mixed_quantities_sell_every_unit(&app, "mixed", 101, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_buyer_fifty_concurrent_purchases_get_exactly_the_limit() {
    let (_redis, app) = spawn_single().await;
    scenarios::one_buyer_storm_respects_the_limit(&app, "greedy", 8, 2, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyers_of_empty_shards_are_served_from_the_one_shard_with_stock() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("skew", &live_sale(40, 8, 1, 1)).await;
    // Move every unit onto shard 3: the other seven shards are empty. (Each shard's
    // allotment moves with its stock, so its counters still say it sold nothing.)
    let sale = flashgate::testing::domain::SaleId::parse("skew").unwrap();
    let mut conn = app.redis.clone();
    for shard in 0..8 {
        let key = app.keys.shard(&sale, shard).shard;
        let units = if shard == 3 { 40 } else { 0 };
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("stock")
            .arg(units)
            .arg("allotted")
            .arg(units)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("HINCRBY")
            .arg(&key)
            .arg("ver")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    // One by one, so "while it has stock" is unambiguous: each of the first 40 must succeed.
    let mut answers = Vec::new();
    for i in 0..40 {
        let answer = Answer::of(app.purchase("skew", &format!("u{i}"), "k", 1).await).await;
        assert_eq!(
            answer.status, 202,
            "buyer {i} refused while stock remained: {:?}",
            answer.body
        );
        answers.push(answer);
    }
    let last = Answer::of(app.purchase("skew", "late", "k", 1).await).await;
    assert_eq!(last.slug.as_deref(), Some("sold-out"));
    scenarios::assert_ledger(&app, "skew", 8, 40, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_buyers_on_skewed_shards_are_never_told_sold_out_early() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("skew2", &live_sale(5, 8, 1, 1)).await; // shards 0..4 hold one unit, 5..7 none
    let requests = (0..5)
        .map(|i| (format!("b{i}"), "k".to_owned(), 1))
        .collect();
    let answers = scenarios::storm(&app, "skew2", requests).await;
    assert!(
        answers.iter().all(|a| a.status == 202),
        "{:?}",
        scenarios::tally(&answers)
    );
    scenarios::assert_ledger(&app, "skew2", 8, 5, &answers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_with_same_key_and_body_returns_the_same_order_and_takes_nothing_more() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("idem", &live_sale(10, 4, 2, 2)).await;
    let first = Answer::of(app.purchase("idem", "alice", "key-1", 1).await).await;
    assert_eq!(first.status, 202);
    let again = Answer::of(app.purchase("idem", "alice", "key-1", 1).await).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.order_id, first.order_id);
    let sold: u64 = app.sold("idem", 4).await;
    assert_eq!(sold, 1);
    let (status, slug) = problem_slug(app.purchase("idem", "alice", "key-1", 2).await).await;
    assert_eq!(
        (status.as_u16(), slug.as_str()),
        (422, "idempotency-conflict")
    );
    // The same key of another buyer is another request.
    assert_eq!(app.purchase("idem", "bob", "key-1", 1).await.status(), 202);
}

/// A buyer's orders share one record in Redis: each key must find exactly its own order,
/// whatever the other keys look like (a prefix of another key, or text that occurs in the
/// record, such as an order id).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_of_a_buyers_keys_replays_its_own_order() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("many", &live_sale(20, 4, 6, 2)).await;
    let first = Answer::of(app.purchase("many", "dave", "k1", 1).await).await;
    assert_eq!(first.status, 202);
    let first_id = first.order_id.clone().unwrap();
    // A key that is the previous order's id, and keys that extend one another.
    let more = [(first_id.as_str(), 1), ("k10", 2), ("k", 1)];
    let mut orders = vec![("k1".to_owned(), first_id.clone(), 1)];
    for (key, qty) in more {
        let answer = Answer::of(app.purchase("many", "dave", key, qty).await).await;
        assert_eq!(answer.status, 202, "key {key}: {:?}", answer.body);
        orders.push((key.to_owned(), answer.order_id.unwrap(), qty));
    }
    let held: u32 = orders.iter().map(|o| o.2).sum();
    let distinct: std::collections::HashSet<_> = orders.iter().map(|o| &o.1).collect();
    assert_eq!(distinct.len(), orders.len(), "{orders:?}");
    // Every key, replayed with its body, answers its own order and takes nothing.
    for (key, order_id, qty) in &orders {
        let again = Answer::of(app.purchase("many", "dave", key, *qty).await).await;
        assert_eq!(again.status, 202, "key {key}");
        assert_eq!(again.order_id.as_ref(), Some(order_id), "key {key}");
        assert_eq!(again.quantity, u64::from(*qty), "key {key}");
        // ... and with another body, is a conflict.
        let (status, slug) = problem_slug(app.purchase("many", "dave", key, 3 - qty).await).await;
        assert_eq!(
            (status.as_u16(), slug.as_str()),
            (422, "idempotency-conflict")
        );
    }
    assert_eq!(app.sold("many", 4).await, u64::from(held));
    // A new key sees every unit held: 5 of 6, so two more is over the limit, one is not.
    assert_eq!(held, 5);
    let over = Answer::of(app.purchase("many", "dave", "k2", 2).await).await;
    assert_eq!(
        over.slug.as_deref(),
        Some("limit-reached"),
        "{:?}",
        over.body
    );
    assert_eq!(over.body["held"], 5);
    assert_eq!(app.purchase("many", "dave", "k2", 1).await.status(), 202);
    assert_eq!(app.sold("many", 4).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_request_take_one_unit() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("idem2", &live_sale(10, 4, 5, 1)).await;
    let requests = (0..20)
        .map(|_| ("carol".to_owned(), "same".to_owned(), 1))
        .collect();
    let answers = scenarios::storm(&app, "idem2", requests).await;
    let ids: std::collections::HashSet<_> =
        answers.iter().filter_map(|a| a.order_id.clone()).collect();
    assert!(
        answers.iter().all(|a| a.status == 202),
        "{:?}",
        scenarios::tally(&answers)
    );
    assert_eq!(ids.len(), 1);
    let sold: u64 = app
        .settled_counters("idem2", 4)
        .await
        .iter()
        .map(|c| c.sold)
        .sum();
    assert_eq!(sold, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_sell_out_still_returns_the_original_order() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("last", &live_sale(1, 4, 1, 1)).await;
    let winner = Answer::of(app.purchase("last", "winner", "w", 1).await).await;
    assert_eq!(winner.status, 202);
    // Someone else learns it is sold out (this marks the sale sold out locally).
    let loser = Answer::of(app.purchase("last", "loser", "l", 1).await).await;
    assert_eq!(loser.slug.as_deref(), Some("sold-out"));
    let retry = Answer::of(app.purchase("last", "winner", "w", 1).await).await;
    assert_eq!((retry.status, retry.order_id), (202, winner.order_id));
}

/// A retry that finds its home shard empty, on an instance that has not yet seen the sale
/// sold out (as one started after a crash finds it, or as here, the instance whose last
/// sale emptied the shard), goes on to borrow, finds nothing anywhere, and must still ask
/// the buyer's record before it says "sold out": the earlier order is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_to_an_empty_home_before_sell_out_is_known_returns_the_original_order() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("emptied", &live_sale(1, 1, 2, 2)).await;
    let winner = Answer::of(app.purchase("emptied", "winner", "w", 1).await).await;
    assert_eq!(winner.status, 202);
    let retry = Answer::of(app.purchase("emptied", "winner", "w", 1).await).await;
    assert_eq!((retry.status, retry.order_id), (202, winner.order_id));
    // The same key with another body is still a conflict, not "sold out".
    let other = Answer::of(app.purchase("emptied", "winner", "w", 2).await).await;
    assert_eq!(other.slug.as_deref(), Some("idempotency-conflict"));
    let loser = Answer::of(app.purchase("emptied", "loser", "l", 1).await).await;
    assert_eq!(loser.slug.as_deref(), Some("sold-out"));
    assert_eq!(app.sold("emptied", 1).await, 1);
}

/// After sell-out, purchases by buyers who hold nothing are answered from memory, before the
/// router: the shortcut must answer exactly "sold out" and count it, and leave everything it
/// is not sure about to the full path.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sell_out_the_shortcut_answers_only_what_it_may() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("gone", &live_sale(1, 2, 1, 1)).await;
    let winner = Answer::of(app.purchase("gone", "winner", "w", 1).await).await;
    assert_eq!(winner.status, 202);
    let first = Answer::of(app.purchase("gone", "loser", "l", 1).await).await;
    assert_eq!(first.slug.as_deref(), Some("sold-out"), "marks it sold out");
    app.await_sold_out_holders("gone").await;

    let url = format!("{}/api/v1/sales/gone/purchase", app.base);
    let send = |bearer: String, body: &'static str| {
        app.client
            .post(&url)
            .bearer_auth(bearer)
            .header("Idempotency-Key", "k")
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    // A buyer with nothing: "sold out", whatever the body says.
    for body in [r#"{"quantity":1}"#, r#"{"quantity":0}"#, "{not json"] {
        let answer = send(app.token("late"), body).await.unwrap();
        assert_eq!(
            problem_slug(answer).await,
            (reqwest::StatusCode::CONFLICT, "sold-out".to_owned()),
            "{body}"
        );
    }
    // No valid credential: still the full path's 401.
    let forged = flashgate::testing::auth::JwtKeys::new(b"not the gateway's secret, at all").mint(
        &flashgate::testing::domain::UserId::parse("late").unwrap(),
        time::OffsetDateTime::now_utc().unix_timestamp() + 60,
    );
    let answer = send(forged, r#"{"quantity":1}"#).await.unwrap();
    assert_eq!(problem_slug(answer).await.1, "unauthorized");
    // The holder's retry reaches Redis and gets its order back.
    let retry = Answer::of(app.purchase("gone", "winner", "w", 1).await).await;
    assert_eq!((retry.status, retry.order_id), (202, winner.order_id));

    let (_, sale) = app
        .get_json("/admin/v1/sales/gone", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(sale["rejected_by_reason"]["sold_out"], 4, "{sale}");
    assert_eq!(app.sold("gone", 2).await, 1);

    // Past the end of the sale the window decides, not the shortcut.
    app.state.clock.advance(time::Duration::hours(2));
    let lasting = app.jwt.mint(
        &flashgate::testing::domain::UserId::parse("late").unwrap(),
        time::OffsetDateTime::now_utc().unix_timestamp() + 3 * 3600,
    );
    let answer = send(lasting, r#"{"quantity":1}"#).await.unwrap();
    assert_eq!(problem_slug(answer).await.1, "sale-ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_documented_problem_and_takes_nothing() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("strict", &live_sale(10, 2, 2, 2)).await;
    let url = format!("{}/api/v1/sales/strict/purchase", app.base);
    let token = app.token("alice");
    let post = |body: String| {
        app.client
            .post(&url)
            .bearer_auth(&token)
            .header("Idempotency-Key", "k")
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (post("{not json".into()), 422, "validation"),
        (post(r#"{"quantity":0}"#.into()), 422, "validation"),
        (post(r#"{"quantity":3}"#.into()), 422, "validation"),
        (post(r#"{"quantity":-1}"#.into()), 422, "validation"),
        (post(r#"{"qty":1}"#.into()), 422, "validation"),
        (
            post(format!(
                r#"{{"quantity":1,"purchase_token":"{}"}}"#,
                "x".repeat(10_000)
            )),
            413,
            "payload-too-large",
        ),
        (
            app.client
                .post(&url)
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity":1})),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth("not.a.jwt")
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity":1})),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(expired_token(&app))
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity":1})),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(forged_token())
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity":1})),
            401,
            "unauthorized",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"quantity":1})),
            422,
            "validation",
        ),
        (
            app.client
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", "k".repeat(65))
                .json(&json!({"quantity":1})),
            422,
            "validation",
        ),
        (
            app.client
                .post(format!("{}/api/v1/sales/nope/purchase", app.base))
                .bearer_auth(&token)
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity":1})),
            404,
            "not-found",
        ),
    ];
    for (i, (request, status, slug)) in cases.into_iter().enumerate() {
        let got = problem_slug(request.send().await.unwrap()).await;
        assert_eq!((got.0.as_u16(), got.1.as_str()), (status, slug), "case {i}");
    }
    // A body sent as exactly `application/json` is read by a shorter way than one with
    // parameters; a bad one is described the same either way.
    for body in ["{not json", r#"{"quantity":"1"}"#, r#"{"qty":1}"#, "[]"] {
        let mut details = Vec::new();
        for content_type in ["application/json", "application/json; charset=utf-8"] {
            let answer = app
                .client
                .post(&url)
                .bearer_auth(&token)
                .header("Idempotency-Key", "k")
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status().as_u16(), 422, "{body} as {content_type}");
            let problem: serde_json::Value = answer.json().await.unwrap();
            details.push(problem["detail"].as_str().unwrap().to_owned());
        }
        assert_eq!(details[0], details[1], "{body}");
    }
    let counters = app.shard_counters("strict", 2).await;
    assert_eq!(counters.iter().map(|c| c.sold).sum::<u64>(), 0);
    assert_eq!(counters.iter().map(|c| c.stock).sum::<u64>(), 10);
}

fn expired_token(app: &TestApp) -> String {
    // Past the default leeway (`auth.leeway_s`) for clocks that disagree.
    let past = time::OffsetDateTime::now_utc().unix_timestamp() - 3600;
    app.jwt.mint(
        &flashgate::testing::domain::UserId::parse("alice").unwrap(),
        past,
    )
}

fn forged_token() -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    flashgate::testing::auth::JwtKeys::new(b"not the gateway's secret at all!").mint(
        &flashgate::testing::domain::UserId::parse("alice").unwrap(),
        exp,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sales_refuse_purchases_outside_their_window() {
    let (_redis, app) = spawn_single().await;
    let mut early = live_sale(5, 2, 1, 1);
    let fmt = &time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    early["starts_at"] = json!((now + time::Duration::hours(1)).format(fmt).unwrap());
    early["ends_at"] = json!((now + time::Duration::hours(2)).format(fmt).unwrap());
    app.create_sale("early", &early).await;
    let (status, slug) = problem_slug(app.purchase("early", "alice", "k", 1).await).await;
    assert_eq!((status.as_u16(), slug.as_str()), (409, "sale-not-started"));
    let mut ended = live_sale(5, 2, 1, 1);
    ended["starts_at"] = json!((now - time::Duration::hours(2)).format(fmt).unwrap());
    ended["ends_at"] = json!((now - time::Duration::hours(1)).format(fmt).unwrap());
    app.create_sale("ended", &ended).await;
    let (status, slug) = problem_slug(app.purchase("ended", "alice", "k", 1).await).await;
    assert_eq!((status.as_u16(), slug.as_str()), (410, "sale-ended"));
    for sale in ["early", "ended"] {
        let sold: u64 = app.sold(sale, 2).await;
        assert_eq!(sold, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_visible_to_their_owner_only() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("o", &live_sale(5, 2, 1, 1)).await;
    let order = Answer::of(app.purchase("o", "alice", "k", 1).await)
        .await
        .order_id
        .unwrap();
    let (status, body) = app
        .get_json(
            &format!("/api/v1/orders/{order}"),
            Some(&app.token("alice")),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        body["status"] == "pending" || body["status"] == "confirmed",
        "{body}"
    );
    assert_eq!(body["sale_id"], "o");
    assert_eq!(body["quantity"], 1);
    let (status, body) = app
        .get_json(
            &format!("/api/v1/orders/{order}"),
            Some(&app.token("mallory")),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["type"].as_str()),
        (404, Some("/problems/not-found"))
    );
    let (status, _) = app
        .get_json("/api/v1/orders/garbage", Some(&app.token("alice")))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sale_info_and_admin_status_report_the_sale() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("info", &live_sale(10, 4, 2, 2)).await;
    app.purchase("info", "alice", "k", 2).await;
    let (status, body) = app.get_json("/api/v1/sales/info", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "live");
    assert_eq!(body["stock_total"], 10);
    let (status, body) = app
        .get_json("/admin/v1/sales/info", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["sold"], 2);
    assert_eq!(body["remaining"], 8);
    assert_eq!(body["shards"].as_array().unwrap().len(), 4);
    let (status, _) = app
        .get_json("/admin/v1/sales/info", Some("wrong-token-wrong-token"))
        .await;
    assert_eq!(status, 401);
    let (status, _) = app.get_json("/api/v1/sales/none", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacing_a_live_sale_is_refused_but_an_upcoming_one_is_replaced() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("live", &live_sale(10, 4, 2, 2)).await;
    let mut changed = live_sale(20, 4, 2, 2);
    let (status, slug) = problem_slug(app.put_sale("live", &changed).await).await;
    assert_eq!((status.as_u16(), slug.as_str()), (409, "sale-live"));
    let fmt = &time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    changed["starts_at"] = json!((now + time::Duration::hours(1)).format(fmt).unwrap());
    changed["ends_at"] = json!((now + time::Duration::hours(2)).format(fmt).unwrap());
    assert_eq!(app.put_sale("up", &changed).await.status(), 201);
    changed["stock"] = json!(30);
    changed["shards"] = json!(8);
    assert_eq!(app.put_sale("up", &changed).await.status(), 200);
    // The replacement got shards of its own (indices 4..12); the first four are gone.
    let old: Vec<u64> = app
        .shard_counters("up", 4)
        .await
        .iter()
        .map(|c| c.stock)
        .collect();
    assert_eq!(old, [0, 0, 0, 0]);
    let stock: u64 = app.stock_left("up", 12).await;
    assert_eq!(stock, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_answers_503_and_purchases_resume_after_restart() {
    let mut redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.http.request_timeout_ms = 1500;
    settings.redis.response_timeout_ms = 300;
    let app = spawn_app_with(settings).await;
    app.create_sale("outage", &live_sale(10, 4, 3, 1)).await;
    assert_eq!(app.purchase("outage", "alice", "k1", 1).await.status(), 202);
    redis.stop();
    for i in 0..3 {
        let response = app
            .purchase("outage", "alice", &format!("down-{i}"), 1)
            .await;
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("1")
        );
        let (status, slug) = problem_slug(response).await;
        assert_eq!((status.as_u16(), slug.as_str()), (503, "overloaded"));
    }
    let (status, _) = app.get_json("/health/live", None).await;
    assert_eq!(status, 200);
    let (status, _) = app.get_json("/health/ready", None).await;
    assert_eq!(status, 503);
    redis.restart(); // data comes back from the AOF; the script cache is empty
    let mut recovered = false;
    for i in 0..50 {
        if app
            .purchase("outage", "alice", &format!("up-{i}"), 1)
            .await
            .status()
            == 202
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "purchases did not resume after Redis came back");
    let sold: u64 = app
        .settled_counters("outage", 4)
        .await
        .iter()
        .map(|c| c.sold)
        .sum();
    assert_eq!(sold, 2, "a request refused with 503 took stock");
}

/// A purchase the shard cannot serve takes its units with `HINCRBY` and puts them back: the
/// shard must end exactly as it was, and a shard that does not exist (its sale deleted while
/// the request was in flight) must not be created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_purchase_leaves_the_shard_as_it_found_it() {
    use flashgate::testing::domain::{IdempotencyKey, SaleId, UserId};
    use flashgate::testing::store::purchase::{self, Import, PurchaseCall, PurchaseReply};

    let (_redis, app) = spawn_single().await;
    app.create_sale("short", &live_sale(3, 1, 5, 5)).await;
    let sale = SaleId::parse("short").unwrap();
    let user = UserId::parse("alice").unwrap();
    let mut conn = app.redis.clone();
    let call = |shard, quantity| PurchaseCall {
        keys: Arc::new(app.keys.shard(&sale, shard)),
        user: user.clone(),
        quantity,
        limit: 5,
        idem_key: IdempotencyKey::parse("k").unwrap(),
        fingerprint: "fp".into(),
        sale: sale.clone(),
        now_ms: 0,
        shard,
        credits: Vec::new(),
        token: None,
        import: Import::Settled,
    };
    let hash = |shard| app.keys.shard(&sale, shard).shard;
    let fields = |conn: &mut flashgate::testing::store::RedisConn, key: String| {
        let mut conn = conn.clone();
        async move {
            let mut all: Vec<(String, String)> = redis::cmd("HGETALL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            all.sort();
            all
        }
    };

    let before = fields(&mut conn, hash(0)).await;
    let reply = purchase::purchase(&mut conn, &call(0, 4)).await.unwrap();
    assert_eq!(reply, PurchaseReply::Short { stock: 3 });
    assert_eq!(fields(&mut conn, hash(0)).await, before);

    let reply = purchase::purchase(&mut conn, &call(7, 1)).await.unwrap();
    assert_eq!(reply, PurchaseReply::Short { stock: 0 });
    let exists: u32 = redis::cmd("EXISTS")
        .arg(hash(7))
        .arg(app.keys.shard(&sale, 7).buyers)
        .arg(app.keys.shard(&sale, 7).orders)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "a purchase on a missing shard created keys");

    // The refused attempts left the buyer free to buy the whole stock.
    let reply = purchase::purchase(&mut conn, &call(0, 3)).await.unwrap();
    assert!(matches!(
        reply,
        PurchaseReply::Accepted { stock_left: 0, .. }
    ));
    assert_eq!(app.sold("short", 1).await, 3);
}
