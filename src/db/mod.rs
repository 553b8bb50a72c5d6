//! The order database: PostgreSQL in production, SQLite as the embedded default, chosen
//! by `database.url` at start-up. Inserts are idempotent, so an order persisted twice (by
//! the writer and by recovery, say) is one row.

mod postgres;
mod sqlite;

use sqlx::PgPool;

pub use sqlite::SqliteStore;

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
    #[error("cannot encode the rows for the database")]
    Encode(#[source] serde_json::Error),
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
    Sqlite(SqliteStore),
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
            Self::Sqlite(store) => {
                sqlx::migrate!("migrations/sqlite")
                    .run(&store.writes)
                    .await?
            }
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
            Self::Sqlite(store) => sqlite::insert(&store.writes, orders, persisted_at_ms).await,
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
            Self::Sqlite(store) => {
                sqlx::query_as("SELECT user_id, quantity, created_at_ms, persisted_at_ms FROM orders WHERE order_id = ?")
                    .bind(id.to_string())
                    .fetch_optional(&store.reads)
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
            Self::Sqlite(store) => {
                let (from, to) = sqlite::sale_key_range(sale.as_str());
                sqlx::query_as("SELECT order_id, user_id, quantity, created_at_ms, persisted_at_ms FROM orders WHERE order_id >= ? AND order_id < ? AND sale_id = ? ORDER BY created_at_ms")
                    .bind(from)
                    .bind(to)
                    .bind(sale.as_str())
                    .fetch_all(&store.reads)
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
            Self::Sqlite(store) => sqlite::existing(&store.reads, ids).await,
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
            Self::Sqlite(store) => {
                let (from, to) = sqlite::sale_key_range(sale.as_str());
                sqlx::query_as("SELECT shard, COUNT(*), COALESCE(SUM(quantity), 0) FROM orders WHERE order_id >= ? AND order_id < ? AND sale_id = ? GROUP BY shard")
                    .bind(from)
                    .bind(to)
                    .bind(sale.as_str())
                    .fetch_all(&store.reads)
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
            Self::Sqlite(store) => {
                sqlx::query("SELECT 1").execute(&store.reads).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryId, Quantity, UserId};

    fn order(sale: &str, shard: u32, seq: u64, quantity: u32) -> NewOrder {
        NewOrder {
            order_id: OrderId::new(
                SaleId::parse(sale).unwrap(),
                shard,
                EntryId::parse(&format!("1700000000000-{seq}")).unwrap(),
            ),
            user: UserId::parse(&format!("u{seq}")).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
            created_ms: 1_700_000_000_000 + seq as i64,
        }
    }

    /// Per-sale queries on SQLite read the sale's key range: sales whose ids sort right
    /// next to it ("a-b", "a_b", "ab", "a0") must not leak into its listing or totals.
    #[tokio::test]
    async fn sqlite_per_sale_queries_see_exactly_that_sale() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/orders.db", dir.path().display());
        let store = OrderStore::connect(&url).await.unwrap();
        let mut orders = vec![
            order("a", 0, 1, 2),
            order("a", 1, 2, 1),
            order("a", 1, 3, 3),
        ];
        for (i, neighbour) in ["a-b", "a_b", "ab", "a0", "A"].iter().enumerate() {
            orders.push(order(neighbour, 0, 10 + i as u64, 5));
        }
        assert_eq!(store.insert(&orders, 1).await.unwrap(), orders.len() as u64);
        assert_eq!(
            store.insert(&orders, 2).await.unwrap(),
            0,
            "inserts are idempotent"
        );

        let first = &orders[0];
        let row = store.find(&first.order_id).await.unwrap().expect("a row");
        assert_eq!(
            (
                row.user_id.as_str(),
                row.quantity,
                row.created_at_ms,
                row.persisted_at_ms
            ),
            ("u1", 2, first.created_ms, 1),
            "the first insert wrote the row; the second changed nothing"
        );
        let ids = [first.order_id.to_string(), "a.0.1-1".to_owned()];
        assert_eq!(store.existing(&ids).await.unwrap(), [ids[0].clone()]);

        let sale = SaleId::parse("a").unwrap();
        let listed: Vec<String> = store
            .list(&sale)
            .await
            .unwrap()
            .iter()
            .map(|row| row.order_id.to_string())
            .collect();
        let expected: Vec<String> = orders[..3].iter().map(|o| o.order_id.to_string()).collect();
        assert_eq!(listed, expected);

        let mut totals = store.totals(&sale).await.unwrap();
        totals.sort_by_key(|t| t.shard);
        assert_eq!(
            totals,
            [
                ShardTotals {
                    shard: 0,
                    rows: 1,
                    units: 2
                },
                ShardTotals {
                    shard: 1,
                    rows: 2,
                    units: 4
                },
            ]
        );
    }
}
