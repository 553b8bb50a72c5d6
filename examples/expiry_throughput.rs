//! Throughput of the expiry sweeper for `scripts/bench-expiry.sh`: how many unpaid orders per
//! second one instance expires and gives back, with every real cost — the batched
//! `UPDATE … FOR UPDATE SKIP LOCKED` that expires them, one `return_units.lua` call per order
//! on the buyer's home shard, and the batched mark of the returns in the database.
//!
//! It creates sale `xbench` (N units over 8 shards, a one-second payment window), records N
//! one-unit orders as `purchase.lua` would leave them (each buyer's record on their home
//! shard), writes their rows through the order writer's insert
//! (all created two seconds ago, so all are overdue), then times sweeps until none is left
//! and checks that all N units are back on the shelves.
//!
//! Usage: `cargo run --release --example expiry_throughput -- DATABASE_URL REDIS_URL [N]
//! [BATCH]` (N 20000; BATCH the default `lifecycle.batch`). The database must hold no
//! `xbench` rows yet. Prints `expiry orders=N seconds=S per_sec=R per_min=M`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use flashgate::testing::clock::Clock;
use flashgate::testing::config::LifecycleSettings;
use flashgate::testing::db::OrderDb;
use flashgate::testing::domain::UserId;
use flashgate::testing::domain::{EntryId, OrderId, Quantity, SaleDefinition, SaleId, SaleSpec};
use flashgate::testing::lifecycle::Lifecycle;
use flashgate::testing::orders::NewOrder;
use flashgate::testing::persist::Persister;
use flashgate::testing::sales::SaleRegistry;
use flashgate::testing::stock::StockEngine;
use flashgate::testing::store::{Keys, Redis, RedisTarget, RedisTimeouts, shards};

const SALE: &str = "xbench";
const SHARDS: u32 = 8;
const DEFAULT_ORDERS: u64 = 20_000;
/// Orders recorded per Redis pipeline and rows per insert while setting up.
const SETUP_CHUNK: usize = 2000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [db, redis, rest @ ..] if rest.len() <= 2 => {
            let orders = rest
                .first()
                .map_or(Ok(DEFAULT_ORDERS), |n| n.parse::<u64>());
            let batch = rest
                .get(1)
                .map_or(Ok(LifecycleSettings::default().batch), |b| b.parse::<u32>());
            match (orders, batch) {
                (Ok(n), Ok(b)) if n > 0 && b > 0 => Some((db.clone(), redis.clone(), n, b)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((db_url, redis_url, orders, batch)) = parsed else {
        eprintln!("usage: expiry_throughput DATABASE_URL REDIS_URL [N] [BATCH]");
        return ExitCode::from(2);
    };
    match run(&db_url, &redis_url, orders, batch).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("expiry_throughput: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(db_url: &str, redis_url: &str, orders: u64, batch: u32) -> Result<(), BoxError> {
    let db = OrderDb::connect(db_url).await?;
    let timeouts = RedisTimeouts {
        response: Duration::from_secs(10),
        connect: Duration::from_secs(5),
    };
    let target = RedisTarget::Single(redis_url.to_owned());
    let redis = Redis::connect(&target, timeouts, 2, Keys::new("xb")).await?;
    let registry = SaleRegistry::new(redis.clone(), StockEngine::new(redis.clone()));
    let sale = SaleId::parse(SALE)?;
    let now = time::OffsetDateTime::now_utc();
    let spec = SaleSpec::try_from(SaleDefinition {
        name: "Expiry bench".into(),
        stock: orders,
        shards: SHARDS,
        starts_at: now - time::Duration::minutes(1),
        ends_at: now + time::Duration::hours(1),
        per_user_limit: 1,
        max_per_order: 1,
        pow_difficulty: 0,
        payment_window_s: 1,
    })?;
    registry.put(&sale, spec, now).await?;
    let clock = Clock::default();
    let persister = Persister::new(db, redis.clone(), clock.clone());
    record_orders(&registry, &persister, &sale, orders, clock.now_ms() - 2000).await?;
    let before = shelves(&redis, &sale).await?;

    let settings = LifecycleSettings {
        batch,
        ..LifecycleSettings::default()
    };
    let lifecycle = Lifecycle::new(persister, registry.clone(), clock, settings);
    let started = Instant::now();
    let mut expired = 0;
    loop {
        let sweep = lifecycle.run_once().await;
        expired += sweep.expired;
        if sweep.expired == 0 {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let back = shelves(&redis, &sale).await? - before;
    if expired != orders || back != orders {
        return Err(format!("expired {expired} and {back} units back, not {orders}").into());
    }
    let per_sec = orders as f64 / seconds;
    println!(
        "expiry orders={orders} seconds={seconds:.3} per_sec={per_sec:.0} per_min={:.0} batch={batch}",
        per_sec * 60.0
    );
    Ok(())
}

/// Records `n` one-unit orders created at `created_ms`: each buyer's record at their home
/// (as `purchase.lua` leaves it), then their rows. The shelves keep their units: the bench
/// counts the units the sweep puts back on top.
async fn record_orders(
    registry: &SaleRegistry,
    persister: &Persister,
    sale: &SaleId,
    n: u64,
    created_ms: i64,
) -> Result<(), BoxError> {
    let rt = registry
        .get(sale)
        .await?
        .ok_or("the sale was not created")?;
    let keys = persister.redis().keys();
    let all: Vec<u64> = (0..n).collect();
    for chunk in all.chunks(SETUP_CHUNK) {
        let mut pipe = redis::pipe();
        let mut rows = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let user = UserId::parse(&format!("x{i}"))?;
            let home = rt.home_of(&user);
            let order = OrderId::new(sale.clone(), home, EntryId::parse(&format!("{}-0", i + 1))?);
            let shard = keys.shard(sale, home);
            let record = format!("1\nk {order} 1 fp");
            pipe.hset(&shard.buyers, user.as_str(), record).ignore();
            rows.push(NewOrder {
                order_id: order,
                user,
                quantity: Quantity::new(1)?,
                created_ms,
            });
        }
        let () = pipe.query_async(&mut persister.redis().conn()).await?;
        persister.persist(&rows).await?;
    }
    Ok(())
}

/// Units on the shelves of every shard of `sale`.
async fn shelves(redis: &Redis, sale: &SaleId) -> Result<u64, BoxError> {
    let mut total = 0;
    for shard in 0..SHARDS {
        let counters =
            shards::read_counters(&mut redis.conn(), &redis.keys().shard(sale, shard)).await?;
        total += counters.stock;
    }
    Ok(total)
}
