//! Placing a hot sale's shards on the masters of a real 3-master Redis Cluster: each
//! master serves an equal share of the shards (so of the purchases' script calls, over two
//! gateway instances), and when slots move between masters the rebalance makes the split
//! even again with a live reshard, while a storm of buyers still buys exactly the stock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use flashgate::testing::domain::SaleId;
use flashgate::testing::store::RedisTarget;
use flashgate::testing::store::keys::hash_slot;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::support::app::{
    ADMIN_TOKEN, TestApp, eventually, live_sale, spawn_app_with, test_settings,
};
use crate::support::db::TestDb;
use crate::support::redis::RedisCluster;
use crate::support::scenarios::{Answer, Progress, assert_ledger, tally};

/// The cluster's masters, each reached directly (not through a cluster client).
struct Masters {
    conns: Vec<MultiplexedConnection>,
    ids: Vec<String>,
    ports: Vec<u16>,
}

impl Masters {
    async fn of(cluster: &RedisCluster) -> Self {
        let mut masters = Self {
            conns: Vec::new(),
            ids: Vec::new(),
            ports: Vec::new(),
        };
        for node in cluster.nodes() {
            let client = redis::Client::open(node.url()).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(&mut conn)
                .await
                .unwrap();
            masters.conns.push(conn);
            masters.ids.push(id);
            masters.ports.push(node.port());
        }
        masters
    }

    /// For each slot, the position of its master among [`Self::ids`], as node 0 sees it.
    async fn slot_owners(&self) -> Vec<usize> {
        let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut self.conns[0].clone())
            .await
            .unwrap();
        let mut owners = vec![usize::MAX; 16_384];
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                panic!("{range:?}")
            };
            let (redis::Value::Int(first), redis::Value::Int(last), redis::Value::Array(master)) =
                (&parts[0], &parts[1], &parts[2])
            else {
                panic!("{parts:?}")
            };
            let redis::Value::BulkString(id) = &master[2] else {
                panic!("{master:?}")
            };
            let id = String::from_utf8_lossy(id);
            let owner = self.ids.iter().position(|m| *m == id).unwrap();
            owners[*first as usize..=*last as usize].fill(owner);
        }
        owners
    }

    /// Waits (bounded) until every node answers `CLUSTER SLOTS` alike, as
    /// `redis-cli --cluster reshard` does before it reports success.
    async fn await_agreement(&self) {
        let agreed = eventually(Duration::from_secs(10), || async {
            let mut views = Vec::new();
            for conn in &self.conns {
                let view: redis::Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut conn.clone())
                    .await
                    .unwrap();
                views.push(format!("{view:?}"));
            }
            views.windows(2).all(|w| w[0] == w[1]).then_some(())
        })
        .await;
        assert!(agreed.is_some(), "the nodes never agreed on the slot map");
    }

    /// `CONFIG RESETSTAT` on every master.
    async fn reset_stats(&self) {
        for conn in &self.conns {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut conn.clone())
                .await
                .unwrap();
        }
    }

    /// `cmdstat_evalsha` calls on each master since the last reset.
    async fn evalsha_calls(&self) -> Vec<u64> {
        let mut calls = Vec::new();
        for conn in &self.conns {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut conn.clone())
                .await
                .unwrap();
            let line = info.lines().find(|l| l.starts_with("cmdstat_evalsha:"));
            let count = line
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |n| n.parse().unwrap());
            calls.push(count);
        }
        calls
    }

    /// Moves `slot` (and its keys) from master `from` to master `to`, the way
    /// `redis-cli --cluster reshard` does: importing/migrating, `MIGRATE` of every key, then
    /// the new owner announced to every node.
    async fn move_slot(&self, slot: u16, from: usize, to: usize) {
        let set = |node: usize, args: &[&str]| {
            let mut conn = self.conns[node].clone();
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(args);
            async move { cmd.query_async::<()>(&mut conn).await.unwrap() }
        };
        set(to, &["IMPORTING", &self.ids[from]]).await;
        set(from, &["MIGRATING", &self.ids[to]]).await;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query_async(&mut self.conns[from].clone())
                .await
                .unwrap();
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(self.ports[to])
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query_async(&mut self.conns[from].clone())
                .await
                .unwrap();
        }
        for node in [to, from]
            .into_iter()
            .chain((0..self.ids.len()).filter(|n| ![from, to].contains(n)))
        {
            set(node, &["NODE", &self.ids[to]]).await;
        }
    }
}

