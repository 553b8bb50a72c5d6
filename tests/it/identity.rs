//! Buyer identity as shops have it: RS256 and ES256 tokens checked against the login
//! service's JWKS (a file, or a URL served here by a tiny HTTP server), key rotation by
//! `kid`, `iss`/`aud`/`nbf`, and subjects such as `auth0|…` or e-mail addresses buying as
//! one buyer each.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use flashgate::testing::config::Settings;
use flashgate::testing::store::RedisTarget;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Response;
use serde_json::{Value, json};

use crate::support::app::{
    JWT_SECRET, TestApp, live_sale, problem_slug, spawn_app_with, test_settings,
};
use crate::support::redis::RedisServer;

const ISSUER: &str = "https://login.shop.example/";
const AUDIENCE: &str = "flashgate";

/// A private key of the shop's login service, with its `kid`.
struct LoginKey {
    kid: &'static str,
    alg: Algorithm,
    key: EncodingKey,
}

impl LoginKey {
    fn rsa(kid: &'static str, file: &str) -> Self {
        let key = EncodingKey::from_rsa_pem(&fixture(file)).unwrap();
        Self {
            kid,
            alg: Algorithm::RS256,
            key,
        }
    }

    fn ec(kid: &'static str, file: &str) -> Self {
        let key = EncodingKey::from_ec_pem(&fixture(file)).unwrap();
        Self {
            kid,
            alg: Algorithm::ES256,
            key,
        }
    }

    /// A token for `sub` valid for an hour, issued for this gateway, signed with this key.
    fn token(&self, sub: &str) -> String {
        self.token_with(sub, self.kid, json!({}))
    }

    /// A token for `sub`, its header naming `kid`, with `extra` claims over the usual ones.
    fn token_with(&self, sub: &str, kid: &str, extra: Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({
            "sub": sub, "exp": now + 3600, "nbf": now - 5, "iss": ISSUER, "aud": [AUDIENCE],
        });
        for (field, value) in extra.as_object().unwrap() {
            claims[field] = value.clone();
        }
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }
}

fn fixture(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    std::fs::read(path.join(file)).unwrap()
}

/// The JWKS document publishing `keys`.
fn jwks(keys: &[&LoginKey]) -> String {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    };
    serde_json::to_string(&set).unwrap()
}

/// Test settings that check `iss` and `aud`, with HS256 off: buyer tokens come from the
/// JWKS alone.
fn jwks_settings(redis: &RedisServer) -> Settings {
    let mut s = test_settings(&RedisTarget::Single(redis.url()));
    s.auth.jwt_secret = String::new();
    s.tokens.secret = "purchase-token-secret-0123456789".into();
    s.auth.issuer = ISSUER.into();
    s.auth.audience = AUDIENCE.into();
    s
}

/// `POST …/purchase` of one unit with `bearer`.
async fn buy(app: &TestApp, sale: &str, bearer: &str, key: &str) -> Response {
    app.client
        .post(format!("{}/api/v1/sales/{sale}/purchase", app.base))
        .bearer_auth(bearer)
        .header("Idempotency-Key", key)
        .json(&json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_with_rs256_and_es256_tokens_from_a_jwks_file_buy() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec) = (
        LoginKey::rsa("rsa-a", "rsa-a.pem"),
        LoginKey::ec("ec-a", "ec-a.pem"),
    );
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&rsa, &ec])).unwrap();
    let mut settings = jwks_settings(&redis);
    settings.auth.jwks_file = file.display().to_string();
    let app = spawn_app_with(settings).await;
    app.create_sale("shop", &live_sale(10, 2, 1, 1)).await;

    for (key, buyer) in [(&rsa, "rita"), (&ec, "eve")] {
        let answer = buy(&app, "shop", &key.token(buyer), "k").await;
        assert_eq!(
            answer.status(),
            202,
            "{}: {}",
            key.kid,
            answer.text().await.unwrap()
        );
    }
    // No HS256 secret is configured: an HS256 token is refused, whoever signed it.
    let hs256 = app.token("harry");
    assert_eq!(
        problem_slug(buy(&app, "shop", &hs256, "k").await).await.1,
        "unauthorized"
    );
    assert_eq!(app.sold("shop", 2).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_issuer_or_audience_or_not_yet_valid_are_refused() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rsa = LoginKey::rsa("rsa-a", "rsa-a.pem");
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&rsa])).unwrap();
    let mut settings = jwks_settings(&redis);
    settings.auth.jwks_file = file.display().to_string();
    let app = spawn_app_with(settings).await;
    app.create_sale("shop", &live_sale(10, 2, 1, 1)).await;

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for extra in [
        json!({ "iss": "https://evil.example/" }),
        json!({ "aud": "another-api" }),
        json!({ "nbf": now + 3600 }),
        json!({ "exp": now - 3600 }),
    ] {
        let token = rsa.token_with("rita", "rsa-a", extra.clone());
        let (status, slug) = problem_slug(buy(&app, "shop", &token, "k").await).await;
        assert_eq!(
            (status.as_u16(), slug.as_str()),
            (401, "unauthorized"),
            "{extra}"
        );
    }
    assert_eq!(app.sold("shop", 2).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotated_into_the_jwks_file_works_from_its_first_token() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        LoginKey::rsa("2026-11", "rsa-a.pem"),
        LoginKey::rsa("2026-12", "rsa-b.pem"),
    );
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&old])).unwrap();
    let mut settings = jwks_settings(&redis);
    settings.auth.jwks_file = file.display().to_string();
    let app = spawn_app_with(settings).await;
    app.create_sale("shop", &live_sale(10, 2, 1, 1)).await;
    assert_eq!(
        buy(&app, "shop", &old.token("before"), "k").await.status(),
        202
    );

    // The login service rotates: the new key is published, the old one withdrawn.
    std::fs::write(&file, jwks(&[&new])).unwrap();
    let answer = buy(&app, "shop", &new.token("after"), "k").await;
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    let withdrawn = buy(&app, "shop", &old.token("late"), "k").await;
    assert_eq!(problem_slug(withdrawn).await.1, "unauthorized");
}

