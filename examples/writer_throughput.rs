//! Throughput of the gateway's order writer for `scripts/bench-persist.sh`: how many rows per
//! second the batch writer (`persist::writer`) puts into the database, with its real costs —
//! batches of up to BATCH_SIZE orders, up to `queue.writers` of them in flight at once while
//! there is a backlog, each one transaction (on PostgreSQL one `INSERT … SELECT FROM UNNEST
//! … ON CONFLICT DO NOTHING`), then its acknowledgement in Redis: `ack.lua` calls of at most
//! 256 orders of any shards on a single node (one call per shard in a cluster).
//!
//! It pushes N synthetic orders of sale `wbench` (shards 0..64 round robin, entry ids
//! `<i+1>-0`, buyers `u<i>`, one unit each) through an [`OrderQueue`] of capacity N into a
//! running [`Writer`], and times from the first push until the writer has written them all
//! and stopped. The orders have no stream entries, so every acknowledgement's `XDEL` finds
//! nothing, but it is still the Redis round trip the writer pays for. Then it checks that
//! the sale has exactly N rows.
//!
//! Usage: `cargo run --release --example writer_throughput -- DATABASE_URL REDIS_URL [N]
//! [BATCH_SIZE]` (N 200000; BATCH_SIZE the gateway's default, `queue.batch_size`). The
//! database must hold no `wbench` rows yet. Prints `writer rows=N seconds=S rows_per_sec=R
//! batch_size=B`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use flashgate::testing::clock::Clock;
use flashgate::testing::config::QueueSettings;
use flashgate::testing::db::OrderDb;
use flashgate::testing::domain::{EntryId, OrderId, Quantity, SaleId, UserId};
use flashgate::testing::orders::NewOrder;
use flashgate::testing::persist::Persister;
use flashgate::testing::persist::queue::{Admission, OrderQueue, QueuePolicy};
use flashgate::testing::persist::writer::{Writer, WriterSettings};
use flashgate::testing::store::{Keys, Redis, RedisTarget, RedisTimeouts};

const SALE: &str = "wbench";
const SHARDS: u64 = 64;
const DEFAULT_ROWS: u64 = 200_000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (db_url, redis_url, rows, batch) = match args.as_slice() {
        [db, redis, rest @ ..] if rest.len() <= 2 => {
            let rows = rest.first().map_or(Ok(DEFAULT_ROWS), |n| n.parse::<u64>());
            let batch = rest
                .get(1)
                .map_or(Ok(QueueSettings::default().batch_size), |b| {
                    b.parse::<usize>()
                });
            match (rows, batch) {
                (Ok(rows), Ok(batch)) if rows > 0 && batch > 0 => (db, redis, rows, batch),
                _ => {
                    eprintln!("writer_throughput: N and BATCH_SIZE must be positive integers");
                    return ExitCode::from(2);
                }
            }
        }
        _ => {
            eprintln!("usage: writer_throughput DATABASE_URL REDIS_URL [N] [BATCH_SIZE]");
            return ExitCode::from(2);
        }
    };
    match run(db_url, redis_url, rows, batch).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut cause = error.source();
            while let Some(c) = cause {
                message.push_str(&format!(": {c}"));
                cause = c.source();
            }
            eprintln!("writer_throughput: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(db_url: &str, redis_url: &str, rows: u64, batch: usize) -> Result<(), BoxError> {
    let store = OrderDb::connect(db_url).await?;
    let before = count_rows(&store).await?;
    if before != 0 {
        return Err(format!("the database already holds {before} rows of sale {SALE}").into());
    }
    let timeouts = RedisTimeouts {
        response: Duration::from_secs(2),
        connect: Duration::from_secs(2),
    };
    let target = RedisTarget::Single(redis_url.to_owned());
    let redis = Redis::connect(&target, timeouts, 1, Keys::new(SALE)).await?;
    let clock = Clock::default();
    let persister = Persister::new(store.clone(), redis, clock.clone());

    let orders = synthetic_orders(rows, &clock)?;
    let capacity = usize::try_from(rows)?;
    let (queue, rx) = OrderQueue::new(capacity, QueuePolicy::Reject);
    // The gateway's defaults (batch wait, concurrent batches, backoff), with the batch size
    // given on the command line.
    let settings = WriterSettings {
        batch_size: batch,
        drain_timeout: Duration::from_secs(60),
        ..QueueSettings::default().writer()
    };
    let writer = Writer::start(persister, rx, settings);

    let started = Instant::now();
    for order in orders {
        // The queue holds all N, so a slot is always free; never drop an order regardless.
        let permit = loop {
            match queue.admit() {
                Ok(Admission::Queued(permit)) => break permit,
                _ => tokio::task::yield_now().await,
            }
        };
        permit.send(order);
    }
    // Shutting down closes the queue and writes everything it still holds.
    writer.shutdown().await;
    let seconds = started.elapsed().as_secs_f64();

    let written = count_rows(&store).await?;
    if written != rows {
        return Err(
            format!("sale {SALE} has {written} rows after the writer stopped, not {rows}").into(),
        );
    }
    println!(
        "writer rows={rows} seconds={seconds:.3} rows_per_sec={:.0} batch_size={batch}",
        rows as f64 / seconds
    );
    Ok(())
}

/// N distinct orders of sale `wbench`, accepted now.
fn synthetic_orders(rows: u64, clock: &Clock) -> Result<Vec<NewOrder>, BoxError> {
    let sale = SaleId::parse(SALE)?;
    let created_ms = clock.now_ms();
    (0..rows)
        .map(|i| {
            let entry = EntryId::parse(&format!("{}-0", i + 1))?;
            Ok(NewOrder {
                order_id: OrderId::new(sale.clone(), (i % SHARDS) as u32, entry),
                user: UserId::parse(&format!("u{i}"))?,
                quantity: Quantity::ONE,
                created_ms,
            })
        })
        .collect()
}

/// Rows of sale `wbench`.
async fn count_rows(store: &OrderDb) -> Result<u64, BoxError> {
    Ok(store
        .totals(&SaleId::parse(SALE)?)
        .await?
        .iter()
        .map(|t| t.rows)
        .sum())
}
