//! Orders as buyers see them: an accepted order is `pending` while its record waits in
//! Redis for the database writer, and `confirmed` once its row is committed.

use serde::Serialize;

use crate::db::DbError;
use crate::domain::{OrderId, Quantity, UserId};
use crate::persist::Persister;
use crate::stock::StockEngine;
use crate::store::StoreError;

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and durably recorded in Redis; not yet a database row.
    Pending,
    /// A database row.
    Confirmed,
}

/// An order just accepted: stock taken, record in its shard's stream (entry `entry_id`),
/// not yet a database row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub user: UserId,
    pub quantity: Quantity,
    /// Acceptance time, unix ms.
    pub created_ms: i64,
    /// The stream entry holding the durable record.
    pub entry_id: String,
}

/// An order and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: OrderId,
    pub user: UserId,
    pub quantity: Quantity,
    pub created_ms: i64,
    pub status: OrderStatus,
}

/// Looks an order up: pending in Redis, else a database row (confirmed).
pub async fn find(
    persister: &Persister,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, OrderLookupError> {
    if let Some(record) = find_pending(persister.engine(), order_id).await? {
        return Ok(Some(record));
    }
    let Some(row) = persister.store().find(order_id).await? else {
        return Ok(None);
    };
    let bad_row = || OrderLookupError::Db(DbError::BadRow(order_id.to_string()));
    Ok(Some(OrderRecord {
        order_id: row.order_id,
        user: UserId::parse(&row.user_id).map_err(|_| bad_row())?,
        quantity: Quantity::new(row.quantity).map_err(|_| bad_row())?,
        created_ms: row.created_at_ms,
        status: OrderStatus::Confirmed,
    }))
}

/// Whether an accepted order is still pending (not yet a row). One round trip.
pub async fn status_of(
    engine: &StockEngine,
    order_id: &OrderId,
) -> Result<OrderStatus, StoreError> {
    let keys = engine.keys().shard(order_id.sale(), order_id.shard());
    let pending: bool = redis::cmd("HEXISTS")
        .arg(&keys.pending)
        .arg(order_id.to_string())
        .query_async(&mut engine.conn())
        .await?;
    Ok(if pending {
        OrderStatus::Pending
    } else {
        OrderStatus::Confirmed
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

/// Looks an order up among those still pending in Redis.
pub async fn find_pending(
    engine: &StockEngine,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, StoreError> {
    let keys = engine.keys().shard(order_id.sale(), order_id.shard());
    let record: Option<String> = redis::cmd("HGET")
        .arg(&keys.pending)
        .arg(order_id.to_string())
        .query_async(&mut engine.conn())
        .await?;
    record
        .map(|r| {
            parse_pending(order_id, &r).ok_or_else(|| StoreError::unexpected("pending order", &r))
        })
        .transpose()
}

/// Parses `<user>|<quantity>|<created ms>` as written by `purchase.lua`.
fn parse_pending(order_id: &OrderId, record: &str) -> Option<OrderRecord> {
    let mut parts = record.split('|');
    let user = UserId::parse(parts.next()?).ok()?;
    let quantity = Quantity::new(parts.next()?.parse().ok()?).ok()?;
    let created_ms = parts.next()?.parse().ok()?;
    parts.next().is_none().then(|| OrderRecord {
        order_id: order_id.clone(),
        user,
        quantity,
        created_ms,
        status: OrderStatus::Pending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SaleId;

    #[test]
    fn pending_records_parse_strictly() {
        let id = OrderId::generate(&SaleId::parse("s").unwrap(), 0);
        let rec = parse_pending(&id, "bob|2|1700000000000").unwrap();
        assert_eq!(rec.user.as_str(), "bob");
        assert_eq!(rec.quantity.get(), 2);
        assert!(parse_pending(&id, "bob|0|1").is_none());
        assert!(parse_pending(&id, "bob|1").is_none());
        assert!(parse_pending(&id, "b b|1|1").is_none());
    }
}
