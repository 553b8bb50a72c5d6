//! The database's side of a sale's reconciliation, read in one snapshot: its rows and
//! their units per shard, their units by lifecycle state, and which of the orders Redis
//! still holds for the database are rows already.
//!
//! One snapshot, because the order writer moves an order with a commit and then deletes
//! its stream entry: figures read in separate statements could each miss an order
//! committed between them, or count it twice. PostgreSQL reads in one `REPEATABLE READ`
//! transaction; SQLite (in WAL mode) in one read transaction, which sees the database as
//! its first statement found it until it ends.

use std::collections::HashSet;

use sqlx::{PgExecutor, SqliteExecutor};

use super::{Backend, DbError, OrderDb, ShardTotals, reads, sqlite};
use crate::domain::{OrderId, OrderStatus, SaleId};

/// Order ids asked about per statement.
const ID_PAGE: usize = 1000;

/// Units of one shard's rows by lifecycle state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LifecycleTotals {
    pub shard: u32,
    /// Units of `confirmed` rows (awaiting payment).
    pub awaiting: u64,
    pub paid: u64,
    /// Units of cancelled and expired rows.
    pub settled_unpaid: u64,
    /// Units of cancelled and expired rows already back on the sale's shelves.
    pub returned: u64,
}

/// A sale's figures in the database, all as of one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbLedger {
    /// Rows and units per shard.
    pub rows: Vec<ShardTotals>,
    /// Units per shard and lifecycle state.
    pub states: Vec<LifecycleTotals>,
    /// Those of the ids asked about that are rows.
    pub existing: HashSet<OrderId>,
}

impl OrderDb {
    /// `sale`'s figures, and which of `ids` are rows, in one snapshot. Each statement is
    /// bounded by the call deadline.
    pub async fn ledger(&self, sale: &SaleId, ids: &[OrderId]) -> Result<DbLedger, DbError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut tx = self
                    .bounded("begin a snapshot", async { Ok(pool.begin().await?) })
                    .await?;
                self.bounded("begin a snapshot", async {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .execute(&mut *tx)
                        .await?;
                    Ok(())
                })
                .await?;
                let rows = self
                    .bounded("sum orders", pg_totals(&mut *tx, sale))
                    .await?;
                let states = self
                    .bounded("sum orders by state", pg_states(&mut *tx, sale))
                    .await?;
                let mut existing = HashSet::new();
                for page in ids.chunks(ID_PAGE) {
                    let found = self
                        .bounded("find existing orders", pg_existing(&mut *tx, page))
                        .await?;
                    existing.extend(found);
                }
                self.bounded("end a snapshot", async { Ok(tx.rollback().await?) })
                    .await?;
                Ok(DbLedger {
                    rows,
                    states,
                    existing,
                })
            }
            Backend::Sqlite(store) => {
                let mut tx = self
                    .bounded("begin a snapshot", async { Ok(store.reads.begin().await?) })
                    .await?;
                let rows = self
                    .bounded("sum orders", sqlite_totals(&mut *tx, sale))
                    .await?;
                let states = self
                    .bounded("sum orders by state", sqlite_states(&mut *tx, sale))
                    .await?;
                let mut existing = HashSet::new();
                for page in ids.chunks(ID_PAGE) {
                    let found = self
                        .bounded("find existing orders", sqlite::existing(&mut *tx, page))
                        .await?;
                    existing.extend(found);
                }
                self.bounded("end a snapshot", async { Ok(tx.rollback().await?) })
                    .await?;
                Ok(DbLedger {
                    rows,
                    states,
                    existing,
                })
            }
        }
    }
}

pub(super) async fn pg_totals(
    exec: impl PgExecutor<'_>,
    sale: &SaleId,
) -> Result<Vec<ShardTotals>, DbError> {
    let rows = sqlx::query_as(
        "SELECT shard::BIGINT, COUNT(*), COALESCE(SUM(quantity), 0)::BIGINT \
         FROM orders WHERE sale_id = $1 GROUP BY shard",
    )
    .bind(sale.as_str())
    .fetch_all(exec)
    .await?;
    Ok(shard_totals(rows))
}

