//! `docs/pow.js`, the proof-of-work snippet for browser frontends, run in headless Chromium
//! from a page on another origin against a running gateway: it fetches a challenge, solves
//! it and exchanges the nonce for a purchase token (through CORS), and the token buys.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use flashgate::testing::domain::Origin;
use flashgate::testing::store::RedisTarget;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::support::app::{live_sale, spawn_app_with, test_settings};
use crate::support::browser;
use crate::support::redis::RedisServer;

/// The snippet, as shipped.
const POW_JS: &str = include_str!("../../docs/pow.js");

/// A frontend page: gets a purchase token with the snippet and shows the outcome.
fn page(gateway: &str, sale: &str, jwt: &str) -> String {
    format!(
        r#"<!doctype html><html><head><script src="/pow.js"></script></head><body>
<pre id="outcome">pending</pre>
<script>
flashgatePow.purchaseToken("{gateway}", "{sale}", "{jwt}")
  .then(token => {{ document.getElementById("outcome").textContent = JSON.stringify(token); }})
  .catch(error => {{
    document.getElementById("outcome").textContent =
      JSON.stringify({{ error: String(error), problem: error.problem || null }});
  }});
</script></body></html>"#
    )
}

/// A free loopback origin for the frontend: its page needs the gateway's address and the
/// gateway's CORS settings need the page's origin, so the port is picked first.
async fn free_origin() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Serves `html` at `/` and the snippet at `/pow.js` at `origin`.
async fn serve_frontend(origin: &str, html: String) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(origin.trim_start_matches("http://"))
        .await
        .expect("the frontend's port is still free");
    let router = Router::new()
        .route("/", get(move || async move { Html(html) }))
        .route(
            "/pow.js",
            get(|| async { ([("content-type", "text/javascript")], POW_JS) }),
        );
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    })
}

/// The text of `<pre id="outcome">` in a dumped DOM.
fn outcome(dom: &str) -> &str {
    let start = dom
        .find("<pre id=\"outcome\">")
        .expect("the page has its outcome")
        + 18;
    let end = start + dom[start..].find("</pre>").unwrap();
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_snippet_solves_a_real_challenge_and_the_token_buys() {
    let redis = RedisServer::start();
    let frontend_origin = free_origin().await;
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.tokens.require_purchase_token = true;
    settings.http.cors_origins = vec![Origin::parse(&frontend_origin).unwrap()];
    let app = spawn_app_with(settings).await;
    let mut sale = live_sale(5, 1, 1, 1);
    sale["pow_difficulty"] = 14.into();
    app.create_sale("drop", &sale).await;
    let html = page(&app.base, "drop", &app.token("browser-buyer"));
    let frontend = serve_frontend(&frontend_origin, html).await;

    let dom = browser::dom_of(&format!("{frontend_origin}/"));
    frontend.abort();
    let answer: Value = serde_json::from_str(&html_unescape(outcome(&dom)))
        .unwrap_or_else(|e| panic!("the page shows no JSON ({e}): {dom}"));
    let token = answer["purchase_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the snippet got no token: {answer}"));
    let response = app
        .purchase_with_token("drop", "browser-buyer", "browser-key-1", 1, Some(token))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// The few entities Chromium writes in a `<pre>`'s text.
fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snippet_reports_the_gateways_problem_when_it_refuses() {
    let redis = RedisServer::start();
    let frontend_origin = free_origin().await;
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.http.cors_origins = vec![Origin::parse(&frontend_origin).unwrap()];
    let app = spawn_app_with(settings).await;
    let html = page(&app.base, "no-such-sale", &app.token("browser-buyer"));
    let frontend = serve_frontend(&frontend_origin, html).await;
    let dom = browser::dom_of(&format!("{frontend_origin}/"));
    frontend.abort();
    let answer: Value = serde_json::from_str(&html_unescape(outcome(&dom))).unwrap();
    assert_eq!(answer["problem"]["type"], "/problems/not-found", "{answer}");
}
