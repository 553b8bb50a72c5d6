//! Every Lua script is safe to run twice with the same arguments: a client re-sends a command
//! whose reply was lost (redis-rs's cluster connection does), so each script is run twice here
//! through the project's own call helpers against a real redis-server, and the second run must
//! answer what the first did (or, for the scripts that report whether they did the work now,
//! that it was done before) and leave every key as the first run left it.

use std::collections::BTreeMap;
use std::time::Duration;

use flashgate::testing::config::LimitSettings;
use flashgate::testing::domain::{EntryId, SaleDefinition, SaleId, SaleSpec, ShardSet, UserId};
use flashgate::testing::limits::SharedSaleLimit;
use flashgate::testing::sales::SaleRegistry;
use flashgate::testing::stock::StockEngine;
use flashgate::testing::store::orders::{self, ShardAcks};
use flashgate::testing::store::shards;
use flashgate::testing::store::tokens::{self as token_store, Issue, IssueCall};
use flashgate::testing::store::{Keys, Redis, RedisConn, RedisTarget, RedisTimeouts};
use flashgate::testing::store::{loans, migration, sales};
use flashgate::testing::tokens::{Audience, TokenSigner};
use redis::Value;

use crate::support::redis::{RedisCluster, RedisServer};

/// A redis-server, a connection and a key prefix of its own; no gateway, so no background
/// worker touches the keys between the two runs.
struct Bench {
    /// The redis-server processes, killed when the bench is dropped.
    _redis: (Option<RedisServer>, Option<RedisCluster>),
    conn: RedisConn,
    keys: Keys,
    redis: Redis,
    prefix: String,
}

impl Bench {
    /// A bench on one redis-server.
    async fn start() -> Self {
        let redis = RedisServer::start();
        let target = RedisTarget::Single(redis.url());
        Self::on((Some(redis), None), &target).await
    }

    /// A bench on a three-master Redis Cluster, whose connection re-sends lost commands.
    async fn start_cluster() -> Self {
        let cluster = RedisCluster::start();
        let target = RedisTarget::Cluster(cluster.urls());
        Self::on((None, Some(cluster)), &target).await
    }

    async fn on(
        servers: (Option<RedisServer>, Option<RedisCluster>),
        target: &RedisTarget,
    ) -> Self {
        let timeouts = RedisTimeouts {
            response: Duration::from_secs(5),
            connect: Duration::from_secs(5),
        };
        let prefix = format!("s{:08x}", rand::random::<u32>());
        let redis = Redis::connect(target, timeouts, 2, Keys::new(&prefix))
            .await
            .unwrap();
        Self {
            _redis: servers,
            conn: redis.conn(),
            keys: Keys::new(&prefix),
            redis,
            prefix,
        }
    }

    /// Creates sale `id` with `stock` units over `shards` shards, as `PUT` does.
    async fn sale(&self, id: &str, stock: u64, shards: u32) -> SaleId {
        let now = time::OffsetDateTime::now_utc();
        let spec = SaleSpec::try_from(SaleDefinition {
            name: "Scripts".into(),
            stock,
            shards,
            starts_at: now - time::Duration::minutes(1),
            ends_at: now + time::Duration::hours(1),
            per_user_limit: 2,
            max_per_order: 2,
            pow_difficulty: 0,
            payment_window_s: 0,
        })
        .unwrap();
        let registry = SaleRegistry::new(self.redis.clone(), StockEngine::new(self.redis.clone()));
        let sale = SaleId::parse(id).unwrap();
        registry.put(&sale, spec, now).await.unwrap();
        sale
    }

    /// Every key under this bench's prefix with its whole content, in a comparable form
    /// (expiries left out: they only count down).
    async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut all = BTreeMap::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let read = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&key).clone(),
                "hash" => redis::cmd("HGETALL").arg(&key).clone(),
                "set" => redis::cmd("SMEMBERS").arg(&key).clone(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .clone(),
                "stream" => redis::cmd("XRANGE").arg(&key).arg("-").arg("+").clone(),
                other => panic!("unexpected key type {other} of {key}"),
            };
            let value: Value = read.query_async(&mut conn).await.unwrap();
            all.insert(key, canonical(value));
        }
        all
    }
}

