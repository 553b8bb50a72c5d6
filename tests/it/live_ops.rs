//! Operating a live sale while buyers buy, on two gateway instances over one Redis (single
//! node and 3-master cluster) and one PostgreSQL database: a live reshard (8 → 64 → 4), a
//! gateway SIGKILLed in the middle of one, a top-up after sell-out, `flashgate apply` with
//! a changed `shards`, concurrent PUTs, and DELETE. After each: exactly the stock sold,
//! nobody over the per-user limit, database rows = 202 answers, reconcile exact.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flashgate::testing::domain::SaleId;
use flashgate::testing::store::RedisTarget;
use reqwest::Response;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, spawn_app_with, test_settings,
};
use crate::support::db::TestDb;
use crate::support::process::GatewayProcess;
use crate::support::redis::{RedisCluster, RedisServer};
use crate::support::scenarios::{Answer, Progress, assert_ledger, tally};

const STOCK: u64 = 1000;
const BUYERS: usize = 10_000;
const ATTEMPTS: usize = 3;
const LIMIT: u32 = 2;
/// Requests in flight at once, over both instances.
const IN_FLIGHT: usize = 128;
/// The first requests arrive one per [`PACE`], so that selling the stock takes seconds and
/// the operator's changes land while it sells (unpaced, 1,000 units sell in well under a
/// second); the rest come as fast as the gateways answer. The pace alone does not
/// guarantee it on a loaded machine, where a reshard may take longer than the stock
/// lasts: [`Progress`]'s ceiling does (each ceiling below `STOCK` less `IN_FLIGHT`, so that
/// the requests in flight at a ceiling cannot sell the sale out).
const PACED: usize = 2_000;
const PACE: Duration = Duration::from_millis(4);

/// Where buyers send their purchases: a gateway's base URL, with a client and JWTs.
#[derive(Clone)]
struct Door {
    base: String,
}

/// The doors of gateways at `bases`.
fn doors(bases: &[&str]) -> Vec<Door> {
    bases
        .iter()
        .map(|base| Door {
            base: (*base).to_owned(),
        })
        .collect()
}

/// Two gateway instances over `target`, sharing a key prefix and a PostgreSQL database.
async fn two_instances(target: &RedisTarget, db: &TestDb) -> (TestApp, TestApp) {
    let mut settings = test_settings(target);
    settings.database.url = db.url();
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    (a, b)
}

/// One answer of the storm, with its buyer.
struct Bought {
    user: String,
    answer: Answer,
}

/// `BUYERS` buyers, `ATTEMPTS` one-unit attempts each (each with its own key), sent
/// alternately through `doors`, below `progress`'s ceiling; `progress` counts the 202s as
/// they come.
async fn storm(app: &TestApp, sale: &str, doors: &[Door], progress: &Progress) -> Vec<Bought> {
    paced_storm(app, sale, doors, progress, PACE).await
}

/// [`storm`] with the first [`PACED`] requests one per `pace`.
async fn paced_storm(
    app: &TestApp,
    sale: &str,
    doors: &[Door],
    progress: &Progress,
    pace: Duration,
) -> Vec<Bought> {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let start = tokio::time::Instant::now();
    let calls = (0..ATTEMPTS).flat_map(|attempt| (0..BUYERS).map(move |i| (attempt, i)));
    let calls = calls.enumerate().map(|(k, (attempt, i))| {
        let gate = gate.clone();
        let first = (i + attempt) % doors.len();
        async move {
            tokio::time::sleep_until(start + pace * k.min(PACED) as u32).await;
            let _permit = gate.acquire().await.unwrap();
            progress.below_ceiling().await;
            let user = format!("buyer-{i}");
            let key = format!("k-{i}-{attempt}");
            let answer = Answer::of(purchase(app, doors, first, sale, &user, &key).await).await;
            if answer.status == 202 {
                progress.accept();
            }
            Bought { user, answer }
        }
    });
    futures::future::join_all(calls).await
}

