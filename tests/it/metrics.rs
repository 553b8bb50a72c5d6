//! What an operator sees: `GET /metrics` after (and during) a real storm passes
//! `promtool check metrics` and agrees exactly with the answers buyers got; the stock
//! gauges agree with the admin view; request ids come back in `X-Request-Id`, in problem
//! bodies and in JSON log lines; the Grafana dashboard queries only what the gateway
//! exports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flashgate::testing::store::RedisTarget;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, spawn_app_with, spawn_single, test_settings,
};
use crate::support::db::TestDb;
use crate::support::process::GatewayProcess;
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios::{self, tally};

const PURCHASE_ROUTE: &str = "/api/v1/sales/{sale_id}/purchase";

/// One sample line of a scrape.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(parse_sample)
            .collect();
        Self { text, samples }
    }

    /// The sum of the samples of `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    }

    fn names(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.name.as_str()).collect()
    }
}

/// `name{k="v",...} value` (label values may hold escaped quotes and braces).
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().expect("labels end with }");
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars.next().expect("a value ends with a quote").1 {
                            '\\' => value.push(chars.next().unwrap().1),
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("value of {line}"));
    Sample {
        name,
        labels,
        value,
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(response.text().await.unwrap())
}

/// `promtool check metrics` on `text`: fails the test on any problem it reports, and when
/// promtool is missing (scripts/install-deps.sh installs it).
fn promtool_passes(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it with scripts/install-deps.sh")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn buyers(prefix: &str, n: usize) -> Vec<(String, String, u32)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}"), format!("key-{i}"), 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_mid_storm_passes_promtool_and_the_counts_agree_with_the_answers() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("metered", &live_sale(150, 4, 1, 1)).await;
    let storming = AtomicBool::new(true);
    let (answers, mid_storm) = tokio::join!(
        async {
            let answers = scenarios::storm(&app, "metered", buyers("b", 400)).await;
            storming.store(false, Ordering::Relaxed);
            answers
        },
        async {
            let mut scrapes = vec![scrape(&app).await];
            while storming.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                scrapes.push(scrape(&app).await);
            }
            scrapes
        }
    );
    for taken in &mid_storm {
        promtool_passes(&taken.text);
    }
    let counts = tally(&answers);
    let accepted = counts.get("202").copied().unwrap_or(0);
    let sold_out = counts.get("409 sold-out").copied().unwrap_or(0);
    assert_eq!((accepted, sold_out), (150, 250), "{counts:?}");
    app.flush().await;

    let after = scrape(&app).await;
    promtool_passes(&after.text);
    let purchases = |outcome| {
        after.sum(
            "flashgate_purchases_total",
            &[("sale", "metered"), ("outcome", outcome)],
        )
    };
    assert_eq!(purchases("accepted"), 150.0, "{}", after.text);
    assert_eq!(purchases("sold-out"), 250.0, "{}", after.text);
    assert_eq!(
        after.sum("flashgate_purchases_total", &[("sale", "metered")]),
        400.0,
        "every answer is counted once: {}",
        after.text
    );
    let http = |status| {
        after.sum(
            "flashgate_http_requests_total",
            &[("route", PURCHASE_ROUTE), ("status", status)],
        )
    };
    assert_eq!((http("202"), http("409")), (150.0, 250.0), "{}", after.text);
    assert_eq!(after.sum("flashgate_orders_persisted_total", &[]), 150.0);
    let lags = after.sum("flashgate_persist_lag_seconds_count", &[]);
    assert!((1.0..=150.0).contains(&lags), "{lags}");
    let calls = after.sum(
        "flashgate_redis_call_duration_seconds_count",
        &[("call", "purchase")],
    );
    assert!(calls >= 1.0, "{}", after.text);
    assert_eq!(after.sum("flashgate_in_flight_purchases", &[]), 0.0);
    assert_eq!(after.sum("flashgate_order_queue_depth", &[]), 0.0);
    assert_eq!(
        after.sum("flashgate_dead_letters", &[("sale", "metered")]),
        0.0
    );
    // Counts only grow: every mid-storm scrape saw at most the final count.
    for taken in &mid_storm {
        let seen = taken.sum(
            "flashgate_purchases_total",
            &[("sale", "metered"), ("outcome", "accepted")],
        );
        assert!(seen <= 150.0, "{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_gauges_equal_the_admin_views_stock_per_shard() {
    let (_redis, app) = spawn_single().await;
    stock_gauges_equal_the_admin_view(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_gauges_equal_the_admin_views_stock_per_shard_on_a_cluster() {
    let cluster = RedisCluster::start();
    let app = spawn_app_with(test_settings(&RedisTarget::Cluster(cluster.urls()))).await;
    stock_gauges_equal_the_admin_view(&app).await;
}

/// 110 of a 300-unit sale over 4 shards sold: each shard's gauge is its stock in the
/// admin view.
async fn stock_gauges_equal_the_admin_view(app: &TestApp) {
    app.create_sale("gauged", &live_sale(300, 4, 1, 1)).await;
    let answers = scenarios::storm(app, "gauged", buyers("g", 110)).await;
    assert_eq!(tally(&answers).get("202"), Some(&110));
    // No loan between shards may be under way while the two views are read.
    app.settled_counters("gauged", 4).await;
    let (status, view) = app
        .get_json("/admin/v1/sales/gauged", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let admin: BTreeMap<String, f64> = view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["shard"].to_string(), s["stock"].as_f64().unwrap()))
        .collect();
    let taken = scrape(app).await;
    let gauges: BTreeMap<String, f64> = taken
        .samples
        .iter()
        .filter(|s| s.name == "flashgate_stock_remaining")
        .filter(|s| s.labels["sale"] == "gauged")
        .map(|s| (s.labels["shard"].clone(), s.value))
        .collect();
    assert_eq!(gauges, admin, "{}", taken.text);
    assert_eq!(gauges.values().sum::<f64>(), 190.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_gauge_counts_what_the_admin_api_lists() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    settings.queue.max_backoff_ms = 200;
    settings.queue.poison_attempts = 2;
    let app = spawn_app_with(settings).await;
    db.execute(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON orders WHEN NEW.user_id LIKE 'poison%'
         BEGIN SELECT RAISE(ABORT, 'poison order refused'); END;",
    )
    .await;
    app.create_sale("lettered", &live_sale(10, 2, 1, 1)).await;
    for user in ["fine", "poison1", "poison2"] {
        let response = app.purchase("lettered", user, "k", 1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    app.flush().await;
    let listed = eventually(Duration::from_secs(60), || async {
        let (status, body) = app
            .get_json("/admin/v1/dead-letters", Some(ADMIN_TOKEN))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let letters = body["dead_letters"].as_array().map_or(0, Vec::len);
        (letters == 2).then_some(letters)
    })
    .await
    .expect("both poison orders become dead letters");
    let taken = scrape(&app).await;
    assert_eq!(
        taken.sum("flashgate_dead_letters", &[("sale", "lettered")]),
        listed as f64,
        "{}",
        taken.text
    );
    assert_eq!(taken.sum("flashgate_orders_persisted_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_purchase_counts_as_replayed_not_accepted() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("again", &live_sale(10, 2, 2, 1)).await;
    for _ in 0..3 {
        let response = app.purchase("again", "alice", "same-key", 1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let taken = scrape(&app).await;
    let count = |outcome| {
        taken.sum(
            "flashgate_purchases_total",
            &[("sale", "again"), ("outcome", outcome)],
        )
    };
    assert_eq!((count("accepted"), count("replayed")), (1.0, 2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_is_echoed_when_sent_generated_when_not_and_is_the_problems_instance() {
    let (_redis, app) = spawn_single().await;
    let get = |id: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/api/v1/sales/no-such", app.base));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_FOUND);
            let echoed = response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned();
            let body: Value = response.json().await.unwrap();
            (echoed, body)
        }
    };
    let (echoed, body) = get(Some("trace-42")).await;
    assert_eq!(echoed, "trace-42");
    assert_eq!(body["instance"], "trace-42", "{body}");
    let (first, body) = get(None).await;
    assert!(!first.is_empty());
    assert_eq!(body["instance"], first.as_str(), "{body}");
    let (second, _) = get(None).await;
    assert_ne!(first, second, "each request gets its own id");

    // The sold-out shortcut answers before routing, inside the id too.
    app.create_sale("gone", &live_sale(1, 1, 1, 1)).await;
    let bought = app.purchase("gone", "first", "k", 1).await;
    assert_eq!(bought.status(), StatusCode::ACCEPTED);
    assert!(bought.headers().contains_key("x-request-id"));
    let late = app.purchase("gone", "second", "k", 1).await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    app.await_sold_out_holders("gone").await;
    let shortcut = app
        .client
        .post(format!("{}/api/v1/sales/gone/purchase", app.base))
        .bearer_auth(app.token("third"))
        .header("X-Request-Id", "sold-out-7")
        .header("Idempotency-Key", "k")
        .json(&serde_json::json!({ "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(shortcut.status(), StatusCode::CONFLICT);
    assert_eq!(shortcut.headers()["x-request-id"], "sold-out-7");
    let body: Value = shortcut.json().await.unwrap();
    assert_eq!(
        (body["type"].as_str(), body["instance"].as_str()),
        (Some("/problems/sold-out"), Some("sold-out-7")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_off_there_is_no_scrape_route_and_ids_can_be_off_too() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.metrics.enabled = false;
    settings.log.request_ids = false;
    let app = spawn_app_with(settings).await;
    let response = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body.get("instance").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_logs_every_line_is_json_and_a_requests_line_carries_its_id() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gateway.log");
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_DATABASE__URL", db.url()),
        ("FLASHGATE_LOG__FORMAT", "json".to_owned()),
        ("FLASHGATE_LOG__ACCESS", "true".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    let gateway = GatewayProcess::start_logging_to(&env, &log).await;
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/sales/no-such", gateway.base()))
        .header("X-Request-Id", "json-log-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let line = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|line| line.contains("json-log-1"))
            .map(str::to_owned)
    })
    .await
    .expect("the request is logged");
    let logged: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(logged["request_id"], "json-log-1", "{logged}");
    assert_eq!(logged["target"], "flashgate::access", "{logged}");
    assert_eq!(logged["fields"]["status"], 404, "{logged}");
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(text.contains("flashgate ready"), "{text}");
}

/// Every metric name in `value`'s PromQL (`expr`, and the templating queries).
fn queried_metrics(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if let ("expr" | "definition" | "query", Value::String(promql)) =
                    (key.as_str(), inner)
                {
                    names.extend(metric_names(promql));
                }
                queried_metrics(inner, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| queried_metrics(i, names)),
        _ => {}
    }
}

fn metric_names(promql: &str) -> impl Iterator<Item = String> + '_ {
    promql.match_indices("flashgate_").map(|(at, _)| {
        promql[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_queries_only_metrics_the_gateway_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/flashgate-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut queried = BTreeSet::new();
    queried_metrics(&dashboard, &mut queried);
    let contract = [
        "flashgate_purchases_total",
        "flashgate_stock_remaining",
        "flashgate_order_queue_depth",
        "flashgate_orders_persisted_total",
        "flashgate_persist_lag_seconds_bucket",
        "flashgate_redis_call_duration_seconds_bucket",
        "flashgate_in_flight_purchases",
        "flashgate_http_requests_total",
        "flashgate_dead_letters",
    ];
    for name in contract {
        assert!(
            queried.contains(name),
            "the dashboard has no panel on {name}"
        );
    }

    // A gateway that has sold, refused and persisted exports every family.
    let (_redis, app) = spawn_single().await;
    app.create_sale("shown", &live_sale(5, 2, 1, 1)).await;
    let answers = scenarios::storm(&app, "shown", buyers("d", 8)).await;
    assert_eq!(tally(&answers).get("202"), Some(&5));
    app.flush().await;
    let taken = scrape(&app).await;
    let exported = taken.names();
    let missing: Vec<_> = queried
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\n{}",
        taken.text
    );

    let config = root.join("deploy/prometheus/prometheus.yml");
    let checked = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it with scripts/install-deps.sh")
        });
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stdout)
    );
}