/// `value` rendered so that the same content compares equal (a hash's or set's order is not
/// part of its content).
fn canonical(value: Value) -> String {
    match value {
        Value::Map(pairs) => {
            let mut pairs: Vec<String> = pairs.into_iter().map(|p| format!("{p:?}")).collect();
            pairs.sort();
            pairs.join(",")
        }
        Value::Set(items) | Value::Array(items) => {
            let mut items: Vec<String> = items.into_iter().map(canonical).collect();
            items.sort();
            items.join(",")
        }
        other => format!("{other:?}"),
    }
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

#[tokio::test]
async fn borrow_run_twice_with_one_loan_id_takes_once_and_answers_the_same() {
    let bench = Bench::start().await;
    let sale = bench.sale("borrow", 10, 2).await; // 5 units a shard
    let donor = bench.keys.shard(&sale, 1);
    let mut conn = bench.conn.clone();
    let first = loans::borrow(&mut conn, &donor, "L1", 3, 0, now_ms())
        .await
        .unwrap();
    assert_eq!((first.taken, first.stock_left), (3, 2));
    let after_first = bench.snapshot().await;
    let second = loans::borrow(&mut conn, &donor, "L1", 3, 0, now_ms())
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(bench.snapshot().await, after_first);
    let counters = shards::read_counters(&mut conn, &donor).await.unwrap();
    assert_eq!((counters.stock, counters.lent), (2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_borrow_and_a_shared_limit_check_run_twice_take_once() {
    let bench = Bench::start_cluster().await;
    let sale = bench.sale("cluster", 10, 2).await;
    let donor = bench.keys.shard(&sale, 1);
    let mut conn = bench.conn.clone();
    let first = loans::borrow(&mut conn, &donor, "L1", 3, 0, now_ms())
        .await
        .unwrap();
    let limit = shared_limit(&bench, 1);
    assert!(limit.check_request(&sale, "r1").await.unwrap().is_ok());
    let after_first = bench.snapshot().await;
    assert!(!after_first.is_empty());
    let second = loans::borrow(&mut conn, &donor, "L1", 3, 0, now_ms())
        .await
        .unwrap();
    assert_eq!(second, first);
    assert!(limit.check_request(&sale, "r1").await.unwrap().is_ok());
    assert_eq!(bench.snapshot().await, after_first);
}

#[tokio::test]
async fn borrow_re_sent_after_its_loan_was_settled_still_answers_the_first_take() {
    let bench = Bench::start().await;
    let sale = bench.sale("settled", 10, 2).await;
    let (home, donor) = (bench.keys.shard(&sale, 0), bench.keys.shard(&sale, 1));
    let mut conn = bench.conn.clone();
    let first = loans::borrow(&mut conn, &donor, "L1", 4, 0, now_ms())
        .await
        .unwrap();
    assert!(
        loans::credit(&mut conn, &home, "L1", first.taken)
            .await
            .unwrap()
    );
    assert!(loans::settle(&mut conn, &donor, "L1").await.unwrap());
    let settled = bench.snapshot().await;
    // The loan record is gone; the re-sent borrow must still not take again.
    let again = loans::borrow(&mut conn, &donor, "L1", 4, 0, now_ms())
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(bench.snapshot().await, settled);
    let counters = shards::read_counters(&mut conn, &donor).await.unwrap();
    assert_eq!((counters.stock, counters.lent), (1, 0));
}

#[tokio::test]
async fn a_borrow_marker_expires_by_itself_within_the_replay_window() {
    let bench = Bench::start().await;
    let sale = bench.sale("marker", 4, 2).await;
    let donor = bench.keys.shard(&sale, 1);
    let mut conn = bench.conn.clone();
    loans::borrow(&mut conn, &donor, "L1", 1, 0, now_ms())
        .await
        .unwrap();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(donor.loan_marker("L1"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let window = i64::try_from(conn.replay_window_ms()).unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= window,
        "marker ttl {ttl_ms} ms, window {window} ms"
    );
    // The window covers every attempt of a call: (1 + retries) x (connect + response).
    assert!(window >= 3 * 10_000, "window {window} ms");
}

#[tokio::test]
async fn credit_run_twice_credits_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("credit", 10, 2).await;
    let (home, donor) = (bench.keys.shard(&sale, 0), bench.keys.shard(&sale, 1));
    let mut conn = bench.conn.clone();
    let loan = loans::borrow(&mut conn, &donor, "L1", 2, 0, now_ms())
        .await
        .unwrap();
    assert!(
        loans::credit(&mut conn, &home, "L1", loan.taken)
            .await
            .unwrap()
    );
    let after_first = bench.snapshot().await;
    // The reply says whether this run credited; the second finds it done and writes nothing.
    assert!(
        !loans::credit(&mut conn, &home, "L1", loan.taken)
            .await
            .unwrap()
    );
    assert_eq!(bench.snapshot().await, after_first);
    let counters = shards::read_counters(&mut conn, &home).await.unwrap();
    assert_eq!(counters.stock, 7);
}

#[tokio::test]
async fn settle_run_twice_settles_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("settle", 10, 2).await;
    let (home, donor) = (bench.keys.shard(&sale, 0), bench.keys.shard(&sale, 1));
    let mut conn = bench.conn.clone();
    let loan = loans::borrow(&mut conn, &donor, "L1", 2, 0, now_ms())
        .await
        .unwrap();
    loans::credit(&mut conn, &home, "L1", loan.taken)
        .await
        .unwrap();
    assert!(loans::settle(&mut conn, &donor, "L1").await.unwrap());
    let after_first = bench.snapshot().await;
    assert!(!loans::settle(&mut conn, &donor, "L1").await.unwrap());
    assert_eq!(bench.snapshot().await, after_first);
    let counters = shards::read_counters(&mut conn, &donor).await.unwrap();
    assert_eq!((counters.stock, counters.lent, counters.sold), (3, 0, 0));
}

#[tokio::test]
async fn ack_run_twice_acknowledges_each_order_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("ack", 10, 1).await;
    let keys = bench.keys.shard(&sale, 0);
    let mut conn = bench.conn.clone();
    // Two orders (1 and 2 units) sold and recorded, as purchase.lua leaves them.
    redis::cmd("HINCRBY")
        .arg(&keys.shard)
        .arg("stock")
        .arg(-3)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let mut orders = Vec::new();
    for quantity in [1u32, 2] {
        let id: String = redis::cmd("XADD")
            .arg(&keys.orders)
            .arg("*")
            .arg("user_id")
            .arg("u")
            .arg("quantity")
            .arg(quantity)
            .query_async(&mut conn)
            .await
            .unwrap();
        orders.push((EntryId::parse(&id).unwrap(), quantity));
    }
    let acks = [ShardAcks {
        keys: keys.clone(),
        orders,
    }];
    assert_eq!(orders::ack(&mut conn, &acks).await.unwrap(), 2);
    let after_first = bench.snapshot().await;
    // The reply counts the orders this run forgot; the second forgets none and adds nothing.
    assert_eq!(orders::ack(&mut conn, &acks).await.unwrap(), 0);
    assert_eq!(bench.snapshot().await, after_first);
    let counters = shards::read_counters(&mut conn, &keys).await.unwrap();
    assert_eq!((counters.sold, counters.pending_units), (3, 0));
}

/// A challenge and a token for it, issued by `signer` to `user` of `sale`.
fn issuance(
    signer: &TokenSigner,
    sale: &SaleId,
    user: &str,
) -> (
    flashgate::testing::tokens::Challenge,
    flashgate::testing::tokens::PurchaseToken,
) {
    let user = flashgate::testing::domain::UserId::parse(user).unwrap();
    let to = Audience { sale, user: &user };
    let expires = now_ms() + 60_000;
    let (challenge, _) = signer.issue_challenge(to, 0, expires);
    let (token, _) = signer.issue_token(to, 1, expires);
    (challenge, token)
}

#[tokio::test]
async fn issue_token_run_twice_for_one_issuance_answers_issued_and_counts_it_once() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("tokens").unwrap();
    let signer = TokenSigner::new(b"scripts-test-secret");
    let (challenge, token) = issuance(&signer, &sale, "buyer");
    let call = IssueCall {
        sale: &sale,
        challenge: &challenge,
        token: &token,
        now_ms: now_ms(),
        cap: 5,
        margin_ms: 1000,
    };
    let mut conn = bench.conn.clone();
    let first = token_store::issue(&mut conn, &bench.keys, &call)
        .await
        .unwrap();
    assert_eq!(first, Issue::Issued);
    let after_first = bench.snapshot().await;
    let second = token_store::issue(&mut conn, &bench.keys, &call)
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(bench.snapshot().await, after_first);
    let issued: u64 = redis::cmd("ZCARD")
        .arg(bench.keys.issued_tokens(&sale))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(issued, 1);
    // Another token for the same challenge is a second exchange: refused.
    let (_, other) = issuance(&signer, &sale, "buyer");
    let again = IssueCall {
        token: &other,
        ..call
    };
    assert_eq!(
        token_store::issue(&mut conn, &bench.keys, &again)
            .await
            .unwrap(),
        Issue::ChallengeUsed
    );
}

#[tokio::test]
async fn issue_token_refused_by_the_cap_is_refused_alike_when_run_again() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("capped").unwrap();
    let signer = TokenSigner::new(b"scripts-test-secret");
    let mut conn = bench.conn.clone();
    let now = now_ms();
    let (challenge, token) = issuance(&signer, &sale, "first");
    let call = IssueCall {
        sale: &sale,
        challenge: &challenge,
        token: &token,
        now_ms: now,
        cap: 1,
        margin_ms: 1000,
    };
    let issued = token_store::issue(&mut conn, &bench.keys, &call)
        .await
        .unwrap();
    assert_eq!(issued, Issue::Issued);
    let (challenge, token) = issuance(&signer, &sale, "second");
    let capped = IssueCall {
        challenge: &challenge,
        token: &token,
        ..call
    };
    let first = token_store::issue(&mut conn, &bench.keys, &capped)
        .await
        .unwrap();
    assert!(matches!(first, Issue::Capped { .. }), "{first:?}");
    let after_first = bench.snapshot().await;
    let second = token_store::issue(&mut conn, &bench.keys, &capped)
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(bench.snapshot().await, after_first);
}