/// Sends the purchase through `doors[first]`; a door that does not answer (its gateway was
/// killed) gets the same request sent through the next, as a load balancer would: if the
/// dead gateway had accepted it, the retry replays its order.
async fn purchase(
    app: &TestApp,
    doors: &[Door],
    first: usize,
    sale: &str,
    user: &str,
    key: &str,
) -> Response {
    for round in 0..200 {
        let door = &doors[(first + round) % doors.len()];
        let sent = app
            .client
            .post(format!("{}/api/v1/sales/{sale}/purchase", door.base))
            .bearer_auth(app.token(user))
            .header("Idempotency-Key", key)
            .json(&json!({ "quantity": 1 }))
            .send()
            .await;
        match sent {
            Ok(response) => return response,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("no gateway answered {user}'s purchase {key}");
}

/// `POST {base}/admin/v1/sales/{sale}/{action}` with `body`: (status, JSON).
async fn admin_post(
    app: &TestApp,
    base: &str,
    sale: &str,
    action: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{base}/admin/v1/sales/{sale}/{action}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Reshards `sale` to `shards` through `base`, and waits for the reshard to finish if it
/// answered that it goes on in the background (a loaded machine may take longer than the
/// request waits); panics unless it is done.
async fn reshard(app: &TestApp, base: &str, sale: &str, shards: u32) {
    let (status, body) = admin_post(app, base, sale, "reshard", json!({ "shards": shards })).await;
    assert_eq!(status, 200, "reshard to {shards}: {body}");
    match body["change"]["state"].as_str() {
        Some("done") => {}
        Some("in_progress") => {
            settled(app, sale).await;
        }
        _ => panic!("reshard to {shards}: {body}"),
    }
}

/// Every invariant after a storm: only the answers a sale without operators would give,
/// exactly `STOCK` units sold to distinct orders, nobody over the limit, database rows =
/// 202 answers (over every shard the sale ever used), reconcile exact.
async fn assert_storm_invariants(
    a: &TestApp,
    b: &TestApp,
    sale: &str,
    shards_used: u32,
    bought: &[Bought],
) {
    let answers: Vec<Answer> = bought.iter().map(|b| b.answer.clone()).collect();
    let counts = tally(&answers);
    let allowed = ["202", "409 sold-out", "409 limit-reached"];
    assert!(
        counts.keys().all(|k| allowed.contains(&k.as_str())),
        "answers a sale without operators would not give: {counts:?}"
    );
    let mut per_user: HashMap<&str, HashSet<&str>> = HashMap::new();
    for b in bought.iter().filter(|b| b.answer.status == 202) {
        let order = b.answer.order_id.as_deref().expect("a 202 names its order");
        per_user.entry(&b.user).or_default().insert(order);
    }
    let over: Vec<_> = per_user
        .iter()
        .filter(|(_, o)| o.len() > LIMIT as usize)
        .collect();
    assert!(over.is_empty(), "buyers over the limit: {over:?}");
    let orders: usize = per_user.values().map(HashSet::len).sum();
    assert_eq!(orders as u64, STOCK, "{counts:?}");
    b.flush().await;
    assert_ledger(a, sale, shards_used, STOCK, &answers).await;
    assert_reconciles(a, sale).await;
}

/// Reconciliation of `sale` through `app` finds no difference and nothing amiss.
async fn assert_reconciles(app: &TestApp, sale: &str) {
    let ledger = app.reconcile(sale).await;
    assert_eq!(
        (&ledger["difference"], &ledger["findings"]),
        (&json!(0), &json!([])),
        "{ledger}"
    );
}

async fn reshard_mid_storm_on(target: RedisTarget) {
    let db = TestDb::postgres();
    let (a, b) = two_instances(&target, &db).await;
    a.create_sale("hot", &live_sale(STOCK, 8, LIMIT, 1)).await;
    let doors = doors(&[&a.base, &b.base]);
    let progress = Progress::up_to(400);
    let operator = async {
        progress.when_accepted(150).await;
        reshard(&a, &a.base, "hot", 64).await;
        let first = progress.accepted();
        progress.allow_up_to(800);
        progress.when_accepted(500).await;
        reshard(&a, &b.base, "hot", 4).await;
        let second = progress.accepted();
        progress.allow_up_to(usize::MAX);
        (first, second)
    };
    let (bought, (first, second)) = tokio::join!(storm(&a, "hot", &doors, &progress), operator);
    assert!(
        first < STOCK as usize && second < STOCK as usize,
        "the reshards finished after the sale sold out ({first}, {second} sold): not mid-storm"
    );
    let (_, view) = a.get_json("/admin/v1/sales/hot", Some(ADMIN_TOKEN)).await;
    let current = &view["layout"]["current"];
    // 8 + 64 + 4 shard indices on a single node; on a cluster, shards are placed by master
    // and the indices walked past are skipped (`skip`), so the last layout starts later.
    assert!(
        current["count"] == 4
            && current["base"].as_u64() >= Some(72)
            && view["layout"].get("draining").is_none(),
        "{view}"
    );
    if matches!(target, RedisTarget::Single(_)) {
        assert_eq!(current, &json!({"base": 72, "count": 4}), "{view}");
    }
    assert_storm_invariants(&a, &b, "hot", 76, &bought).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_8_to_64_to_4_mid_storm_sells_exactly_the_stock() {
    let redis = RedisServer::start();
    reshard_mid_storm_on(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resharding_8_to_64_to_4_mid_storm_on_a_cluster_sells_exactly_the_stock() {
    let cluster = RedisCluster::start();
    reshard_mid_storm_on(RedisTarget::Cluster(cluster.urls())).await;
}

/// The order id of a 202, or the status and problem slug of anything else.
async fn outcome(response: Response) -> Result<String, (u16, String)> {
    let answer = Answer::of(response).await;
    match answer.status {
        202 => Ok(answer.order_id.expect("a 202 names its order")),
        status => Err((status, answer.slug.unwrap_or_default())),
    }
}

/// The sale's admin view, read through `app`.
async fn view(app: &TestApp, sale: &str) -> Value {
    let (status, body) = app
        .get_json(&format!("/admin/v1/sales/{sale}"), Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (bounded) until no change is in progress on `sale` and its layout is settled.
async fn settled(app: &TestApp, sale: &str) -> Value {
    let done = eventually(Duration::from_secs(30), || async {
        let body = view(app, sale).await;
        (body.get("change").is_none() && body["layout"].get("draining").is_none()).then_some(body)
    })
    .await;
    done.unwrap_or_else(|| panic!("the change of {sale} never finished"))
}

/// A buyer's record (units held, idempotency keys, spent purchase tokens) is found at
/// their new home while a reshard has switched the layout but moved nobody yet (its driver
/// is held off by a lock another "instance" holds), and after the reshard finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyers_keys_tokens_and_limit_follow_them_through_a_reshard() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.tokens.require_purchase_token = true;
    // The reshard's request answers "in progress" after 3/4 of this.
    settings.http.request_timeout_ms = 2_000;
    let app = spawn_app_with(settings).await;
    app.create_sale("follow", &live_sale(100, 4, 2, 1)).await;
    let buy = |key: &'static str, token: String| {
        let app = &app;
        async move {
            let response = app
                .purchase_with_token("follow", "ann", key, 1, Some(&token))
                .await;
            outcome(response).await
        }
    };
    let t1 = app.purchase_token("follow", "ann").await;
    let first = buy("k1", t1.clone())
        .await
        .expect("ann buys before the reshard");

    // Another instance "drives" the reshard: this one switches the layout and waits.
    let sale = SaleId::parse("follow").unwrap();
    let lock = app.keys.sale_change_lock(&sale);
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("SET")
        .arg(&lock)
        .arg("elsewhere")
        .arg("PX")
        .arg(60_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let (status, body) =
        admin_post(&app, &app.base, "follow", "reshard", json!({"shards": 7})).await;
    assert_eq!(
        (status, &body["change"]["state"]),
        (200, &json!("in_progress")),
        "{body}"
    );
    assert_eq!(
        view(&app, "follow").await["layout"]["draining"],
        json!({"base": 0, "count": 4})
    );

    // Migrating: every answer as if nothing happened.
    assert_eq!(
        buy("k1", t1.clone()).await,
        Ok(first.clone()),
        "the retry replays"
    );
    assert_eq!(buy("k2", t1.clone()).await, Err((409, "token-used".into())));
    let t2 = app.purchase_token("follow", "ann").await;
    let second = buy("k2", t2).await.expect("ann's second unit");
    let t3 = app.purchase_token("follow", "ann").await;
    assert_eq!(buy("k3", t3).await, Err((409, "limit-reached".into())));

    // The lock lapses (here: is released); an instance's worker finishes the reshard.
    let _: () = redis::cmd("DEL")
        .arg(&lock)
        .query_async(&mut conn)
        .await
        .unwrap();
    let body = settled(&app, "follow").await;
    assert_eq!(
        body["layout"],
        json!({"current": {"base": 4, "count": 7}}),
        "{body}"
    );
    assert_eq!(
        buy("k1", t1).await,
        Ok(first.clone()),
        "the retry still replays"
    );
    let t4 = app.purchase_token("follow", "ann").await;
    assert_eq!(buy("k4", t4).await, Err((409, "limit-reached".into())));
    let (status, mine) = app
        .get_json("/api/v1/sales/follow/orders/mine", Some(&app.token("ann")))
        .await;
    assert_eq!(status, 200, "{mine}");
    let ids: HashSet<&str> = mine["orders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["order_id"].as_str())
        .collect();
    assert_eq!(ids, HashSet::from([first.as_str(), second.as_str()]));
    app.flush().await;
    assert_reconciles(&app, "follow").await;
}

/// The gateway driving a reshard is SIGKILLed in the middle of it while two instances
/// sell; the reshard is resumed by an instance once its lock lapses, then the sale is
/// resharded again; every invariant holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_whose_gateway_is_killed_mid_way_is_resumed_and_loses_nothing() {
    let redis = RedisServer::start();
    let db = TestDb::postgres();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = db.url();
    let prefix = settings.redis.key_prefix.clone();
    let b = spawn_app_with(settings).await;
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_REDIS__KEY_PREFIX", prefix),
        ("FLASHGATE_DATABASE__URL", db.url()),
        ("FLASHGATE_STOCK__REFRESH_INTERVAL_MS", "200".to_owned()),
        ("FLASHGATE_STOCK__RECOVERY_INTERVAL_MS", "200".to_owned()),
        ("FLASHGATE_QUEUE__RECOVERY_INTERVAL_MS", "200".to_owned()),
        ("FLASHGATE_QUEUE__CLAIM_IDLE_MS", "500".to_owned()),
    ];
    let mut a = GatewayProcess::start(&env).await;
    b.create_sale("kill", &live_sale(STOCK, 8, LIMIT, 1)).await;
    let doors = doors(&[&a.base(), &b.base]);
    let progress = Progress::up_to(400);
    let sale = SaleId::parse("kill").unwrap();
    let meta = b.keys.sale_meta(&sale);
    let operator = async {
        progress.when_accepted(150).await;
        let base = a.base();
        let request = admin_post(&b, &base, "kill", "reshard", json!({ "shards": 64 }));
        let killed_mid_way = tokio::select! {
            _ = request => false,
            () = change_recorded(&b, &meta) => true,
        };
        a.kill9();
        let mut conn = b.redis.clone();
        let op: Option<String> = redis::cmd("HGET")
            .arg(&meta)
            .arg("op")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(
            killed_mid_way && op.is_some(),
            "the gateway was not killed mid-reshard"
        );
        a.restart().await;
        settled(&b, "kill").await;
        let first = progress.accepted();
        progress.allow_up_to(850);
        progress.when_accepted(700).await;
        reshard(&b, &a.base(), "kill", 4).await;
        let second = progress.accepted();
        progress.allow_up_to(usize::MAX);
        (first, second)
    };
    let pace = Duration::from_millis(10);
    let (bought, (first, second)) =
        tokio::join!(paced_storm(&b, "kill", &doors, &progress, pace), operator);
    assert!(
        first < STOCK as usize && second < STOCK as usize,
        "the reshards finished after the sale sold out ({first}, {second} sold): not mid-storm"
    );
    assert_eq!(
        view(&b, "kill").await["layout"],
        json!({"current": {"base": 72, "count": 4}})
    );
    assert_storm_invariants(&b, &b, "kill", 76, &bought).await;
}

/// Resolves once the sale's record names a change in progress.
async fn change_recorded(app: &TestApp, meta: &str) {
    let mut conn = app.redis.clone();
    loop {
        let op: bool = redis::cmd("HEXISTS")
            .arg(meta)
            .arg("op_id")
            .query_async(&mut conn)
            .await
            .unwrap();
        if op {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A sold-out sale topped up sells again on both instances (their sold-out marks go),
/// then a reduction takes units back off the shelves only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_top_up_after_sell_out_sells_again_on_every_instance() {
    let redis = RedisServer::start();
    let db = TestDb::postgres();
    let (a, b) = two_instances(&RedisTarget::Single(redis.url()), &db).await;
    a.create_sale("more", &live_sale(20, 4, 1, 1)).await;
    let mut bought = Vec::new();
    for i in 0..60 {
        let app = if i % 2 == 0 { &a } else { &b };
        let user = format!("early-{i}");
        bought.push(Answer::of(app.purchase("more", &user, "k", 1).await).await);
    }
    let counts = tally(&bought);
    assert_eq!(
        (counts["202"], counts["409 sold-out"]),
        (20, 40),
        "{counts:?}"
    );
    for app in [&a, &b] {
        app.await_sold_out_holders("more").await;
    }
    let (status, body) = admin_post(&a, &a.base, "more", "stock", json!({ "add": 10 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["change"]["state"], &body["change"]["applied"]),
        (&json!("done"), &json!(10))
    );
    // Every instance sells the new units (within its refresh interval).
    let mut late = 0;
    for (name, app) in [("a", &a), ("b", &b)] {
        let sold = eventually(Duration::from_secs(5), || {
            late += 1;
            let user = format!("late-{name}-{late}");
            async move { (app.purchase("more", &user, "k", 1).await.status() == 202).then_some(()) }
        })
        .await;
        assert!(sold.is_some(), "instance {name} never sold the new units");
    }
    // Reduce by more than is left: only the units on the shelves go.
    let (status, body) = admin_post(&b, &b.base, "more", "stock", json!({ "add": -100 })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["change"]["applied"], json!(-8), "{body}");
    let trail = view(&b, "more").await["audit"].clone();
    let actions: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["stock-changed", "stock-changed", "created"],
        "{trail}"
    );
    let body = view(&b, "more").await;
    assert_eq!(
        (&body["stock_total"], &body["sold"], &body["remaining"]),
        (&json!(22), &json!(22), &json!(0)),
        "{body}"
    );
    b.flush().await;
    a.flush().await;
    assert_reconciles(&a, "more").await;
}

/// `flashgate apply` with a changed `shards` (and a larger stock) during a storm reshards
/// and tops up the live sale; a changed field that cannot change live is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flashgate_apply_with_a_changed_shards_reshards_the_live_sale_mid_storm() {
    let redis = RedisServer::start();
    let db = TestDb::postgres();
    let (a, b) = two_instances(&RedisTarget::Single(redis.url()), &db).await;
    let body = live_sale(STOCK, 8, LIMIT, 1);
    a.create_sale("applied", &body).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flashgate.toml");
    let write = |shards: u32, stock: u64, name: &str| {
        let sale = format!(
            "[[sales]]\nid = \"applied\"\nname = \"{name}\"\nstock = {stock}\nshards = {shards}\nstarts_at = \"{}\"\nends_at = \"{}\"\nper_user_limit = {LIMIT}\nmax_per_order = 1\n",
            body["starts_at"].as_str().unwrap(),
            body["ends_at"].as_str().unwrap(),
        );
        std::fs::write(&config, sale).unwrap();
    };
    let apply = |env: &[(&str, String)]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .args(["apply", "--config", config.to_str().unwrap()])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("flashgate apply runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_REDIS__KEY_PREFIX", a.prefix.clone()),
        ("FLASHGATE_DATABASE__URL", db.url()),
        (
            "FLASHGATE_AUTH__JWT_SECRET",
            crate::support::app::JWT_SECRET.to_owned(),
        ),
        ("FLASHGATE_ADMIN__TOKEN", ADMIN_TOKEN.to_owned()),
    ];
    let doors = doors(&[&a.base, &b.base]);
    let progress = Progress::up_to(400);
    let operator = async {
        progress.when_accepted(150).await;
        write(64, STOCK, "Test sale");
        let (status, out) = apply(&env);
        assert!(status.success(), "apply: {status} {out}");
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["changes"][0]["kind"], "reshard", "{report}");
        assert_eq!(report["changes"][0]["report"]["state"], "done", "{report}");
        let first = progress.accepted();
        progress.allow_up_to(usize::MAX);
        first
    };
    let (bought, first) = tokio::join!(storm(&a, "applied", &doors, &progress), operator);
    assert!(
        first < STOCK as usize,
        "apply finished after the sell-out: not mid-storm"
    );
    assert_storm_invariants(&a, &b, "applied", 72, &bought).await;
    let trail = view(&a, "applied").await["audit"].clone();
    assert_eq!(
        (&trail[0]["action"], &trail[0]["actor"], &trail[0]["before"]),
        (
            &json!("resharded"),
            &json!("flashgate-apply"),
            &json!({"shards": 8})
        ),
        "{trail}"
    );
    // A renamed sale cannot be renamed live: reported, exit non-zero, nothing changes.
    write(64, STOCK, "Renamed");
    let (status, out) = apply(&env);
    assert!(!status.success(), "{out}");
    assert!(out.contains("name of a live sale"), "{out}");
    assert_eq!(view(&a, "applied").await["layout"]["current"]["count"], 64);
}

/// SIGHUP makes a running gateway apply its config file's `[[sales]]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_applies_the_config_files_sales_to_the_live_sale() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flashgate.toml");
    let body = live_sale(100, 2, 1, 1);
    let write = |shards: u32, stock: u64| {
        let sale = format!(
            "[[sales]]\nid = \"hup\"\nname = \"Test sale\"\nstock = {stock}\nshards = {shards}\nstarts_at = \"{}\"\nends_at = \"{}\"\nper_user_limit = 1\nmax_per_order = 1\n",
            body["starts_at"].as_str().unwrap(),
            body["ends_at"].as_str().unwrap(),
        );
        std::fs::write(&config, sale).unwrap();
    };
    write(2, 100);
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_DATABASE__URL", db.url()),
    ];
    let gateway =
        GatewayProcess::start_with_args(&env, &["--config", config.to_str().unwrap()]).await;
    let admin = reqwest::Client::new();
    let layout = || async {
        let body: Value = admin
            .get(format!("{}/admin/v1/sales/hup", gateway.base()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (body["layout"].clone(), body["stock_total"].clone())
    };
    assert_eq!(
        layout().await,
        (json!({"current": {"base": 0, "count": 2}}), json!(100))
    );
    // The sale is live: shards and stock change through a live reshard and a top-up.
    write(5, 150);
    gateway.signal("-HUP");
    let applied = eventually(Duration::from_secs(20), || async {
        let now = layout().await;
        (now == (json!({"current": {"base": 2, "count": 5}}), json!(150))).then_some(())
    })
    .await;
    assert!(
        applied.is_some(),
        "SIGHUP did not apply the file: {:?}",
        layout().await
    );
}
