//! Orders as buyers see them: an accepted order is `pending` while its record waits in
//! Redis for the database writer, `confirmed` once its row is committed, and then `paid`,
//! `cancelled` or `expired` as its row says (`crate::lifecycle`).

use crate::db::DbError;
use crate::domain::{OrderId, OrderRecord, OrderStatus, Quantity, UserId};
use crate::persist::{Persister, dead_letters};
use crate::store::orders;
use crate::store::{Redis, StoreError};

/// Looks an order up: pending in Redis, else a database row (confirmed), else a dead letter
/// (still pending for its buyer: accepted, waiting for an operator to retry it).
pub async fn find(
    persister: &Persister,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, OrderLookupError> {
    if let Some(record) = find_pending(persister.redis(), order_id).await? {
        return Ok(Some(record));
    }
    let Some(row) = persister.db().find(order_id).await? else {
        return Ok(dead_letters::pending_order(persister, order_id).await?);
    };
    let bad_row = || OrderLookupError::Db(DbError::BadRow(order_id.to_string()));
    Ok(Some(OrderRecord {
        order_id: row.order_id,
        user: UserId::parse(&row.user_id).map_err(|_| bad_row())?,
        quantity: Quantity::new(row.quantity).map_err(|_| bad_row())?,
        created_ms: row.created_at_ms,
        status: row.status,
    }))
}

/// Whether an accepted order is still pending (its record still in its stream, not yet a
/// row). One round trip. A row reads as `confirmed` whatever its lifecycle state: this is
/// what a replayed purchase answers, which reads no database (`GET /api/v1/orders/{id}`
/// tells paid, cancelled and expired apart).
pub async fn status_of(redis: &Redis, order_id: &OrderId) -> Result<OrderStatus, StoreError> {
    Ok(match find_pending(redis, order_id).await? {
        Some(_) => OrderStatus::Pending,
        None => OrderStatus::Confirmed,
    })
}

/// Why an order could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum OrderLookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Looks an order up among those still pending in Redis: its entry in its shard's stream.
pub async fn find_pending(
    redis: &Redis,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, StoreError> {
    orders::find_pending(&mut redis.conn(), redis.keys(), order_id).await
}
