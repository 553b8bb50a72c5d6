//! SQLite specifics: the embedded default. One file, WAL journal, full fsync on commit (a
//! row is what makes an order safe to forget in Redis), multi-row inserts in one
//! transaction.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::DbError;
use crate::orders::NewOrder;

/// Rows per INSERT statement (7 parameters each, well under SQLite's 32,766).
const ROWS_PER_STATEMENT: usize = 1000;

/// The SQLite order store: one connection that writes, a small pool that reads.
///
/// One writer because SQLite runs one write transaction at a time anyway, and because a
/// connection's page cache survives only while no *other* connection commits: with every
/// batch on the same connection, the B-tree pages each commit touches stay cached instead
/// of being read back from the file after each commit.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The only connection that inserts orders.
    pub(super) writes: SqlitePool,
    /// Lookups, listings, reconciliation and health checks.
    pub(super) reads: SqlitePool,
}

pub(super) async fn connect(url: &str) -> Result<SqliteStore, DbError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        // Statement journals (a multi-row INSERT keeps one) in memory, never in temp files.
        .pragma("temp_store", "memory")
        .busy_timeout(Duration::from_secs(5));
    if let Some(dir) = Path::new(options.get_filename())
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::SqliteDir(dir.display().to_string(), e))?;
    }
    let pool = |connections: u32| {
        SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options.clone())
    };
    Ok(SqliteStore {
        writes: pool(1).await?,
        reads: pool(4).await?,
    })
}

/// Bounds of the order ids of `sale`: ids are `<sale>.<shard>.<entry>`, so the primary key
/// keeps a sale's rows together between `<sale>.` and `<sale>/` ('/' follows '.'). No sale
/// id contains '.' or '/', so no other sale's ids fall in between; the queries still filter
/// on `sale_id` as well, which costs nothing on rows already in range.
pub(super) fn sale_key_range(sale: &str) -> (String, String) {
    (format!("{sale}."), format!("{sale}/"))
}

pub(super) async fn insert(
    pool: &SqlitePool,
    orders: &[NewOrder],
    persisted_at_ms: i64,
) -> Result<u64, DbError> {
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    for chunk in orders.chunks(ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO orders (order_id, sale_id, shard, user_id, quantity, created_at_ms, persisted_at_ms) ",
        );
        builder.push_values(chunk, |mut row, order| {
            row.push_bind(order.order_id.to_string())
                .push_bind(order.order_id.sale().as_str().to_owned())
                .push_bind(i64::from(order.order_id.shard()))
                .push_bind(order.user.as_str().to_owned())
                .push_bind(i64::from(order.quantity.get()))
                .push_bind(order.created_ms)
                .push_bind(persisted_at_ms);
        });
        builder.push(" ON CONFLICT (order_id) DO NOTHING");
        inserted += builder.build().execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}

pub(super) async fn existing(pool: &SqlitePool, ids: &[String]) -> Result<Vec<String>, DbError> {
    let mut found = Vec::new();
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT order_id FROM orders WHERE order_id IN (");
        let mut list = builder.separated(", ");
        for id in chunk {
            list.push_bind(id.clone());
        }
        builder.push(")");
        found.extend(
            builder
                .build_query_scalar::<String>()
                .fetch_all(pool)
                .await?,
        );
    }
    Ok(found)
}