/// The shard indices of `sale`'s current layout, as the operator view stores them
/// (`{base, count}` plus the offsets `skip`ped).
async fn current_shards(app: &TestApp, sale: &str) -> Vec<u32> {
    let (_, view) = app
        .get_json(&format!("/admin/v1/sales/{sale}"), Some(ADMIN_TOKEN))
        .await;
    let current = &view["layout"]["current"];
    let base = current["base"].as_u64().unwrap_or_else(|| panic!("{view}")) as u32;
    let count = current["count"].as_u64().unwrap() as usize;
    let skip: HashSet<u32> = current["skip"]
        .as_array()
        .map(|s| s.iter().map(|o| o.as_u64().unwrap() as u32).collect())
        .unwrap_or_default();
    let shards: Vec<u32> = (0..)
        .filter(|offset| !skip.contains(offset))
        .map(|offset| base + offset)
        .take(count)
        .collect();
    shards
}

/// How many of `shards` of `sale` each master serves.
async fn shards_per_master(
    app: &TestApp,
    masters: &Masters,
    sale: &str,
    shards: &[u32],
) -> Vec<u32> {
    let owners = masters.slot_owners().await;
    let id = SaleId::parse(sale).unwrap();
    let mut counts = vec![0; masters.ids.len()];
    for &shard in shards {
        counts[owners[hash_slot(&app.keys.shard(&id, shard).shard) as usize]] += 1;
    }
    counts
}

fn spread(counts: &[u32]) -> u32 {
    counts.iter().max().unwrap() - counts.iter().min().unwrap()
}

/// Two gateway instances over `cluster`, sharing a key prefix and a PostgreSQL database;
/// `tweak` adjusts their settings.
async fn two_instances(
    cluster: &RedisCluster,
    db: &TestDb,
    tweak: impl Fn(&mut flashgate::testing::config::Settings),
) -> (TestApp, TestApp) {
    let mut settings = test_settings(&RedisTarget::Cluster(cluster.urls()));
    settings.database.url = db.url();
    tweak(&mut settings);
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    (a, b)
}

/// One answer of a storm, with its buyer.
struct Bought {
    user: String,
    answer: Answer,
}

