//! The order database: PostgreSQL in production, SQLite as the embedded default, chosen
//! by `database.url` at start-up. Inserts are idempotent, so an order persisted twice (by
//! the writer and by recovery, say) is one row.

mod postgres;
mod sqlite;

use sqlx::{PgPool, SqlitePool};

use crate::domain::{OrderId, SaleId};
use crate::orders::NewOrder;

/// Why the database could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url must start with postgres:// or sqlite://, got {0:?}")]
    UnsupportedUrl(String),
    #[error("cannot prepare the SQLite directory {0}")]
    SqliteDir(String, #[source] std::io::Error),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored order {0} is invalid")]
    BadRow(String),
}

/// A stored order row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: OrderId,
    pub user_id: String,
    pub quantity: u32,
    pub created_at_ms: i64,
    pub persisted_at_ms: i64,
}

/// Units and rows of one shard of a sale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardTotals {
    pub shard: u32,
    pub rows: u64,
    pub units: u64,
}

/// The order store, one variant per supported database.
#[derive(Debug, Clone)]
pub enum OrderStore {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl OrderStore {
    /// Connects to `url` and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(postgres::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Self::Sqlite(sqlite::connect(url).await?)
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Self::Postgres(pool) => sqlx::migrate!("migrations/postgres").run(pool).await?,
            Self::Sqlite(pool) => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        }
        Ok(())
    }

    /// Inserts `orders` in one transaction, skipping ids already present. Returns the
    /// number of rows inserted.
    pub async fn insert(&self, orders: &[NewOrder], persisted_at_ms: i64) -> Result<u64, DbError> {
        if orders.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Postgres(pool) => postgres::insert(pool, orders, persisted_at_ms).await,
            Self::Sqlite(pool) => sqlite::insert(pool, orders, persisted_at_ms).await,
        }
    }

    /// The order with `id`, if it is a row.
    pub async fn find(&self, id: &OrderId) -> Result<Option<OrderRow>, DbError> {
        let row: Option<(String, i64, i64, i64)> = match self {
            Self::Postgres(pool) => {
                sqlx::query_as("SELECT user_id, quantity::BIGINT, created_at_ms, persisted_at_ms FROM orders WHERE order_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(pool)
                    .await?
            }
            Self::Sqlite(pool) => {
                sqlx::query_as("SELECT user_id, quantity, created_at_ms, persisted_at_ms FROM orders WHERE order_id = ?")
                    .bind(id.to_string())
                    .fetch_optional(pool)
                    .await?
            }
        };
        row.map(|(user_id, quantity, created_at_ms, persisted_at_ms)| {
            let quantity = u32::try_from(quantity).map_err(|_| DbError::BadRow(id.to_string()))?;
            Ok(OrderRow {
                order_id: id.clone(),
                user_id,
                quantity,
                created_at_ms,
                persisted_at_ms,
            })
        })
        .transpose()
    }

    /// Every order row of `sale`, oldest first.
    pub async fn list(&self, sale: &SaleId) -> Result<Vec<OrderRow>, DbError> {
        let rows: Vec<(String, String, i64, i64, i64)> = match self {
            Self::Postgres(pool) => {
                sqlx::query_as("SELECT order_id, user_id, quantity::BIGINT, created_at_ms, persisted_at_ms FROM orders WHERE sale_id = $1 ORDER BY created_at_ms")
                    .bind(sale.as_str())
                    .fetch_all(pool)
                    .await?
            }
            Self::Sqlite(pool) => {
                sqlx::query_as("SELECT order_id, user_id, quantity, created_at_ms, persisted_at_ms FROM orders WHERE sale_id = ? ORDER BY created_at_ms")
                    .bind(sale.as_str())
                    .fetch_all(pool)
                    .await?
            }
        };
        rows.into_iter()
            .map(|(id, user_id, quantity, created_at_ms, persisted_at_ms)| {
                let order_id = OrderId::parse(&id).map_err(|_| DbError::BadRow(id.clone()))?;
                let quantity = u32::try_from(quantity).map_err(|_| DbError::BadRow(id))?;
                Ok(OrderRow {
                    order_id,
                    user_id,
                    quantity,
                    created_at_ms,
                    persisted_at_ms,
                })
            })
            .collect()
    }

    /// Which of `ids` are rows.
    pub async fn existing(&self, ids: &[String]) -> Result<Vec<String>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Self::Postgres(pool) => Ok(sqlx::query_scalar(
                "SELECT order_id FROM orders WHERE order_id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(pool)
            .await?),
            Self::Sqlite(pool) => sqlite::existing(pool, ids).await,
        }
    }

    /// Rows and units per shard of `sale`.
    pub async fn totals(&self, sale: &SaleId) -> Result<Vec<ShardTotals>, DbError> {
        let rows: Vec<(i64, i64, i64)> = match self {
            Self::Postgres(pool) => {
                sqlx::query_as("SELECT shard::BIGINT, COUNT(*), COALESCE(SUM(quantity), 0)::BIGINT FROM orders WHERE sale_id = $1 GROUP BY shard")
                    .bind(sale.as_str())
                    .fetch_all(pool)
                    .await?
            }
            Self::Sqlite(pool) => {
                sqlx::query_as("SELECT shard, COUNT(*), COALESCE(SUM(quantity), 0) FROM orders WHERE sale_id = ? GROUP BY shard")
                    .bind(sale.as_str())
                    .fetch_all(pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(shard, rows, units)| ShardTotals {
                shard: shard as u32,
                rows: rows as u64,
                units: units as u64,
            })
            .collect())
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Self::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }
}