/// The shared per-sale limit at 1 request a second with a burst of `burst`.
fn shared_limit(bench: &Bench, burst: u32) -> SharedSaleLimit {
    let settings = LimitSettings {
        rate_per_sec: 1,
        burst,
    };
    SharedSaleLimit::new(settings, bench.redis.clone()).unwrap()
}

#[tokio::test]
async fn gcra_run_twice_for_one_request_takes_one_slot() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("gcra").unwrap();
    let limit = shared_limit(&bench, 2);
    let first = limit.check_request(&sale, "r1").await.unwrap();
    assert!(first.is_ok());
    let after_first = bench.snapshot().await;
    let second = limit.check_request(&sale, "r1").await.unwrap();
    assert!(second.is_ok());
    assert_eq!(bench.snapshot().await, after_first);
    // The burst of 2 still has its second slot, and only that one.
    assert!(limit.check_request(&sale, "r2").await.unwrap().is_ok());
    assert!(limit.check_request(&sale, "r3").await.unwrap().is_err());
}

#[tokio::test]
async fn gcra_run_twice_for_one_refused_request_writes_nothing() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("gcra").unwrap();
    let limit = shared_limit(&bench, 1);
    assert!(limit.check_request(&sale, "r1").await.unwrap().is_ok());
    let before = bench.snapshot().await;
    let first = limit.check_request(&sale, "r2").await.unwrap();
    let Err(first) = first else {
        panic!("a second request within the second conformed")
    };
    let second = limit.check_request(&sale, "r2").await.unwrap();
    let Err(second) = second else {
        panic!("the re-sent refused request conformed")
    };
    assert_eq!(bench.snapshot().await, before);
    // Redis's clock moved on between the runs: the wait can only have shrunk.
    assert!(second.retry_after <= first.retry_after);
}

