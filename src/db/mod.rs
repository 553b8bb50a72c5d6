//! The order database: PostgreSQL in production, SQLite as the embedded default, chosen
//! by `database.url` at start-up. Inserts are idempotent, so an order persisted twice (by
//! the writer and by recovery, say) is one row.

mod error;
mod ledger;
mod lifecycle;
mod postgres;
mod reads;
mod sqlite;

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;

pub use error::DbError;
pub use ledger::DbLedger;
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

    fn order(sale: &str, shard: u32, entry: (u64, u64), quantity: u32) -> NewOrder {
        let (ms, seq) = entry;
        NewOrder {
            order_id: OrderId::new(
                SaleId::parse(sale).unwrap(),
                shard,
                EntryId::parse(&format!("{ms}-{seq}")).unwrap(),
            ),
            user: UserId::parse(&format!("u{ms}x{seq}")).unwrap(),
            quantity: Quantity::new(quantity).unwrap(),
            created_ms: ms as i64,
        }
    }

    fn ids(orders: &[NewOrder]) -> Vec<OrderId> {
        orders.iter().map(|o| o.order_id.clone()).collect()
    }

    async fn sqlite(dir: &tempfile::TempDir) -> OrderDb {
        let url = format!("sqlite://{}/orders.db", dir.path().display());
        OrderDb::connect(&url).await.unwrap()
    }

    /// Per-sale queries on SQLite read the sale's part of the key: sales whose ids sort
    /// right next to it ("a-b", "a_b", "ab", "a0") must not leak into its listing or
    /// totals, and one entry id on two shards is two orders.
    #[tokio::test]
    async fn sqlite_per_sale_queries_see_exactly_that_sale() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        const MS: u64 = 1_700_000_000_000;
        // Inserted out of arrival order, with an entry id shared by two shards and a
        // sequence number that sorts before its predecessor as text ("10" < "9").
        let mut orders = vec![
            order("a", 1, (MS + 1, 10), 3),
            order("a", 0, (MS, 0), 2),
            order("a", 1, (MS, 0), 1),
            order("a", 2, (MS + 1, 9), 4),
        ];
        for (i, neighbour) in ["a-b", "a_b", "ab", "a0", "A"].iter().enumerate() {
            orders.push(order(neighbour, 0, (MS, i as u64), 5));
        }
        assert_eq!(store.insert(&orders, 1).await.unwrap(), orders.len() as u64);
        assert_eq!(
            store.insert(&orders, 2).await.unwrap(),
            0,
            "inserts are idempotent"
        );

        for placed in &orders {
            let row = store.find(&placed.order_id).await.unwrap().expect("a row");
            assert_eq!(
                (row.order_id.clone(), row.user_id.as_str(), row.quantity),
                (
                    placed.order_id.clone(),
                    placed.user.as_str(),
                    placed.quantity.get()
                ),
                "found by its id"
            );
            assert_eq!(
                row.persisted_at_ms, 1,
                "the first insert wrote the row; the second changed nothing"
            );
        }
        let absent = OrderId::parse("a.0.1700000000000-1").unwrap();
        assert_eq!(store.find(&absent).await.unwrap(), None);
        let asked = [orders[1].order_id.clone(), absent];
        assert_eq!(store.existing(&asked).await.unwrap(), [asked[0].clone()]);

        let sale = SaleId::parse("a").unwrap();
        let listed: Vec<OrderId> = store
            .list(&sale)
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.order_id)
            .collect();
        assert_eq!(listed.len(), 4);
        assert!(
            listed
                .windows(2)
                .all(|w| w[0].entry().millis() <= w[1].entry().millis()),
            "oldest first: {listed:?}"
        );

        let mut paged: Vec<OrderId> = Vec::new();
        loop {
            let page = store.order_ids_after(&sale, paged.last(), 2).await.unwrap();
            paged.extend(page.iter().cloned());
            if page.len() < 2 {
                break;
            }
        }
        let arrival = ids(&[
            orders[1].clone(),
            orders[2].clone(),
            orders[3].clone(),
            orders[0].clone(),
        ]);
        assert_eq!(
            paged, arrival,
            "pages of two cover the sale once, in arrival order (entry id, then shard)"
        );

        let mut totals = store.totals(&sale).await.unwrap();
        totals.sort_by_key(|t| t.shard);
        assert_eq!(
            totals,
            [(0, 1, 2), (1, 2, 4), (2, 1, 4)].map(|(shard, rows, units)| ShardTotals {
                shard,
                rows,
                units
            })
        );
    }

    /// A batch goes in statements of several sizes: every row of it is inserted once, a row
    /// already present is skipped, and the count says how many were new.
    #[tokio::test]
    async fn sqlite_batches_of_any_size_insert_each_new_row_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite(&dir).await;
        let batch: Vec<NewOrder> = (0..167)
            .map(|i| {
                order(
                    "big",
                    i % 5,
                    (1_700_000_000_000 + u64::from(i / 3), u64::from(i % 3)),
                    1 + i % 4,
                )
            })
            .collect();
        // Every third row first (56), then all of them: 64 + 64 + 32 + 4 + 2 + 1.
        let some: Vec<NewOrder> = batch.iter().step_by(3).cloned().collect();
        assert_eq!(store.insert(&some, 1).await.unwrap(), 56);
        assert_eq!(store.insert(&batch, 2).await.unwrap(), 167 - 56);
        let sale = SaleId::parse("big").unwrap();
        let rows = store.list(&sale).await.unwrap();
        assert_eq!(rows.len(), 167);
        for (row, placed) in rows.iter().zip({
            let mut sorted = batch.clone();
            sorted.sort_by_key(|o| o.created_ms);
            sorted
        }) {
            assert_eq!(row.created_at_ms, placed.created_ms);
        }
        let units: u64 = store
            .totals(&sale)
            .await
            .unwrap()
            .iter()
            .map(|t| t.units)
            .sum();
        assert_eq!(
            units,
            batch
                .iter()
                .map(|o| u64::from(o.quantity.get()))
                .sum::<u64>()
        );
        for placed in &batch {
            let row = store.find(&placed.order_id).await.unwrap().expect("a row");
            assert_eq!(
                (row.user_id.as_str(), row.quantity),
                (placed.user.as_str(), placed.quantity.get())
            );
        }
    }

    /// A database whose rows were keyed by order id comes out of the arrival-keyed
    /// migration with every row, its lifecycle state and its id intact.
    #[tokio::test]
    async fn sqlite_rows_keyed_by_order_id_survive_the_arrival_key_migration() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/orders.db", dir.path().display());
        {
            let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
                .await
                .unwrap();
            let mut before = sqlx::migrate!("migrations/sqlite");
            before.migrations = before
                .migrations
                .iter()
                .filter(|m| m.version < 4)
                .cloned()
                .collect::<Vec<_>>()
                .into();
            before.run(&pool).await.unwrap();
            sqlx::query(
                "INSERT INTO orders (order_id, sale_id, shard, user_id, quantity, created_at_ms, \
                   persisted_at_ms, status, settled_at_ms, returned_at_ms, return_lease_ms) VALUES \
                 ('s-1.12.1700000000123-45', 's-1', 12, 'alice', 2, 10, 11, 'cancelled', 12, NULL, 13), \
                 ('s-1.0.1700000000000-0', 's-1', 0, 'bob', 1, 20, 21, 'paid', 22, NULL, NULL), \
                 ('t.3.9-9223372036854775807', 't', 3, 'carol', 5, 30, 31, 'confirmed', NULL, NULL, NULL)",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }

        let store = OrderDb::connect(&url).await.unwrap();
        let alice = OrderId::parse("s-1.12.1700000000123-45").unwrap();
        let row = store.find(&alice).await.unwrap().expect("alice's row");
        assert_eq!(
            (
                row.user_id.as_str(),
                row.quantity,
                row.created_at_ms,
                row.persisted_at_ms,
                row.status
            ),
            ("alice", 2, 10, 11, OrderStatus::Cancelled)
        );
        let carol = OrderId::parse("t.3.9-9223372036854775807").unwrap();
        assert_eq!(
            store.find(&carol).await.unwrap().map(|r| r.status),
            Some(OrderStatus::Confirmed)
        );
        let sale = SaleId::parse("s-1").unwrap();
        assert_eq!(
            store.order_ids_after(&sale, None, 10).await.unwrap(),
            [
                OrderId::parse("s-1.0.1700000000000-0").unwrap(),
                alice.clone()
            ],
            "the sale's rows, oldest first"
        );
        let Backend::Sqlite(db) = &store.backend else {
            unreachable!("a SQLite URL")
        };
        let by_id: Vec<String> =
            sqlx::query_scalar("SELECT order_id FROM orders_by_id ORDER BY order_id")
                .fetch_all(&db.reads)
                .await
                .unwrap();
        assert_eq!(
            by_id,
            [
                "s-1.0.1700000000000-0",
                "s-1.12.1700000000123-45",
                "t.3.9-9223372036854775807"
            ],
            "the view shows each row with its id"
        );
        // The return outbox still sees alice's cancelled order, under its lease.
        let due = store.claim_returns(13, 100, 10).await.unwrap();
        assert_eq!(
            due.iter().map(|d| &d.order_id).collect::<Vec<_>>(),
            [&alice]
        );
        assert_eq!(store.mark_returned(&[alice], 50).await.unwrap(), 1);
        assert!(
            store
                .claim_returns(1_000, 2_000, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
