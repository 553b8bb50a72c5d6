//! The kill switch across instances: a pause on one gateway instance reaches every other
//! instance sharing the Redis through its epoch poll, single node and cluster; a resume
//! sells on, and the ledger stays exact.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flashgate::testing::store::RedisTarget;

use crate::operator::{audit_trail, switch};
use crate::support::app::{TestApp, eventually, live_sale, spawn_app_with, test_settings};
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios::{self, Answer};

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