#[tokio::test]
async fn export_buyer_run_twice_hands_over_the_same_record_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("export", 10, 1).await;
    let old = bench.keys.shard(&sale, 0);
    let mut conn = bench.conn.clone();
    let record = "2\nk1 export.0.1-0 2 ab #00ff";
    let _: () = redis::cmd("HSET")
        .arg(&old.buyers)
        .arg("ann")
        .arg(record)
        .query_async(&mut conn)
        .await
        .unwrap();
    let first = migration::export_buyer(&mut conn, &old, "ann")
        .await
        .unwrap();
    assert_eq!(first, record);
    let after_first = bench.snapshot().await;
    let second = migration::export_buyer(&mut conn, &old, "ann")
        .await
        .unwrap();
    assert_eq!(
        second, record,
        "every hand-over of a buyer carries the same text"
    );
    assert_eq!(bench.snapshot().await, after_first);
    // A buyer without a record is handed over as "" and leaves an empty tombstone.
    assert_eq!(
        migration::export_buyer(&mut conn, &old, "bob")
            .await
            .unwrap(),
        ""
    );
    let after_bob = bench.snapshot().await;
    assert_eq!(
        migration::export_buyer(&mut conn, &old, "bob")
            .await
            .unwrap(),
        ""
    );
    assert_eq!(bench.snapshot().await, after_bob);
}

#[tokio::test]
async fn stock_change_run_twice_moves_each_shards_units_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("restock", 10, 1).await;
    let keys = bench.keys.shard(&sale, 0);
    let mut conn = bench.conn.clone();
    assert_eq!(
        migration::change_stock(&mut conn, &keys, "up", 5)
            .await
            .unwrap(),
        5
    );
    let after_first = bench.snapshot().await;
    assert_eq!(
        migration::change_stock(&mut conn, &keys, "up", 5)
            .await
            .unwrap(),
        5
    );
    assert_eq!(bench.snapshot().await, after_first);
    // A reduction takes at most what is on the shelf, once.
    assert_eq!(
        migration::change_stock(&mut conn, &keys, "down", -100)
            .await
            .unwrap(),
        -15
    );
    let after_down = bench.snapshot().await;
    assert_eq!(
        migration::change_stock(&mut conn, &keys, "down", -100)
            .await
            .unwrap(),
        -15
    );
    assert_eq!(bench.snapshot().await, after_down);
    let counters = shards::read_counters(&mut conn, &keys).await.unwrap();
    assert_eq!((counters.stock, counters.sold), (0, 0));
}

