//! Operator controls: pause, resume and end through the admin API, obeyed by every gateway
//! instance sharing the Redis; the list of sales; named admin credentials; and the audit
//! trail every action leaves in the sale's operator view.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flashgate::testing::store::RedisTarget;
use reqwest::Response;
use serde_json::{Value, json};

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios::{self, Answer};

const ALICE_TOKEN: &str = "alice-admin-token-0123456789";

/// `POST /admin/v1/sales/{sale}/{verb}` with `token`.
async fn admin_post(app: &TestApp, sale: &str, verb: &str, token: &str) -> Response {
    app.client
        .post(format!("{}/admin/v1/sales/{sale}/{verb}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `POST /admin/v1/sales/{sale}/{verb}` as the default admin; must answer 200: the sale view.
async fn switch(app: &TestApp, sale: &str, verb: &str) -> Value {
    let response = admin_post(app, sale, verb, ADMIN_TOKEN).await;
    assert_eq!(response.status(), 200, "{verb} {sale}");
    response.json().await.unwrap()
}

/// Waits until `app` serves `sale` in `state` (its cached view, as purchases see it).
async fn await_state(app: &TestApp, sale: &str, state: &str) {
    let path = format!("/api/v1/sales/{sale}");
    let seen = eventually(Duration::from_secs(10), || async {
        let (_, body) = app.get_json(&path, None).await;
        (body["state"] == state).then_some(())
    })
    .await;
    assert!(seen.is_some(), "{} never showed {sale} {state}", app.base);
}

/// A purchase sent and its answer.
struct Sent {
    user: String,
    key: String,
    answer: Answer,
}

/// One purchase for each buyer `{prefix}{i}`, i < n: even ones through `a`, odd ones
/// through `b`, all at once.
async fn storm_both(a: &TestApp, b: &TestApp, sale: &str, prefix: &str, n: usize) -> Vec<Sent> {
    let requests = |parity: usize| -> Vec<(String, String, u32)> {
        (0..n)
            .filter(|i| i % 2 == parity)
            .map(|i| (format!("{prefix}{i}"), format!("{prefix}k{i}"), 1))
            .collect()
    };
    let (on_a, on_b) = tokio::join!(
        scenarios::storm(a, sale, requests(0)),
        scenarios::storm(b, sale, requests(1)),
    );
    let sent = requests(0).into_iter().zip(on_a);
    sent.chain(requests(1).into_iter().zip(on_b))
        .map(|((user, key, _), answer)| Sent { user, key, answer })
        .collect()
}

/// Waves of ten buyers (five through each instance), one every 20 ms, until `stop`.
async fn waves_until(a: &TestApp, b: &TestApp, stop: &AtomicBool) -> Vec<Sent> {
    let mut sent = Vec::new();
    for wave in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        sent.extend(storm_both(a, b, "kill", &format!("p{wave}-"), 10).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

/// Two instances on `target` sharing one database, with the default one-second refresh.
async fn two_instances(target: &RedisTarget) -> (TestApp, TestApp, tempfile::TempDir) {
    let db_dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(target);
    settings.database.url = format!("sqlite://{}/orders.db", db_dir.path().display());
    settings.stock.refresh_interval_ms = 1000;
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    (a, b, db_dir)
}

/// A storm of buyers on two instances; instance A pauses the sale in the middle of it. Once
/// both instances show the sale paused, no purchase is accepted anywhere (fresh buyers are
/// told `sale-paused`, retries of accepted purchases get their own order back) and no unit
/// moves. Resumed through B, the sale sells exactly its stock, and Redis, the 202 answers and
/// the database rows agree.
async fn pause_stops_every_instance_and_resume_sells_exactly_the_stock(target: RedisTarget) {
    const STOCK: u64 = 2000;
    const SHARDS: u32 = 4;
    let (a, b, _db) = two_instances(&target).await;
    a.create_sale("kill", &live_sale(STOCK, SHARDS, 1, 1)).await;
    await_state(&b, "kill", "live").await;

    // Buyers keep coming in small waves on both instances while A pauses the sale and until
    // both instances show it paused.
    let stop = AtomicBool::new(false);
    let pause_everywhere = async {
        let selling = eventually(Duration::from_secs(10), || async {
            (a.sold("kill", SHARDS).await >= 10).then_some(())
        });
        assert!(selling.await.is_some(), "the storm sold nothing");
        let view = switch(&a, "kill", "pause").await;
        assert_eq!(view["state"], "paused", "{view}");
        for app in [&a, &b] {
            await_state(app, "kill", "paused").await;
        }
        stop.store(true, Ordering::SeqCst);
    };
    let (before, ()) = tokio::join!(waves_until(&a, &b, &stop), pause_everywhere);
    let storm: Vec<Answer> = before.iter().map(|s| s.answer.clone()).collect();
    let counts = scenarios::tally(&storm);
    assert!(
        counts.keys().all(|k| k == "202" || k == "409 sale-paused"),
        "{counts:?}"
    );
    let sold_while_paused = a.sold("kill", SHARDS).await;
    for sent in storm_both(&a, &b, "kill", "d", 100).await {
        let answer = &sent.answer;
        assert_eq!(
            (answer.status, answer.slug.as_deref()),
            (409, Some("sale-paused")),
            "{:?}",
            answer.body
        );
    }
    replay_accepted(&a, &b, &before).await;
    assert_eq!(
        a.sold("kill", SHARDS).await,
        sold_while_paused,
        "units moved"
    );

    let view = switch(&b, "kill", "resume").await;
    assert_eq!(view["state"], "live", "{view}");
    await_state(&a, "kill", "live").await;
    let after = storm_both(&a, &b, "kill", "r", 2100).await;
    let answers: Vec<Answer> = before.into_iter().chain(after).map(|s| s.answer).collect();
    assert_exact_ledger(&a, &b, STOCK, SHARDS, &answers).await;
    let actions: Vec<String> = audit_trail(&b, "kill")
        .await
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(actions, ["resumed", "paused", "created"]);
}

/// Re-sends every accepted purchase of `sent` (same buyer, key and body), alternately
/// through `a` and `b`: each answers 202 with its original order.
async fn replay_accepted(a: &TestApp, b: &TestApp, sent: &[Sent]) {
    let accepted = sent.iter().filter(|s| s.answer.status == 202);
    for (i, original) in accepted.enumerate() {
        let app = if i % 2 == 0 { a } else { b };
        let retry = app.purchase("kill", &original.user, &original.key, 1).await;
        let retry = Answer::of(retry).await;
        assert_eq!(retry.status, 202, "{:?}", retry.body);
        assert_eq!(retry.order_id, original.answer.order_id);
    }
}

/// Every unit of the sale is sold, and the 202 answers, Redis and the database agree.
async fn assert_exact_ledger(
    a: &TestApp,
    b: &TestApp,
    stock: u64,
    shards: u32,
    answers: &[Answer],
) {
    let counts = scenarios::tally(answers);
    let accepted: HashSet<String> = answers.iter().filter_map(|x| x.order_id.clone()).collect();
    assert_eq!(accepted.len() as u64, stock, "{counts:?}");
    b.flush().await;
    let counters = a.drained_counters("kill", shards).await;
    assert_eq!(counters.iter().map(|c| c.sold).sum::<u64>(), stock);
    assert_eq!(counters.iter().map(|c| c.stock).sum::<u64>(), 0);
    let rows: HashSet<String> = a.db_orders("kill").await.into_iter().map(|r| r.0).collect();
    assert_eq!(rows, accepted, "database rows and 202 answers disagree");
    assert_eq!(a.reconcile("kill").await["difference"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pause_on_one_instance_stops_every_instance_and_a_resume_sells_exactly_the_stock() {
    let redis = RedisServer::start();
    pause_stops_every_instance_and_resume_sells_exactly_the_stock(RedisTarget::Single(redis.url()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_cluster_a_pause_stops_every_instance_and_a_resume_sells_exactly_the_stock() {
    let cluster = RedisCluster::start();
    pause_stops_every_instance_and_resume_sells_exactly_the_stock(RedisTarget::Cluster(
        cluster.urls(),
    ))
    .await;
}

/// A gateway with the default `admin.token` and a named one, `alice`.
async fn app_with_alice() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.admin.tokens = [("alice".to_owned(), ALICE_TOKEN.to_owned())].into();
    (redis, spawn_app_with(settings).await)
}

/// The `audit` of the sale's operator view, newest first: (actor, action, before, after).
async fn audit_trail(app: &TestApp, sale: &str) -> Vec<(String, String, Value, Value)> {
    let (status, body) = app
        .get_json(&format!("/admin/v1/sales/{sale}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    let entries = body["audit"].as_array().expect("an audit list").clone();
    for entry in &entries {
        let at = entry["at"].as_str().unwrap_or_default();
        let format = &time::format_description::well_known::Rfc3339;
        assert!(time::OffsetDateTime::parse(at, format).is_ok(), "{entry}");
    }
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    entries
        .into_iter()
        .map(|e| {
            (
                text(&e["actor"]),
                text(&e["action"]),
                e["before"].clone(),
                e["after"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_operator_action_is_audited_newest_first_under_the_credentials_name() {
    let (_redis, app) = app_with_alice().await;
    app.create_sale("audited", &live_sale(10, 2, 1, 1)).await;
    let epoch = |body: &Value| body["epoch"].as_u64().unwrap();
    let (_, created) = app
        .get_json("/admin/v1/sales/audited", Some(ADMIN_TOKEN))
        .await;
    for _ in 0..2 {
        let response = admin_post(&app, "audited", "pause", ALICE_TOKEN).await;
        assert_eq!(response.status(), 200);
    }
    let (_, paused) = app
        .get_json("/admin/v1/sales/audited", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(paused["state"], "paused");
    assert_eq!(
        epoch(&paused),
        epoch(&created) + 1,
        "a second pause bumped the epoch"
    );
    assert_eq!(
        admin_post(&app, "audited", "resume", ALICE_TOKEN)
            .await
            .status(),
        200
    );
    let ended = switch(&app, "audited", "end").await;
    assert_eq!(ended["state"], "ended");

    let trail = audit_trail(&app, "audited").await;
    let said: Vec<(&str, &str)> = trail.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        said,
        [
            ("admin", "ended"),
            ("alice", "resumed"),
            ("alice", "paused"),
            ("alice", "paused"),
            ("admin", "created"),
        ]
    );
    assert_eq!(
        (&trail[1].2, &trail[1].3),
        (&json!({"paused": true}), &json!({"paused": false}))
    );
    assert_eq!(trail[2].2, trail[2].3, "the second pause changed nothing");
    assert_eq!(
        (&trail[3].2, &trail[3].3),
        (&json!({"paused": false}), &json!({"paused": true}))
    );
    assert_eq!(trail[4].2, Value::Null);
    assert_eq!(trail[4].3["stock"], 10);
    assert_eq!(trail[0].2["ends_at"], created_ends_at(&trail[4].3));
    assert_eq!(trail[0].3["ends_at"], ended["ends_at"]);
}

fn created_ends_at(definition: &Value) -> Value {
    definition["ends_at"].clone()
}

#[tokio::test]
async fn ending_an_upcoming_sale_puts_its_whole_window_in_the_past_and_a_second_end_is_a_no_op() {
    let (_redis, app) = app_with_alice().await;
    let mut body = live_sale(10, 1, 1, 1);
    let now = time::OffsetDateTime::now_utc();
    let format = &time::format_description::well_known::Rfc3339;
    body["starts_at"] = json!((now + time::Duration::hours(1)).format(format).unwrap());
    body["ends_at"] = json!((now + time::Duration::hours(2)).format(format).unwrap());
    app.create_sale("later", &body).await;
    let ended = switch(&app, "later", "end").await;
    assert_eq!(ended["state"], "ended", "{ended}");
    let at =
        |field: &str| time::OffsetDateTime::parse(ended[field].as_str().unwrap(), format).unwrap();
    assert!(at("starts_at") < at("ends_at"), "{ended}");
    assert!(at("ends_at") <= time::OffsetDateTime::now_utc(), "{ended}");
    let (status, slug) = problem_slug(app.purchase("later", "bob", "k", 1).await).await;
    assert_eq!((status.as_u16(), slug.as_str()), (410, "sale-ended"));

    let again = switch(&app, "later", "end").await;
    assert_eq!(
        again["ends_at"], ended["ends_at"],
        "a second end moved the window"
    );
    let trail = audit_trail(&app, "later").await;
    assert_eq!(trail[0].1, "ended");
    assert_eq!(trail[0].2, trail[0].3, "the second end changed nothing");
}

#[tokio::test]
async fn switches_need_an_admin_credential_and_an_existing_sale() {
    let (_redis, app) = app_with_alice().await;
    app.create_sale("guarded", &live_sale(10, 1, 1, 1)).await;
    for verb in ["pause", "resume", "end"] {
        let buyer = app.token("mallory");
        for token in [buyer.as_str(), "alice-admin-token-012345678", ""] {
            let (status, slug) = problem_slug(admin_post(&app, "guarded", verb, token).await).await;
            assert_eq!(
                (status.as_u16(), slug.as_str()),
                (401, "unauthorized"),
                "{verb}"
            );
        }
        let (status, slug) =
            problem_slug(admin_post(&app, "nosuch", verb, ALICE_TOKEN).await).await;
        assert_eq!(
            (status.as_u16(), slug.as_str()),
            (404, "not-found"),
            "{verb}"
        );
    }
    let (status, body) = app.get_json("/admin/v1/sales", None).await;
    assert_eq!(
        (status.as_u16(), &body["type"]),
        (401, &json!("/problems/unauthorized"))
    );
    let (_, view) = app.get_json("/api/v1/sales/guarded", None).await;
    assert_eq!(view["state"], "live", "a refused switch changed the sale");
}

#[tokio::test]
async fn the_list_shows_every_sale_with_its_state_and_names_an_unreadable_one() {
    let (_redis, app) = app_with_alice().await;
    app.create_sale("a-live", &live_sale(10, 2, 1, 1)).await;
    app.create_sale("b-paused", &live_sale(7, 3, 1, 1)).await;
    switch(&app, "b-paused", "pause").await;
    assert_eq!(app.purchase("a-live", "bob", "k", 1).await.status(), 202);
    let sale = flashgate::testing::domain::SaleId::parse("c-broken").unwrap();
    let mut conn = app.redis.clone();
    redis::cmd("HSET")
        .arg(app.keys.sale_meta(&sale))
        .arg(&[("def", "{not json"), ("epoch", "1")])
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("SADD")
        .arg(app.keys.sale_index())
        .arg("c-broken")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let (status, body) = app.get_json("/admin/v1/sales", Some(ALICE_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let sales = body["sales"].as_array().unwrap();
    let line = |i: usize, field: &str| sales[i][field].clone();
    assert_eq!(sales.len(), 3, "{body}");
    let expected = [
        ("a-live", "live", 10, 9, 2),
        ("b-paused", "paused", 7, 7, 3),
    ];
    for (i, (id, state, total, remaining, shards)) in expected.into_iter().enumerate() {
        assert_eq!(line(i, "sale_id"), id);
        assert_eq!(line(i, "state"), state);
        assert_eq!(line(i, "stock_total"), total);
        assert_eq!(line(i, "remaining"), remaining);
        assert_eq!(line(i, "shards"), shards);
    }
    assert_eq!(
        (line(2, "sale_id"), line(2, "state")),
        (json!("c-broken"), json!("unreadable"))
    );
    assert!(
        line(2, "error").as_str().unwrap().contains("corrupt"),
        "{body}"
    );
}

#[tokio::test]
async fn a_purchase_token_stays_valid_across_a_pause_and_a_resume() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.tokens.require_purchase_token = true;
    let app = spawn_app_with(settings).await;
    app.create_sale("tokened", &live_sale(10, 2, 1, 1)).await;
    let token = app.purchase_token("tokened", "carol").await;
    switch(&app, "tokened", "pause").await;
    let refused = app
        .purchase_with_token("tokened", "carol", "k1", 1, Some(&token))
        .await;
    let (status, slug) = problem_slug(refused).await;
    assert_eq!((status.as_u16(), slug.as_str()), (409, "sale-paused"));
    switch(&app, "tokened", "resume").await;
    let bought = app
        .purchase_with_token("tokened", "carol", "k1", 1, Some(&token))
        .await;
    assert_eq!(bought.status(), 202);
}
