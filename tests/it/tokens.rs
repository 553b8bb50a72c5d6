//! Anti-bot purchase tokens against a real Redis (and a 3-master cluster): challenge, proof
//! of work, token, and a purchase that spends the token exactly once.

use std::collections::HashSet;

use flashgate::testing::domain::{SaleId, UserId};
use flashgate::testing::store::RedisTarget;
use flashgate::testing::tokens::{Audience, TokenSigner, pow};
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::app::{
    JWT_SECRET, TestApp, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::redis::{RedisCluster, RedisServer};

/// A gateway that requires purchase tokens (and, as every test gateway, lets one buyer
/// retry as fast as it likes: the per-buyer rate limit is not what these tests are about).
async fn token_app(target: RedisTarget) -> TestApp {
    let mut settings = test_settings(&target);
    settings.tokens.require_purchase_token = true;
    spawn_app_with(settings).await
}

/// The order id of a 202, or the status and problem slug of anything else.
async fn outcome(response: reqwest::Response) -> Result<String, (StatusCode, String)> {
    if response.status() == StatusCode::ACCEPTED {
        let body: Value = response.json().await.unwrap();
        Ok(body["order_id"].as_str().unwrap().to_owned())
    } else {
        Err(problem_slug(response).await)
    }
}

fn token_used() -> (StatusCode, String) {
    (StatusCode::CONFLICT, "token-used".to_owned())
}

fn invalid_token() -> (StatusCode, String) {
    (StatusCode::FORBIDDEN, "invalid-token".to_owned())
}

/// One token sent 1,000 times in a row, then another 100 times at once, each time with a
/// fresh Idempotency-Key: each token buys exactly once; every other attempt is token-used
/// and takes nothing. A retry with the original key still answers with the same order.
async fn a_replayed_token_buys_exactly_once(target: RedisTarget) {
    let app = token_app(target).await;
    app.create_sale("replay", &live_sale(10_000, 8, 100, 1))
        .await;

    let token = app.purchase_token("replay", "alice").await;
    let mut orders = Vec::new();
    for i in 0..1000 {
        let response = app
            .purchase_with_token("replay", "alice", &format!("seq{i}"), 1, Some(&token))
            .await;
        match outcome(response).await {
            Ok(order) => orders.push(order),
            Err(refusal) => assert_eq!(refusal, token_used(), "attempt {i}"),
        }
    }
    assert_eq!(orders.len(), 1, "sequential replays: {orders:?}");
    let retry = app
        .purchase_with_token("replay", "alice", "seq0", 1, Some(&token))
        .await;
    assert_eq!(
        outcome(retry).await,
        Ok(orders[0].clone()),
        "idempotent retry"
    );

    let token = app.purchase_token("replay", "alice").await;
    let attempts = (0..100).map(|i| {
        let (app, token) = (&app, &token);
        async move {
            let key = format!("par{i}");
            outcome(
                app.purchase_with_token("replay", "alice", &key, 1, Some(token))
                    .await,
            )
            .await
        }
    });
    let results = join_all(attempts).await;
    let accepted: Vec<_> = results.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(accepted.len(), 1, "concurrent replays: {results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.clone().err())
            .all(|e| e == token_used())
    );

    assert_eq!(app.sold("replay", 8).await, 2);
    app.drained_counters("replay", 8).await;
    let rows = app.db_orders("replay").await;
    assert_eq!(rows.len(), 2, "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_token_buys_exactly_once_on_one_node() {
    let redis = RedisServer::start();
    a_replayed_token_buys_exactly_once(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_token_buys_exactly_once_on_a_cluster() {
    let cluster = RedisCluster::start();
    a_replayed_token_buys_exactly_once(RedisTarget::Cluster(cluster.urls())).await;
}

/// Every single-bit flip of a valid token, the token of another buyer or another sale, an
/// expired token and no token at all: 403 invalid-token, and nothing is taken (afterwards
/// the genuine token still buys).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_foreign_expired_and_missing_tokens_are_refused_and_take_nothing() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    app.create_sale("guarded", &live_sale(100, 4, 1, 1)).await;
    app.create_sale("other", &live_sale(100, 4, 1, 1)).await;

    let token = app.purchase_token("guarded", "alice").await;
    let mut flips = HashSet::new();
    for (i, _) in token.char_indices() {
        for bit in 0..8 {
            let mut bytes = token.clone().into_bytes();
            bytes[i] ^= 1 << bit;
            flips.insert(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    assert_eq!(
        flips.len(),
        token.len() * 8,
        "every flip is a distinct text"
    );
    for (n, forged) in flips.iter().enumerate() {
        let response = app
            .purchase_with_token("guarded", "alice", &format!("f{n}"), 1, Some(forged))
            .await;
        assert_eq!(outcome(response).await, Err(invalid_token()), "{forged}");
    }

    let bobs = app.purchase_token("guarded", "bob").await;
    let other_sale = app.purchase_token("other", "alice").await;
    for (what, token) in [("bobs-token", &bobs), ("other-sale-token", &other_sale)] {
        let response = app
            .purchase_with_token("guarded", "alice", what, 1, Some(token))
            .await;
        assert_eq!(outcome(response).await, Err(invalid_token()), "{what}");
    }
    let response = app
        .purchase_with_token("guarded", "alice", "none", 1, None)
        .await;
    assert_eq!(outcome(response).await, Err(invalid_token()), "no token");

    // A token past its expiry: the gateway's clock moves beyond the token lifetime.
    let expiring = app.purchase_token("guarded", "carol").await;
    let ttl_ms = app.state.settings.tokens.token_ttl_ms;
    app.state
        .clock
        .advance(time::Duration::milliseconds(ttl_ms as i64 + 1));
    let response = app
        .purchase_with_token("guarded", "carol", "late", 1, Some(&expiring))
        .await;
    assert_eq!(outcome(response).await, Err(invalid_token()), "expired");

    assert_eq!(app.sold("guarded", 4).await, 0, "no refusal took stock");
    assert_eq!(app.sold("other", 4).await, 0);
    let (_, sale) = app
        .get_json(
            "/admin/v1/sales/guarded",
            Some(crate::support::app::ADMIN_TOKEN),
        )
        .await;
    let invalid = sale["rejected_by_reason"]["invalid_token"].as_u64();
    assert_eq!(invalid, Some(flips.len() as u64 + 4), "{sale}");

    // The genuine token was never spent by any of that: it buys now (it is still within
    // its lifetime on a fresh token, so get one after the clock moved).
    let token = app.purchase_token("guarded", "alice").await;
    let response = app
        .purchase_with_token("guarded", "alice", "real", 1, Some(&token))
        .await;
    assert!(outcome(response).await.is_ok());
    assert_eq!(app.sold("guarded", 4).await, 1);
}

/// A token minted by the test itself with the gateway's derived key but for a generation the
/// sale no longer has is refused: replacing a sale voids its outstanding tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_of_an_earlier_sale_generation_is_refused() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    app.create_sale("epochs", &live_sale(10, 2, 1, 1)).await;
    let sale = SaleId::parse("epochs").unwrap();
    let user = UserId::parse("dave").unwrap();
    let generation = app
        .state
        .sales
        .get(&sale)
        .await
        .unwrap()
        .unwrap()
        .generation;
    let signer = TokenSigner::derived_from(JWT_SECRET.as_bytes());
    let to = Audience {
        sale: &sale,
        user: &user,
    };
    let expires = app.state.clock.now_ms() + 60_000;
    let (_, stale) = signer.issue_token(to, generation - 1, expires);
    let (_, current) = signer.issue_token(to, generation, expires);
    let response = app
        .purchase_with_token("epochs", "dave", "stale", 1, Some(&stale))
        .await;
    assert_eq!(outcome(response).await, Err(invalid_token()));
    let response = app
        .purchase_with_token("epochs", "dave", "current", 1, Some(&current))
        .await;
    assert!(
        outcome(response).await.is_ok(),
        "a token of the current generation buys"
    );
}

/// Before `starts_at`, a challenge, a token and a purchase are all refused with
/// sale-not-started, and nothing is sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_the_start_nothing_is_handed_out_or_sold() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut body = live_sale(100, 4, 1, 1);
    body["starts_at"] = json!((now + time::Duration::hours(1)).format(fmt).unwrap());
    body["ends_at"] = json!((now + time::Duration::hours(2)).format(fmt).unwrap());
    app.create_sale("early", &body).await;

    let not_started = (StatusCode::CONFLICT, "sale-not-started".to_owned());
    let response = app
        .post_json("/api/v1/sales/early/challenge", "eve", None, &json!({}))
        .await;
    assert_eq!(problem_slug(response).await, not_started, "challenge");
    // A challenge minted with the gateway's key does not get a token either.
    let sale = SaleId::parse("early").unwrap();
    let user = UserId::parse("eve").unwrap();
    let to = Audience {
        sale: &sale,
        user: &user,
    };
    let signer = TokenSigner::derived_from(JWT_SECRET.as_bytes());
    let (_, challenge) = signer.issue_challenge(to, 0, app.state.clock.now_ms() + 60_000);
    let response = app.exchange("early", "eve", &challenge, "0").await;
    assert_eq!(problem_slug(response).await, not_started, "token");
    let (_, token) = signer.issue_token(to, 1, app.state.clock.now_ms() + 60_000);
    for token in [None, Some(token.as_str())] {
        let response = app.purchase_with_token("early", "eve", "k", 1, token).await;
        assert_eq!(problem_slug(response).await, not_started, "purchase");
    }
    assert_eq!(app.sold("early", 4).await, 0);
}

/// At difficulty 16: a nonce that does not solve the challenge is refused with 403, a
/// solving one gets a token (once: the challenge is spent), and the token buys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn proof_of_work_at_difficulty_16() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    let mut body = live_sale(10, 2, 1, 1);
    body["pow_difficulty"] = json!(16);
    app.create_sale("pow", &body).await;

    let (status, challenge) = app.challenge("pow", "frank").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge["difficulty"], 16);
    assert!(challenge["expires_at"].is_string());
    let text = challenge["challenge"].as_str().unwrap();
    let wrong = (0u64..)
        .map(|n| n.to_string())
        .find(|n| pow::check(text, n, 16).is_err())
        .unwrap();
    for nonce in [wrong.as_str(), "", "abc", "-1"] {
        let response = app.exchange("pow", "frank", text, nonce).await;
        assert_eq!(
            problem_slug(response).await,
            invalid_token(),
            "nonce {nonce:?}"
        );
    }
    // Another buyer cannot cash this buyer's challenge, solved or not.
    let nonce = pow::solve(text, 16);
    let response = app.exchange("pow", "grace", text, &nonce).await;
    assert_eq!(problem_slug(response).await, invalid_token());

    let response = app.exchange("pow", "frank", text, &nonce).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let issued: Value = response.json().await.unwrap();
    let token = issued["purchase_token"].as_str().unwrap().to_owned();
    assert!(issued["expires_at"].is_string());
    let again = app.exchange("pow", "frank", text, &nonce).await;
    assert_eq!(
        problem_slug(again).await,
        token_used(),
        "a challenge is single-use"
    );

    let response = app
        .purchase_with_token("pow", "frank", "k1", 1, Some(&token))
        .await;
    assert!(outcome(response).await.is_ok());
    assert_eq!(app.sold("pow", 2).await, 1);
}

/// With `issue_cap_per_unit = 1` and 3 units, three tokens are issued and the fourth buyer
/// is told to come back (503 with Retry-After); nothing is sold by issuing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_issuance_is_capped_by_remaining_stock() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.tokens.require_purchase_token = true;
    settings.tokens.issue_cap_per_unit = 1.0;
    let app = spawn_app_with(settings).await;
    app.create_sale("capped", &live_sale(3, 2, 1, 1)).await;
    for buyer in ["h1", "h2", "h3"] {
        app.purchase_token("capped", buyer).await;
    }
    let (_, challenge) = app.challenge("capped", "h4").await;
    let response = app
        .exchange(
            "capped",
            "h4",
            challenge["challenge"].as_str().unwrap(),
            "0",
        )
        .await;
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        problem_slug(response).await,
        (StatusCode::SERVICE_UNAVAILABLE, "overloaded".to_owned())
    );
    assert_eq!(app.sold("capped", 2).await, 0);
}