pub(super) async fn sqlite_totals(
    exec: impl SqliteExecutor<'_>,
    sale: &SaleId,
) -> Result<Vec<ShardTotals>, DbError> {
    let rows = sqlx::query_as(
        "SELECT shard, COUNT(*), COALESCE(SUM(quantity), 0) \
         FROM orders WHERE sale_id = ? GROUP BY shard",
    )
    .bind(sale.as_str())
    .fetch_all(exec)
    .await?;
    Ok(shard_totals(rows))
}

async fn pg_states(
    exec: impl PgExecutor<'_>,
    sale: &SaleId,
) -> Result<Vec<LifecycleTotals>, DbError> {
    let rows = sqlx::query_as(
        "SELECT shard::BIGINT, status, COALESCE(SUM(quantity), 0)::BIGINT, \
           COALESCE(SUM(CASE WHEN returned_at_ms IS NULL THEN 0 ELSE quantity END), 0)::BIGINT \
         FROM orders WHERE sale_id = $1 GROUP BY shard, status",
    )
    .bind(sale.as_str())
    .fetch_all(exec)
    .await?;
    lifecycle_totals(sale, rows)
}

async fn sqlite_states(
    exec: impl SqliteExecutor<'_>,
    sale: &SaleId,
) -> Result<Vec<LifecycleTotals>, DbError> {
    let rows = sqlx::query_as(
        "SELECT shard, status, COALESCE(SUM(quantity), 0), \
           COALESCE(SUM(CASE WHEN returned_at_ms IS NULL THEN 0 ELSE quantity END), 0) \
         FROM orders WHERE sale_id = ? GROUP BY shard, status",
    )
    .bind(sale.as_str())
    .fetch_all(exec)
    .await?;
    lifecycle_totals(sale, rows)
}

/// Those of `ids` that are rows (PostgreSQL).
pub(super) async fn pg_existing(
    exec: impl PgExecutor<'_>,
    ids: &[OrderId],
) -> Result<Vec<OrderId>, DbError> {
    let found: Vec<String> =
        sqlx::query_scalar("SELECT order_id FROM orders WHERE order_id = ANY($1)")
            .bind(ids.iter().map(OrderId::text).collect::<Vec<_>>())
            .fetch_all(exec)
            .await?;
    found.into_iter().map(reads::parse_stored_id).collect()
}

fn shard_totals(rows: Vec<(i64, i64, i64)>) -> Vec<ShardTotals> {
    rows.into_iter()
        .map(|(shard, rows, units)| ShardTotals {
            shard: shard as u32,
            rows: rows as u64,
            units: units as u64,
        })
        .collect()
}

/// Rows of (shard, status, units, units returned) folded into one total per shard.
fn lifecycle_totals(
    sale: &SaleId,
    rows: Vec<(i64, String, i64, i64)>,
) -> Result<Vec<LifecycleTotals>, DbError> {
    let mut totals: Vec<LifecycleTotals> = Vec::new();
    for (shard, status, units, returned) in rows {
        let bad_row = || DbError::BadRow(format!("{sale} shard {shard} status {status}"));
        let shard = u32::try_from(shard).map_err(|_| bad_row())?;
        let (units, returned) = (units as u64, returned as u64);
        let at = match totals.iter().position(|t| t.shard == shard) {
            Some(at) => at,
            None => {
                totals.push(LifecycleTotals {
                    shard,
                    ..LifecycleTotals::default()
                });
                totals.len() - 1
            }
        };
        let entry = &mut totals[at];
        match OrderStatus::parse_stored(&status).ok_or_else(bad_row)? {
            OrderStatus::Confirmed | OrderStatus::Pending => entry.awaiting += units,
            OrderStatus::Paid => entry.paid += units,
            OrderStatus::Cancelled | OrderStatus::Expired => entry.settled_unpaid += units,
        }
        entry.returned += returned;
    }
    Ok(totals)
}
