//! The order lifecycle in the database: the one compare-and-set that moves an order out of
//! `confirmed` (paid, cancelled or expired: whoever commits first wins, everyone else reads
//! the state that won), the expiry sweep, and the return outbox — cancelled and expired
//! orders whose units are not back on the sale yet, claimed under a lease by one instance at
//! a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer) and marked
//! returned once Redis took them back.

use super::{Backend, DbError, OrderDb, sqlite};
use crate::domain::{OrderId, OrderStatus, Quantity, SaleId, Settlement, UserId};

/// What a transition out of `confirmed` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// This call moved the order.
    Done,
    /// The order was no longer `confirmed`: it is in this state.
    Was(OrderStatus),
    /// No such row.
    Missing,
}

/// A cancelled or expired order whose units are owed back to its sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReturn {
    pub order_id: OrderId,
    pub user: UserId,
    pub quantity: Quantity,
    pub reason: Settlement,
}

type DueRow = (String, String, i64, String);

impl OrderDb {
    /// Moves order `id` from `confirmed` to `to`, if it is still `confirmed`: the single
    /// decision of which transition wins. A cancelled or expired order is leased to the
    /// caller until `lease_until_ms` (it returns the units itself; the outbox takes over if
    /// it does not).
    pub async fn settle(
        &self,
        id: &OrderId,
        to: Settlement,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Transition, DbError> {
        let status = to.status().as_str();
        let lease = to.returns_units().then_some(lease_until_ms);
        let moved = self
            .bounded("settle order", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => sqlx::query(
                        "UPDATE orders SET status = $2, settled_at_ms = $3, return_lease_ms = $4 \
                         WHERE order_id = $1 AND status = 'confirmed'",
                    )
                    .bind(id.to_string())
                    .bind(status)
                    .bind(now_ms)
                    .bind(lease)
                    .execute(pool)
                    .await?
                    .rows_affected(),
                    Backend::Sqlite(store) => {
                        let (sale, ms, seq, shard) = sqlite::key(id);
                        sqlx::query(
                            "UPDATE orders SET status = ?5, settled_at_ms = ?6, return_lease_ms = ?7 \
                             WHERE sale_id = ?1 AND entry_ms = ?2 AND entry_seq = ?3 AND shard = ?4 \
                             AND status = 'confirmed'",
                        )
                        .bind(sale)
                        .bind(ms)
                        .bind(seq)
                        .bind(shard)
                        .bind(status)
                        .bind(now_ms)
                        .bind(lease)
                        .execute(&store.writes)
                        .await?
                        .rows_affected()
                    }
                })
            })
            .await?;
        if moved == 1 {
            return Ok(Transition::Done);
        }
        Ok(match self.find(id).await? {
            Some(row) => Transition::Was(row.status),
            None => Transition::Missing,
        })
    }

    /// Expires up to `limit` orders of `sale` still `confirmed` and created at or before
    /// `cutoff_ms`, each leased to the caller until `lease_until_ms`; returns them. Rows
    /// another instance is expiring at the same moment are skipped, never waited for.
    pub async fn expire_due(
        &self,
        sale: &SaleId,
        cutoff_ms: i64,
        (now_ms, lease_until_ms): (i64, i64),
        limit: u32,
    ) -> Result<Vec<DueReturn>, DbError> {
        let rows: Vec<DueRow> = self
            .bounded("expire orders", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => sqlx::query_as(
                        "WITH due AS (SELECT order_id FROM orders \
                           WHERE sale_id = $1 AND status = 'confirmed' AND created_at_ms <= $2 \
                           ORDER BY created_at_ms LIMIT $3 FOR UPDATE SKIP LOCKED) \
                         UPDATE orders o SET status = 'expired', settled_at_ms = $4, return_lease_ms = $5 \
                         FROM due WHERE o.order_id = due.order_id AND o.status = 'confirmed' \
                         RETURNING o.order_id, o.user_id, o.quantity::BIGINT, o.status",
                    )
                    .bind(sale.as_str())
                    .bind(cutoff_ms)
                    .bind(i64::from(limit))
                    .bind(now_ms)
                    .bind(lease_until_ms)
                    .fetch_all(pool)
                    .await?,
                    Backend::Sqlite(store) => {
                        sqlx::query_as(concat!(
                            "UPDATE orders SET status = 'expired', settled_at_ms = ?4, return_lease_ms = ?5 \
                             WHERE sale_id = ?1 AND (entry_ms, entry_seq, shard) IN \
                               (SELECT entry_ms, entry_seq, shard FROM orders \
                                WHERE sale_id = ?1 AND status = 'confirmed' AND created_at_ms <= ?2 \
                                LIMIT ?3) \
                             AND status = 'confirmed' \
                             RETURNING ",
                            sqlite::order_id!(),
                            ", user_id, quantity, status"
                        ))
                        .bind(sale.as_str())
                        .bind(cutoff_ms)
                        .bind(i64::from(limit))
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .fetch_all(&store.writes)
                        .await?
                    }
                })
            })
            .await?;
        rows.into_iter().map(due_return).collect()
    }

    /// Claims up to `limit` orders whose return is due and whose lease ran out by `now_ms`,
    /// leasing them to the caller until `lease_until_ms`. Rows another instance is claiming
    /// at the same moment are skipped.
    pub async fn claim_returns(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<DueReturn>, DbError> {
        let rows: Vec<DueRow> = self
            .bounded("claim returns", async {
                Ok(match &self.backend {
                    Backend::Postgres(pool) => {
                        sqlx::query_as(
                            "WITH due AS (SELECT order_id FROM orders \
                           WHERE status IN ('cancelled', 'expired') AND returned_at_ms IS NULL \
                           AND (return_lease_ms IS NULL OR return_lease_ms <= $1) \
                           LIMIT $3 FOR UPDATE SKIP LOCKED) \
                         UPDATE orders o SET return_lease_ms = $2 FROM due \
                         WHERE o.order_id = due.order_id \
                         RETURNING o.order_id, o.user_id, o.quantity::BIGINT, o.status",
                        )
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .bind(i64::from(limit))
                        .fetch_all(pool)
                        .await?
                    }
                    Backend::Sqlite(store) => {
                        sqlx::query_as(concat!(
                            "UPDATE orders SET return_lease_ms = ?2 \
                           WHERE (sale_id, entry_ms, entry_seq, shard) IN \
                           (SELECT sale_id, entry_ms, entry_seq, shard FROM orders \
                            WHERE status IN ('cancelled', 'expired') AND returned_at_ms IS NULL \
                            AND (return_lease_ms IS NULL OR return_lease_ms <= ?1) LIMIT ?3) \
                         RETURNING ",
                            sqlite::order_id!(),
                            ", user_id, quantity, status"
                        ))
                        .bind(now_ms)
                        .bind(lease_until_ms)
                        .bind(i64::from(limit))
                        .fetch_all(&store.writes)
                        .await?
                    }
                })
            })
            .await?;
        rows.into_iter().map(due_return).collect()
    }

    /// Records that the units of orders `ids` are back on their sale's shelves. Returns how
    /// many were not marked yet.
    pub async fn mark_returned(&self, ids: &[OrderId], now_ms: i64) -> Result<u64, DbError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.bounded("mark returned", async {
            Ok(match &self.backend {
                Backend::Postgres(pool) => sqlx::query(
                    "UPDATE orders SET returned_at_ms = $2 \
                     WHERE order_id = ANY($1) AND returned_at_ms IS NULL",
                )
                .bind(ids.iter().map(OrderId::text).collect::<Vec<_>>())
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected(),
                Backend::Sqlite(store) => sqlx::query(concat!(
                    "UPDATE orders SET returned_at_ms = ?2 FROM json_each(?1) AS k WHERE ",
                    sqlite::key_is_k!(),
                    " AND returned_at_ms IS NULL"
                ))
                .bind(sqlite::keys_json(ids)?)
                .bind(now_ms)
                .execute(&store.writes)
                .await?
                .rows_affected(),
            })
        })
        .await
    }
}

fn due_return((id, user, quantity, status): DueRow) -> Result<DueReturn, DbError> {
    let bad_row = || DbError::BadRow(id.clone());
    let reason = match OrderStatus::parse_stored(&status) {
        Some(OrderStatus::Cancelled) => Settlement::Cancelled,
        Some(OrderStatus::Expired) => Settlement::Expired,
        _ => return Err(bad_row()),
    };
    Ok(DueReturn {
        order_id: OrderId::parse(&id).map_err(|_| bad_row())?,
        user: UserId::parse(&user).map_err(|_| bad_row())?,
        quantity: u32::try_from(quantity)
            .ok()
            .and_then(|q| Quantity::new(q).ok())
            .ok_or_else(bad_row)?,
        reason,
    })
}
