//! Operator controls through the admin API: pause, resume and end (their spread over several
//! instances is `pause.rs`), the list of sales, named admin credentials, and the audit trail
//! every action leaves in the sale's operator view.

use flashgate::testing::store::RedisTarget;
use reqwest::Response;
use serde_json::{Value, json};

use crate::support::app::{
    ADMIN_TOKEN, TestApp, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::redis::RedisServer;

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
pub async fn switch(app: &TestApp, sale: &str, verb: &str) -> Value {
    let response = admin_post(app, sale, verb, ADMIN_TOKEN).await;
    assert_eq!(response.status(), 200, "{verb} {sale}");
    response.json().await.unwrap()
}

/// A gateway with the default `admin.token` and a named one, `alice`.
async fn app_with_alice() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.admin.tokens = [("alice".to_owned(), ALICE_TOKEN.to_owned())].into();
    (redis, spawn_app_with(settings).await)
}

/// The `audit` of the sale's operator view, newest first: (actor, action, before, after).
pub async fn audit_trail(app: &TestApp, sale: &str) -> Vec<(String, String, Value, Value)> {
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
    assert_eq!(trail[0].2["ends_at"], trail[4].3["ends_at"]);
    assert_eq!(trail[0].3["ends_at"], ended["ends_at"]);
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