#[tokio::test]
async fn init_shard_run_twice_never_resets_a_shard() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("init").unwrap();
    let range = ShardSet::contiguous(0, 2).unwrap();
    let mut conn = bench.conn.clone();
    sales::init_shards(&mut conn, &bench.keys, &sale, &range, &[3, 4])
        .await
        .unwrap();
    // A shard sells a unit between the two runs: the second run must keep the sale.
    let keys = bench.keys.shard(&sale, 0);
    let _: () = redis::cmd("HINCRBY")
        .arg(&keys.shard)
        .arg("stock")
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let after_first = bench.snapshot().await;
    sales::init_shards(&mut conn, &bench.keys, &sale, &range, &[3, 4])
        .await
        .unwrap();
    assert_eq!(bench.snapshot().await, after_first);
}

/// A buyer record without a purchase token is under 64 bytes: left to Redis, a new buyer
/// hash would be a listpack (a linear scan per lookup) until its 129th buyer.
#[tokio::test]
async fn init_shard_makes_each_buyer_hash_a_hash_table_from_its_first_buyer() {
    let bench = Bench::start().await;
    let sale = SaleId::parse("table").unwrap();
    let range = ShardSet::contiguous(0, 2).unwrap();
    let mut conn = bench.conn.clone();
    sales::init_shards(&mut conn, &bench.keys, &sale, &range, &[3, 4])
        .await
        .unwrap();
    for shard in 0..2 {
        let buyers = bench.keys.shard(&sale, shard).buyers;
        let _: () = redis::cmd("HSET")
            .arg(&buyers)
            .arg("u1")
            .arg("1\nk table.0.1-0 1 fp")
            .query_async(&mut conn)
            .await
            .unwrap();
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(&buyers)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(encoding, "hashtable", "shard {shard}");
    }
}

#[tokio::test]
async fn sale_update_run_twice_from_one_epoch_applies_once() {
    let bench = Bench::start().await;
    let sale = bench.sale("switch", 10, 2).await;
    let mut conn = bench.conn.clone();
    let stored = sales::load(&mut conn, &bench.keys, &sale)
        .await
        .unwrap()
        .unwrap();
    let update = sales::Update::default().paused(true);
    let expect = sales::Expect::Epoch(stored.epoch);
    let first = sales::update(&mut conn, &bench.keys, &sale, expect, &update)
        .await
        .unwrap();
    assert_eq!(first, Some(stored.epoch + 1));
    let after_first = bench.snapshot().await;
    let second = sales::update(&mut conn, &bench.keys, &sale, expect, &update)
        .await
        .unwrap();
    assert_eq!(
        second, None,
        "a switch from an epoch that is gone is refused"
    );
    assert_eq!(bench.snapshot().await, after_first);
}

#[tokio::test]
async fn import_buyers_run_twice_writes_each_record_once_and_never_over_a_newer_one() {
    let bench = Bench::start().await;
    let sale = bench.sale("import", 10, 1).await;
    let home = bench.keys.shard(&sale, 0);
    let mut conn = bench.conn.clone();
    let ann = UserId::parse("ann").unwrap();
    let bob = UserId::parse("bob").unwrap();
    // Bob bought at his new home already: his record there is newer than the one handed over.
    let _: () = redis::cmd("HSET")
        .arg(&home.buyers)
        .arg("bob")
        .arg("2\nk1 import.0.1-0 1 ab\nk2 import.0.2-0 1 cd")
        .query_async(&mut conn)
        .await
        .unwrap();
    let records = [
        (ann, "1\nk1 import.0.3-0 1 ef".to_owned()),
        (bob, "1\nk1 import.0.1-0 1 ab".to_owned()),
    ];
    migration::import_buyers(&mut conn, &home, &records)
        .await
        .unwrap();
    let after_first = bench.snapshot().await;
    migration::import_buyers(&mut conn, &home, &records)
        .await
        .unwrap();
    assert_eq!(bench.snapshot().await, after_first);
    let bob_now: String = redis::cmd("HGET")
        .arg(&home.buyers)
        .arg("bob")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(bob_now.starts_with("2\n"), "{bob_now}");
}