/// A login service's JWKS endpoint: serves the current document and counts fetches.
#[derive(Default)]
struct JwksEndpoint {
    document: Mutex<String>,
    fetches: AtomicUsize,
}

impl JwksEndpoint {
    /// Serves on a free loopback port: the JWKS URL.
    async fn start(self: &Arc<Self>) -> String {
        async fn serve(State(endpoint): State<Arc<JwksEndpoint>>) -> String {
            endpoint.fetches.fetch_add(1, Ordering::SeqCst);
            endpoint.document.lock().unwrap().clone()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn publish(&self, keys: &[&LoginKey]) {
        *self.document.lock().unwrap() = jwks(keys);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_served_over_http_rotate_and_made_up_kids_cost_at_most_one_fetch_per_interval() {
    let redis = RedisServer::start();
    let (first, second) = (
        LoginKey::ec("ec-a", "ec-a.pem"),
        LoginKey::rsa("rsa-b", "rsa-b.pem"),
    );
    let endpoint = Arc::new(JwksEndpoint::default());
    endpoint.publish(&[&first]);
    let mut settings = jwks_settings(&redis);
    settings.auth.jwks_url = endpoint.start().await;
    settings.auth.jwks_min_refresh_s = 3600;
    let app = spawn_app_with(settings).await;
    app.create_sale("shop", &live_sale(100, 2, 1, 1)).await;
    assert_eq!(endpoint.fetches(), 1, "loaded once at start");
    assert_eq!(
        buy(&app, "shop", &first.token("one"), "k").await.status(),
        202
    );

    endpoint.publish(&[&first, &second]);
    let answer = buy(&app, "shop", &second.token("two"), "k").await;
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    assert_eq!(endpoint.fetches(), 2, "one early refresh for the new kid");

    let forged: Vec<_> = (0..30)
        .map(|i| second.token_with(&format!("bot{i}"), &format!("forged-{i}"), json!({})))
        .collect();
    let answers = futures::future::join_all(forged.iter().map(|t| buy(&app, "shop", t, "k"))).await;
    for answer in answers {
        assert_eq!(problem_slug(answer).await.1, "unauthorized");
    }
    assert_eq!(
        endpoint.fetches(),
        2,
        "made-up kids fetch nothing more this interval"
    );

    // The scheduled refresh picks up a withdrawal.
    endpoint.publish(&[&second]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    app.state.jwt.jwks().unwrap().refresh(now).await;
    assert_eq!(endpoint.fetches(), 3);
    let withdrawn = buy(&app, "shop", &first.token("three"), "k").await;
    assert_eq!(problem_slug(withdrawn).await.1, "unauthorized");
    assert_eq!(app.sold("shop", 2).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_subject_and_an_email_each_buy_as_one_buyer_up_to_the_limit() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (rsa, ec) = (
        LoginKey::rsa("rsa-a", "rsa-a.pem"),
        LoginKey::ec("ec-a", "ec-a.pem"),
    );
    let file = dir.path().join("jwks.json");
    std::fs::write(&file, jwks(&[&rsa, &ec])).unwrap();
    let mut settings = jwks_settings(&redis);
    settings.auth.jwks_file = file.display().to_string();
    // HS256 too, so the same subject can come signed three ways.
    settings.auth.jwt_secret = JWT_SECRET.into();
    let hs = LoginKey {
        kid: "shared-secret",
        alg: Algorithm::HS256,
        key: EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    };
    let app = spawn_app_with(settings).await;
    app.create_sale("shop", &live_sale(10, 2, 1, 1)).await;

    for sub in [
        "auth0|5f1e9a7c3b2d4e0012345678",
        "alice.buyer+sale@example.com",
    ] {
        let first = buy(&app, "shop", &rsa.token(sub), "first").await;
        assert_eq!(first.status(), 202, "{sub}");
        let order: Value = first.json().await.unwrap();
        // The same subject with another key and another request is the same buyer.
        let again = buy(&app, "shop", &ec.token(sub), "second").await;
        assert_eq!(problem_slug(again).await.1, "limit-reached", "{sub}");
        let third = buy(&app, "shop", &hs.token(sub), "third").await;
        assert_eq!(problem_slug(third).await.1, "limit-reached", "{sub}");
        // And owns the order.
        let path = format!("/api/v1/orders/{}", order["order_id"].as_str().unwrap());
        let (status, mine) = app.get_json(&path, Some(&ec.token(sub))).await;
        assert_eq!(status, 200, "{mine}");
    }
    assert_eq!(app.sold("shop", 2).await, 2);
    app.flush().await;
    let buyers: Vec<String> = app
        .db_orders("shop")
        .await
        .into_iter()
        .map(|o| o.1)
        .collect();
    assert_eq!(buyers.len(), 2);
    assert!(
        buyers.iter().all(|b| b.len() == 44 && b.starts_with('h')),
        "{buyers:?}"
    );
}
