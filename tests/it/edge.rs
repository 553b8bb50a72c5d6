//! Edge protection against a real Redis: the in-flight cap on the purchase path.

use std::process::Command;
use std::time::Duration;

use flashgate::testing::config::LimitSettings;
use flashgate::testing::store::RedisTarget;

use crate::support::app::{live_sale, spawn_app_with, test_settings};
use crate::support::redis::RedisServer;
use crate::support::scenarios;

fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill").args([sig, &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {sig} failed");
}

/// 500 concurrent purchases against a cap of 64, with Redis frozen so that every admitted
/// handler stays busy: exactly 64 handlers ever run at once, the other 436 requests are
/// shed with 503 without waiting, and the 64 finish normally once Redis thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_cap_bounds_concurrent_purchase_handlers_and_sheds_the_rest() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.http.max_in_flight = 64;
    let app = spawn_app_with(settings).await;
    app.create_sale("cap", &live_sale(10_000, 8, 1, 1)).await;
    let pid = redis.pid().expect("redis runs");
    signal(pid, "-STOP");
    let requests = (0..500)
        .map(|i| (format!("b{i}"), format!("k{i}"), 1))
        .collect();
    let storm = scenarios::storm(&app, "cap", requests);
    let thaw = async {
        // Thaw once every request not admitted has been shed (bounded wait).
        for _ in 0..600 {
            if app.state.in_flight.shed() >= 436 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(pid, "-CONT");
    };
    let (answers, ()) = tokio::join!(storm, thaw);
    let shed = answers
        .iter()
        .filter(|a| a.body["detail"] == "too many purchases in flight")
        .count();
    assert_eq!(
        app.state.in_flight.peak(),
        64,
        "{:?}",
        scenarios::tally(&answers)
    );
    assert_eq!(shed, 436, "{:?}", scenarios::tally(&answers));
    assert_eq!(app.state.in_flight.shed(), 436);
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(accepted, 64, "{:?}", scenarios::tally(&answers));
    assert_eq!(app.sold("cap", 8).await, 64, "a shed request took stock");
}