/// `buyers` distinct buyers, `attempts` one-unit purchases each (each with its own key),
/// sent alternately through `apps`, at most 64 at once, the first `paced` of them one per
/// 2 ms (so that a change lands while the stock sells), and none while `progress` is at its
/// ceiling; `progress` counts the 202s.
async fn storm(
    apps: [&TestApp; 2],
    sale: &str,
    (buyers, attempts): (usize, usize),
    paced: usize,
    progress: &Progress,
) -> Vec<Bought> {
    let gate = Arc::new(Semaphore::new(64));
    let start = tokio::time::Instant::now();
    let calls = (0..attempts).flat_map(|attempt| (0..buyers).map(move |i| (attempt, i)));
    let calls = calls.enumerate().map(|(k, (attempt, i))| {
        let gate = gate.clone();
        async move {
            let pace = Duration::from_millis(2) * k.min(paced) as u32;
            tokio::time::sleep_until(start + pace).await;
            let _permit = gate.acquire().await.unwrap();
            progress.below_ceiling().await;
            let user = format!("buyer-{i}");
            let key = format!("k-{i}-{attempt}");
            let app = apps[(i + attempt) % 2];
            let answer = Answer::of(app.purchase(sale, &user, &key, 1).await).await;
            if answer.status == 202 {
                progress.accept();
            }
            Bought { user, answer }
        }
    });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_split_evenly_over_three_masters_and_so_do_two_gateways_script_calls() {
    let cluster = RedisCluster::start();
    let masters = Masters::of(&cluster).await;
    let db = TestDb::postgres();
    let (a, b) = two_instances(&cluster, &db, |_| {}).await;
    for (sale, shards) in [("even16", 16), ("even32", 32)] {
        a.create_sale(sale, &live_sale(100_000, shards, 1, 1)).await;
        let placed = current_shards(&a, sale).await;
        assert_eq!(placed.len(), shards as usize);
        let counts = shards_per_master(&a, &masters, sale, &placed).await;
        assert!(spread(&counts) <= 1, "{sale}: shards per master {counts:?}");

        masters.reset_stats().await;
        let progress = Progress::up_to(usize::MAX);
        let bought = storm([&a, &b], sale, (3_000, 1), 0, &progress).await;
        assert_eq!(
            progress.accepted(),
            3_000,
            "{:?}",
            tally(&bought.iter().map(|b| b.answer.clone()).collect::<Vec<_>>())
        );
        a.flush().await;
        b.flush().await;
        let calls = masters.evalsha_calls().await;
        let mean = calls.iter().sum::<u64>() as f64 / calls.len() as f64;
        let max = *calls.iter().max().unwrap() as f64;
        assert!(
            max / mean <= 1.2,
            "{sale}: EVALSHA calls per master {calls:?}, max/mean {:.2}",
            max / mean
        );
    }
}

const STOCK: u64 = 1000;
const LIMIT: u32 = 2;

/// Moves every slot holding one of `shards` of `sale` off the master serving most of them,
/// onto the next master: that master then serves none of them.
async fn empty_one_master(app: &TestApp, masters: &Masters, sale: &str, shards: &[u32]) {
    let owners = masters.slot_owners().await;
    let id = SaleId::parse(sale).unwrap();
    let counts = shards_per_master(app, masters, sale, shards).await;
    let busiest = (0..counts.len()).max_by_key(|&m| counts[m]).unwrap();
    let slots: HashSet<u16> = shards
        .iter()
        .map(|&shard| hash_slot(&app.keys.shard(&id, shard).shard))
        .filter(|&slot| owners[slot as usize] == busiest)
        .collect();
    for slot in slots {
        masters
            .move_slot(slot, busiest, (busiest + 1) % counts.len())
            .await;
    }
    masters.await_agreement().await;
    let moved = shards_per_master(app, masters, sale, shards).await;
    assert!(moved.contains(&0) && spread(&moved) > 1, "{moved:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_slots_move_a_rebalance_mid_storm_evens_the_shards_and_sells_exactly_the_stock() {
    let cluster = RedisCluster::start();
    let masters = Masters::of(&cluster).await;
    let db = TestDb::postgres();
    // The rebalance is driven by the test here (the timer's own pass is the next test's).
    let (a, b) = two_instances(&cluster, &db, |s| s.stock.rebalance = false).await;
    a.create_sale("moved", &live_sale(STOCK, 16, LIMIT, 1))
        .await;
    let placed = current_shards(&a, "moved").await;
    empty_one_master(&a, &masters, "moved", &placed).await;

    // At most 400 accepted (and 64 in flight) until the rebalance is done: it lands while
    // the sale sells, however slow the machine.
    let progress = Progress::up_to(400);
    let operator = async {
        progress.when_accepted(150).await;
        let done = a
            .state
            .sales
            .rebalance_all(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        let report = done[0].outcome.as_ref().expect("the rebalance reshards");
        assert_eq!(report.state, "done", "{report:?}");
        let sold_before = progress.accepted();
        progress.allow_up_to(usize::MAX);
        sold_before
    };
    let (bought, sold_before) = tokio::join!(
        storm([&a, &b], "moved", (3_000, 2), 2_000, &progress),
        operator
    );
    assert!(
        sold_before < STOCK as usize,
        "the rebalance finished after the sale sold out: not mid-storm"
    );

    let rebalanced = current_shards(&a, "moved").await;
    assert_eq!(rebalanced.len(), 16);
    assert!(
        rebalanced[0] > *placed.last().unwrap(),
        "fresh indices: {rebalanced:?}"
    );
    let counts = shards_per_master(&a, &masters, "moved", &rebalanced).await;
    assert!(spread(&counts) <= 1, "shards per master {counts:?}");
    let (_, view) = a.get_json("/admin/v1/sales/moved", Some(ADMIN_TOKEN)).await;
    assert_eq!(view["audit"][0]["actor"], "rebalance", "{}", view["audit"]);
    assert_eq!(view["audit"][0]["action"], "resharded", "{}", view["audit"]);

    let answers: Vec<Answer> = bought.iter().map(|b| b.answer.clone()).collect();
    let counts = tally(&answers);
    let allowed = ["202", "409 sold-out", "409 limit-reached"];
    assert!(
        counts.keys().all(|k| allowed.contains(&k.as_str())),
        "{counts:?}"
    );
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for b in bought.iter().filter(|b| b.answer.status == 202) {
        *per_user.entry(&b.user).or_default() += 1;
    }
    assert!(
        per_user.values().all(|&n| n <= LIMIT as usize),
        "a buyer over the limit"
    );
    assert_eq!(per_user.values().sum::<usize>() as u64, STOCK, "{counts:?}");
    b.flush().await;
    let used = rebalanced.last().unwrap() + 1;
    assert_ledger(&a, "moved", used, STOCK, &answers).await;
    let ledger = a.reconcile("moved").await;
    assert_eq!(
        (&ledger["difference"], &ledger["findings"]),
        (&json!(0), &json!([])),
        "{ledger}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_checks_the_split_on_a_timer_and_rebalances_by_itself() {
    let cluster = RedisCluster::start();
    let masters = Masters::of(&cluster).await;
    let db = TestDb::postgres();
    let mut settings = test_settings(&RedisTarget::Cluster(cluster.urls()));
    settings.database.url = db.url();
    settings.stock.rebalance = false;
    let creator = spawn_app_with(settings.clone()).await;
    creator
        .create_sale("timer", &live_sale(STOCK, 32, LIMIT, 1))
        .await;
    let placed = current_shards(&creator, "timer").await;
    empty_one_master(&creator, &masters, "timer", &placed).await;
    creator.stop().await;
    // An instance started now knows the new slot map from its first connection; its
    // timer finds the sale uneven and reshards it.
    settings.stock.rebalance = true;
    settings.stock.rebalance_interval_ms = 200;
    let app = spawn_app_with(settings).await;
    let even = eventually(Duration::from_secs(30), || async {
        let now = current_shards(&app, "timer").await;
        let counts = shards_per_master(&app, &masters, "timer", &now).await;
        (now != placed && spread(&counts) <= 1).then_some(counts)
    })
    .await;
    assert!(even.is_some(), "the instance never rebalanced the sale");
    // The reshard's audit entry is written once it is done.
    let audit = eventually(Duration::from_secs(30), || async {
        let (_, view) = app
            .get_json("/admin/v1/sales/timer", Some(ADMIN_TOKEN))
            .await;
        let audit = view["audit"].as_array().cloned().unwrap_or_default();
        audit
            .iter()
            .any(|e| e["actor"] == "rebalance")
            .then_some(audit)
    })
    .await
    .expect("the rebalance is audited");
    let rebalances: Vec<_> = audit.iter().filter(|e| e["actor"] == "rebalance").collect();
    assert_eq!(rebalances.len(), 1, "rebalanced once: {audit:?}");
    assert_eq!(rebalances[0]["action"], "resharded");
    assert_eq!(rebalances[0]["after"]["shards"], 32);
}
