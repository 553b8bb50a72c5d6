//! The order database: PostgreSQL in production, SQLite as the embedded default, chosen
//! by `database.url` at start-up. Inserts are idempotent, so an order persisted twice (by
//! the writer and by recovery, say) is one row.

mod error;
mod jsonb;
mod lifecycle;
mod postgres;
mod reads;
mod sqlite;

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;

pub use error::DbError;
pub use lifecycle::{DueReturn, Transition};
pub use sqlite::SqliteDb;

use crate::domain::NewOrder;
use crate::domain::{OrderId, OrderStatus};

/// How long database calls may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTimeouts {
    /// Longest wait for a pooled connection, connecting included.
    pub acquire: Duration,
    /// Longest one statement may run (PostgreSQL enforces it too, as `statement_timeout`).
    pub statement: Duration,
}

impl Default for DbTimeouts {
    fn default() -> Self {
        Self {
            acquire: Duration::from_secs(3),
            statement: Duration::from_secs(5),
        }
    }
}

impl DbTimeouts {
    /// The deadline of one call: a connection, then its statement. The pool's acquire
    /// timeout and PostgreSQL's `statement_timeout` end most slow calls first; this one also
    /// ends calls that neither can, such as a server that stopped answering (its TCP
    /// connection stays open, and nothing else would notice).
    pub fn call(&self) -> Duration {
        self.acquire + self.statement
    }
}

/// A stored order row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: OrderId,
    pub user_id: String,
    pub quantity: u32,
    pub created_at_ms: i64,
    pub persisted_at_ms: i64,
    /// `confirmed`, `paid`, `cancelled` or `expired`.
    pub status: OrderStatus,
}

/// Units and rows of one shard of a sale.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardTotals {
    pub shard: u32,
    pub rows: u64,
    pub units: u64,
}

/// The order database: one of the supported backends, and the time limits of every call.
#[derive(Debug, Clone)]
pub struct OrderDb {
    backend: Backend,
    timeouts: DbTimeouts,
}

/// The database behind [`OrderDb`].
#[derive(Debug, Clone)]
enum Backend {
    Postgres(PgPool),
    Sqlite(SqliteDb),
}

impl OrderDb {
    /// Connects to `url` with the default time limits and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        Self::connect_with(url, DbTimeouts::default()).await
    }

    /// Connects to `url` and applies the migrations; every later call is bounded by
    /// `timeouts`.
    pub async fn connect_with(url: &str, timeouts: DbTimeouts) -> Result<Self, DbError> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(postgres::connect(url, timeouts).await?)
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::connect(url, timeouts).await?)
        } else {
            return Err(DbError::UnsupportedUrl(url.to_owned()));
        };
        let store = Self { backend, timeouts };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations. On PostgreSQL without the statement timeout: a migration may
    /// rightly take longer than any order write (an index over a large table).
    async fn migrate(&self) -> Result<(), DbError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut *conn)
                    .await?;
                sqlx::migrate!("migrations/postgres")
                    .run(&mut *conn)
                    .await?;
                sqlx::query("RESET statement_timeout")
                    .execute(&mut *conn)
                    .await?;
            }
            Backend::Sqlite(store) => {
                sqlx::migrate!("migrations/sqlite")
                    .run(&store.writes)
                    .await?
            }
        }
        Ok(())
    }

    /// Runs `call`, failing with [`DbError::Timeout`] if it outlives the call deadline.
    /// (Dropping a call mid-statement is safe: sqlx discards or resynchronises the
    /// connection before it serves again.)
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let after = self.timeouts.call();
        tokio::time::timeout(after, call)
            .await
            .unwrap_or(Err(DbError::Timeout { what, after }))
    }

    /// Inserts `orders` in one transaction, skipping ids already present. Returns the
    /// number of rows inserted.
    pub async fn insert(&self, orders: &[NewOrder], persisted_at_ms: i64) -> Result<u64, DbError> {
        if orders.is_empty() {
            return Ok(0);
        }
        self.bounded("insert orders", async {
            match &self.backend {
                Backend::Postgres(pool) => postgres::insert(pool, orders, persisted_at_ms).await,
                Backend::Sqlite(store) => {
                    sqlite::insert(&store.writes, orders, persisted_at_ms).await
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EntryId, Quantity, SaleId, UserId};

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
        let store = OrderDb::connect(&url).await.unwrap();
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

        let mut paged: Vec<String> = Vec::new();
        loop {
            let page = store
                .order_ids_after(&sale, paged.last().map(String::as_str), 2)
                .await
                .unwrap();
            paged.extend(page.iter().cloned());
            if page.len() < 2 {
                break;
            }
        }
        let mut by_id = expected.clone();
        by_id.sort();
        assert_eq!(
            paged, by_id,
            "pages of two cover the sale once, in key order"
        );

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