/// Checks a 429 answer: problem type, scope, and valid `Retry-After`, `RateLimit` and
/// `RateLimit-Policy` headers for a limit of `burst` requests.
fn assert_rate_limited(
    answer: &reqwest::header::HeaderMap,
    body: &serde_json::Value,
    scope: &str,
    burst: u32,
) {
    assert_eq!(body["type"], "/problems/rate-limited", "{body}");
    assert_eq!(body["scope"], scope);
    let retry_after: u64 = answer["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let ratelimit = answer["ratelimit"].to_str().unwrap();
    assert_eq!(
        ratelimit,
        format!("limit={burst}, remaining=0, reset={retry_after}")
    );
    let policy = answer["ratelimit-policy"].to_str().unwrap();
    assert!(policy.starts_with(&format!("{burst};w=")), "{policy}");
}

/// Sends purchases one after another; returns (status, headers, body) of each.
async fn sequential(
    app: &crate::support::app::TestApp,
    sale: &str,
    buyers: &[&str],
) -> Vec<(u16, reqwest::header::HeaderMap, serde_json::Value)> {
    let mut answers = Vec::new();
    for (i, buyer) in buyers.iter().enumerate() {
        let response = app.purchase(sale, buyer, &format!("k{i}"), 1).await;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        answers.push((status, headers, response.json().await.unwrap()));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_over_the_rate_gets_429_with_headers_and_takes_nothing() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.limits.user = LimitSettings {
        rate_per_sec: 1,
        burst: 2,
    };
    let app = spawn_app_with(settings).await;
    app.create_sale("rl", &live_sale(100, 4, 10, 1)).await;
    let answers = sequential(&app, "rl", &["eager"; 6]).await;
    let accepted = answers.iter().filter(|(s, _, _)| *s == 202).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(accepted >= 2, "the burst must pass");
    assert!(
        !limited.is_empty(),
        "six requests in a moment must exceed 1/s with a burst of 2"
    );
    assert_eq!(accepted + limited.len(), 6);
    for (_, headers, body) in limited {
        assert_rate_limited(headers, body, "user", 2);
    }
    assert_eq!(app.sold("rl", 4).await, accepted as u64, "a 429 took stock");
    // Another buyer is not affected.
    assert_eq!(app.purchase("rl", "patient", "p", 1).await.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_client_ip_over_its_rate_gets_429_whoever_the_buyer() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.limits.ip = LimitSettings {
        rate_per_sec: 1,
        burst: 3,
    };
    let app = spawn_app_with(settings).await;
    app.create_sale("ip", &live_sale(100, 4, 1, 1)).await;
    let buyers = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let answers = sequential(&app, "ip", &buyers).await;
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!limited.is_empty());
    for (_, headers, body) in &limited {
        assert_rate_limited(headers, body, "ip", 3);
    }
    assert_eq!(
        app.sold("ip", 4).await,
        (buyers.len() - limited.len()) as u64
    );
}

/// After sell-out, sold-out answers come from the shortcut in front of the router; the
/// per-IP limit still applies there, once per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_ip_limit_still_applies_after_sell_out() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.limits.ip = LimitSettings {
        rate_per_sec: 1,
        burst: 4,
    };
    let app = spawn_app_with(settings).await;
    app.create_sale("ip-gone", &live_sale(1, 1, 1, 1)).await;
    let buyers = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let answers = sequential(&app, "ip-gone", &buyers).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _, _)| *s).collect();
    // One unit, then "sold out" (b marks the sale sold out; c and d meet the shortcut); the
    // burst of 4 is then spent, and the rest are refused by IP (or, as the allowance refills
    // at 1/s, answered "sold out" again).
    assert_eq!(&statuses[..4], [202, 409, 409, 409], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    for (status, headers, body) in &answers[4..] {
        match status {
            429 => assert_rate_limited(headers, body, "ip", 4),
            _ => assert_eq!(body["type"], "/problems/sold-out", "{body}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_not_the_proxy() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.limits.ip = LimitSettings {
        rate_per_sec: 1,
        burst: 2,
    };
    settings.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let app = spawn_app_with(settings).await;
    app.create_sale("xff", &live_sale(100, 4, 1, 1)).await;
    let send = |buyer: &'static str, client: &'static str| {
        app.client
            .post(format!("{}/api/v1/sales/xff/purchase", app.base))
            .bearer_auth(app.token(buyer))
            .header("Idempotency-Key", "k")
            .header("X-Forwarded-For", format!("{client}, 127.0.0.1"))
            .json(&serde_json::json!({ "quantity": 1 }))
            .send()
    };
    let mut from_one_client = Vec::new();
    for buyer in ["a", "b", "c", "d", "e"] {
        from_one_client.push(send(buyer, "198.51.100.7").await.unwrap().status().as_u16());
    }
    assert!(from_one_client.contains(&429), "{from_one_client:?}");
    // Another client behind the same proxy has its own allowance.
    assert_eq!(send("f", "203.0.113.9").await.unwrap().status(), 202);
}

/// Two gateway instances sharing one Redis (and one database), with the Redis-backed
/// per-sale limit at 1/s and a burst of 40: 300 distinct buyers, half sent to each
/// instance, are admitted exactly 40 times together; every other answer is a 429 of the
/// sale scope, and only admitted purchases took stock. Redis is frozen until all 300 wait
/// on it, so it then judges them back to back, far within the second after which the
/// limit would let one more through: the count does not depend on how long the storm lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_together_admit_exactly_the_shared_sale_limits_burst() {
    const BURST: u32 = 40;
    let redis = RedisServer::start();
    let db_dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = format!("sqlite://{}/orders.db", db_dir.path().display());
    settings.limits.sale_shared = LimitSettings {
        rate_per_sec: 1,
        burst: BURST,
    };
    let first = spawn_app_with(settings.clone()).await;
    let second = spawn_app_with(settings).await;
    first
        .create_sale("shared", &live_sale(10_000, 8, 1, 1))
        .await;
    // Both instances know the sale, and Redis knows the limit's script (a purchase of
    // another sale loads it), so a purchase of "shared" first waits on Redis at the limit.
    first.create_sale("warm", &live_sale(10, 1, 1, 1)).await;
    for app in [&first, &second] {
        assert_eq!(app.get_json("/api/v1/sales/shared", None).await.0, 200);
        assert_eq!(app.purchase("warm", "warm", "warm", 1).await.status(), 202);
    }

    let pid = redis.pid().expect("redis runs");
    signal(pid, "-STOP");
    let requests = |from: usize| -> Vec<(String, String, u32)> {
        (from..from + 150)
            .map(|i| (format!("b{i}"), format!("k{i}"), 1))
            .collect()
    };
    let thaw = async {
        let mut waiting = 0;
        for _ in 0..1200 {
            waiting = first.state.in_flight.running() + second.state.in_flight.running();
            if waiting == 300 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(pid, "-CONT");
        waiting
    };
    let (a, b, waiting) = tokio::join!(
        scenarios::storm(&first, "shared", requests(0)),
        scenarios::storm(&second, "shared", requests(150)),
        thaw,
    );
    assert_eq!(waiting, 300, "not every purchase reached the frozen Redis");
    let answers: Vec<_> = a.into_iter().chain(b).collect();
    let admitted = answers.iter().filter(|a| a.status == 202).count() as u64;
    let limited: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        admitted,
        u64::from(BURST),
        "{:?}",
        scenarios::tally(&answers)
    );
    assert_eq!(
        limited.len(),
        300 - BURST as usize,
        "{:?}",
        scenarios::tally(&answers)
    );
    for answer in &limited {
        assert_eq!(answer.body["scope"], "sale");
        assert_eq!(answer.slug.as_deref(), Some("rate-limited"));
    }
    assert_eq!(first.sold("shared", 8).await, admitted, "a 429 took stock");
}

/// The 429 of the shared limit carries the same headers as the local ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shared_sale_limit_answers_with_rate_limit_headers() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.limits.sale_shared = LimitSettings {
        rate_per_sec: 1,
        burst: 2,
    };
    let app = spawn_app_with(settings).await;
    app.create_sale("hdr", &live_sale(100, 2, 1, 1)).await;
    let answers = sequential(&app, "hdr", &["a", "b", "c", "d"]).await;
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(
        !limited.is_empty(),
        "four at once exceed a burst of 2 at 1/s"
    );
    for (_, headers, body) in limited {
        assert_rate_limited(headers, body, "sale", 2);
    }
}
