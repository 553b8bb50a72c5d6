//! What the gateway reads back from the order database: one order, a sale's rows, which
//! orders are rows, per-shard totals, a sale's order ids page by page, and a health probe.
//! Every call is bounded by the database's call deadline.

use super::{Backend, DbError, OrderDb, OrderRow, ShardTotals, ledger, sqlite};
use crate::domain::{OrderId, OrderStatus, SaleId};

impl OrderDb {
    /// The order with `id`, if it is a row.
    pub async fn find(&self, id: &OrderId) -> Result<Option<OrderRow>, DbError> {
        let row: Option<(String, i64, i64, i64, String)> = self
            .bounded("find order", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => {
                        sqlx::query_as("SELECT user_id, quantity::BIGINT, created_at_ms, persisted_at_ms, status FROM orders WHERE order_id = $1")
                            .bind(id.to_string())
                            .fetch_optional(pool)
                            .await?
                    }
                    Backend::Sqlite(store) => {
                        let (sale, ms, seq, shard) = sqlite::key(id);
                        sqlx::query_as("SELECT user_id, quantity, created_at_ms, persisted_at_ms, status FROM orders WHERE sale_id = ? AND entry_ms = ? AND entry_seq = ? AND shard = ?")
                            .bind(sale)
                            .bind(ms)
                            .bind(seq)
                            .bind(shard)
                            .fetch_optional(&store.reads)
                            .await?
                    }
                })
            })
            .await?;
        row.map(
            |(user_id, quantity, created_at_ms, persisted_at_ms, status)| {
                let bad_row = || DbError::BadRow(id.to_string());
                let quantity = u32::try_from(quantity).map_err(|_| bad_row())?;
                let status = OrderStatus::parse_stored(&status).ok_or_else(bad_row)?;
                Ok(OrderRow {
                    order_id: id.clone(),
                    user_id,
                    quantity,
                    created_at_ms,
                    persisted_at_ms,
                    status,
                })
            },
        )
        .transpose()
    }

    /// Every order row of `sale`, oldest first.
    pub async fn list(&self, sale: &SaleId) -> Result<Vec<OrderRow>, DbError> {
        let rows: Vec<(String, String, i64, i64, i64, String)> = self
            .bounded("list orders", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => {
                        sqlx::query_as("SELECT order_id, user_id, quantity::BIGINT, created_at_ms, persisted_at_ms, status FROM orders WHERE sale_id = $1 ORDER BY created_at_ms")
                            .bind(sale.as_str())
                            .fetch_all(pool)
                            .await?
                    }
                    Backend::Sqlite(store) => {
                        sqlx::query_as(concat!("SELECT ", sqlite::order_id!(), ", user_id, quantity, created_at_ms, persisted_at_ms, status FROM orders WHERE sale_id = ? ORDER BY created_at_ms"))
                            .bind(sale.as_str())
                            .fetch_all(&store.reads)
                            .await?
                    }
                })
            })
            .await?;
        rows.into_iter()
            .map(
                |(id, user_id, quantity, created_at_ms, persisted_at_ms, status)| {
                    let order_id = parse_stored_id(id.clone())?;
                    let quantity =
                        u32::try_from(quantity).map_err(|_| DbError::BadRow(id.clone()))?;
                    let status = OrderStatus::parse_stored(&status).ok_or(DbError::BadRow(id))?;
                    Ok(OrderRow {
                        order_id,
                        user_id,
                        quantity,
                        created_at_ms,
                        persisted_at_ms,
                        status,
                    })
                },
            )
            .collect()
    }

    /// Up to `limit` order ids of `sale` that come after `after` (from the first with
    /// `None`) in the order of the database's key (so the primary key serves each page): a
    /// sale's rows read page by page.
    pub async fn order_ids_after(
        &self,
        sale: &SaleId,
        after: Option<&OrderId>,
        limit: u32,
    ) -> Result<Vec<OrderId>, DbError> {
        let ids: Vec<String> = self
            .bounded("page order ids", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => {
                        sqlx::query_scalar("SELECT order_id FROM orders WHERE sale_id = $1 AND order_id > $2 ORDER BY order_id LIMIT $3")
                            .bind(sale.as_str())
                            .bind(after.map(OrderId::text).unwrap_or_default())
                            .bind(i64::from(limit))
                            .fetch_all(pool)
                            .await?
                    }
                    Backend::Sqlite(store) => {
                        // Before every key of the sale: entry parts are never negative.
                        let (_, ms, seq, shard) = after.map_or(("", -1, -1, -1), sqlite::key);
                        sqlx::query_scalar(concat!("SELECT ", sqlite::order_id!(), " FROM orders WHERE sale_id = ? AND (entry_ms, entry_seq, shard) > (?, ?, ?) ORDER BY entry_ms, entry_seq, shard LIMIT ?"))
                            .bind(sale.as_str())
                            .bind(ms)
                            .bind(seq)
                            .bind(shard)
                            .bind(i64::from(limit))
                            .fetch_all(&store.reads)
                            .await?
                    }
                })
            })
            .await?;
        ids.into_iter().map(parse_stored_id).collect()
    }

    /// Those of `ids` that are rows.
    pub async fn existing(&self, ids: &[OrderId]) -> Result<Vec<OrderId>, DbError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.bounded("find existing orders", async {
            match &self.backend {
                Backend::Postgres(pool) => ledger::pg_existing(pool, ids).await,
                Backend::Sqlite(store) => sqlite::existing(&store.reads, ids).await,
            }
        })
        .await
    }

    /// Rows and units per shard of `sale`.
    pub async fn totals(&self, sale: &SaleId) -> Result<Vec<ShardTotals>, DbError> {
        self.bounded("sum orders", async {
            match &self.backend {
                Backend::Postgres(pool) => ledger::pg_totals(pool, sale).await,
                Backend::Sqlite(store) => ledger::sqlite_totals(&store.reads, sale).await,
            }
        })
        .await
    }

    /// Checks the database answers (within the call deadline).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.bounded("ping", async {
            match &self.backend {
                Backend::Postgres(pool) => {
                    sqlx::query("SELECT 1").execute(pool).await?;
                }
                Backend::Sqlite(store) => {
                    sqlx::query("SELECT 1").execute(&store.reads).await?;
                }
            }
            Ok(())
        })
        .await
    }
}

/// An order id read from a row.
pub(super) fn parse_stored_id(id: String) -> Result<OrderId, DbError> {
    OrderId::parse(&id).map_err(|_| DbError::BadRow(id))
}