/// Once the sale is known to be sold out, nobody gets a challenge or a token, not even a
/// buyer who holds units (a retry of an accepted purchase resends its own token).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sell_out_no_challenge_is_handed_out() {
    let redis = RedisServer::start();
    let app = token_app(RedisTarget::Single(redis.url())).await;
    app.create_sale("gone", &live_sale(1, 1, 1, 1)).await;
    let token = app.purchase_token("gone", "holder").await;
    let bought = app
        .purchase_with_token("gone", "holder", "k", 1, Some(&token))
        .await;
    assert!(outcome(bought).await.is_ok());
    let late = app.purchase_token("gone", "late").await;
    let response = app
        .purchase_with_token("gone", "late", "k", 1, Some(&late))
        .await;
    let sold_out = (StatusCode::CONFLICT, "sold-out".to_owned());
    assert_eq!(outcome(response).await, Err(sold_out.clone()));
    for buyer in ["holder", "late", "newcomer"] {
        let response = app
            .post_json("/api/v1/sales/gone/challenge", buyer, None, &json!({}))
            .await;
        assert_eq!(problem_slug(response).await, sold_out, "{buyer}");
    }
    // The holder's retry of its accepted purchase still gets its order.
    let retry = app
        .purchase_with_token("gone", "holder", "k", 1, Some(&token))
        .await;
    assert!(outcome(retry).await.is_ok());
}
