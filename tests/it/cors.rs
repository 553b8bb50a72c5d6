//! CORS for browser frontends on another origin (`http.cors_origins`): preflights answered
//! for configured origins only, and nothing at all when none is configured.

use flashgate::testing::domain::Origin;
use reqwest::{Method, Response, StatusCode};

use crate::support::app::{TestApp, live_sale, problem_slug, spawn_app_with, test_settings};
use crate::support::redis::RedisServer;

const SHOP: &str = "https://shop.example";

async fn app_with_origins(redis: &RedisServer, origins: &[&str]) -> TestApp {
    let mut settings = test_settings(&flashgate::testing::store::RedisTarget::Single(redis.url()));
    settings.http.cors_origins = origins.iter().map(|o| Origin::parse(o).unwrap()).collect();
    spawn_app_with(settings).await
}

/// A browser's preflight for a purchase from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(
            Method::OPTIONS,
            format!("{}/api/v1/sales/drop/purchase", app.base),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,idempotency-key,x-request-id",
        )
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_origin_gets_its_preflight_answered_with_the_api_headers() {
    let redis = RedisServer::start();
    let app = app_with_origins(&redis, &[SHOP, "http://localhost:3000"]).await;
    let response = preflight(&app, SHOP).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(SHOP));
    let methods = header(&response, "access-control-allow-methods").unwrap();
    for method in ["GET", "POST", "PUT", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-request-id",
    ] {
        assert!(headers.contains(name), "{headers}");
    }
    assert!(header(&response, "access-control-max-age").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_a_configured_origin_carry_allow_origin_and_expose_retry_after() {
    let redis = RedisServer::start();
    let app = app_with_origins(&redis, &[SHOP]).await;
    app.create_sale("drop", &live_sale(1, 1, 1, 1)).await;
    let response = app
        .client
        .get(format!("{}/api/v1/sales/drop", app.base))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), Some(SHOP));
    let exposed = header(&response, "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after") && exposed.contains("ratelimit"));
    // A refusal is readable by the frontend too.
    let refused = app
        .client
        .post(format!("{}/api/v1/sales/drop/purchase", app.base))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&refused, "access-control-allow-origin"), Some(SHOP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_origin_gets_no_allow_origin() {
    let redis = RedisServer::start();
    let app = app_with_origins(&redis, &[SHOP]).await;
    let response = preflight(&app, "https://evil.example").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let response = app
        .client
        .get(format!("{}/health/live", app.base))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_origins_there_are_no_cors_headers_and_no_preflight() {
    let redis = RedisServer::start();
    let app = app_with_origins(&redis, &[]).await;
    let response = preflight(&app, SHOP).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let response = app
        .client
        .get(format!("{}/health/live", app.base))
        .header("Origin", SHOP)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(header(&response, "vary"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sold_out_answer_from_memory_carries_allow_origin_too() {
    let redis = RedisServer::start();
    let app = app_with_origins(&redis, &[SHOP]).await;
    app.create_sale("drop", &live_sale(1, 1, 1, 1)).await;
    let bought = app.purchase("drop", "first", "k1", 1).await;
    assert_eq!(bought.status(), StatusCode::ACCEPTED);
    let refused = app.purchase("drop", "second", "k2", 1).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    // From now on a buyer who holds nothing is answered by the sold-out shortcut, in front
    // of the router.
    app.await_sold_out_holders("drop").await;
    let response = app
        .client
        .post(format!("{}/api/v1/sales/drop/purchase", app.base))
        .bearer_auth(app.token("third"))
        .header("Idempotency-Key", "k3")
        .header("Origin", SHOP)
        .json(&serde_json::json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), Some(SHOP));
    let (status, slug) = problem_slug(response).await;
    assert_eq!((status, slug.as_str()), (StatusCode::CONFLICT, "sold-out"));
}
