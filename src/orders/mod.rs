//! Orders as buyers see them: an accepted order is `pending` while its record waits in
//! Redis for the database writer, and `confirmed` once its row is committed.

use serde::Serialize;

use redis::streams::{StreamId, StreamRangeReply};

use crate::db::DbError;
use crate::domain::{EntryId, OrderId, Quantity, SaleId, UserId};
use crate::persist::{Persister, dead_letters};
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

/// Looks an order up: pending in Redis, else a database row (confirmed), else a dead letter
/// (still pending for its buyer: accepted, waiting for an operator to retry it).
pub async fn find(
    persister: &Persister,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, OrderLookupError> {
    if let Some(record) = find_pending(persister.engine(), order_id).await? {
        return Ok(Some(record));
    }
    let Some(row) = persister.store().find(order_id).await? else {
        return Ok(dead_letters::pending_order(persister, order_id).await?);
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

/// Whether an accepted order is still pending (its record still in its stream, not yet a
/// row). One round trip.
pub async fn status_of(
    engine: &StockEngine,
    order_id: &OrderId,
) -> Result<OrderStatus, StoreError> {
    Ok(match find_pending(engine, order_id).await? {
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
    engine: &StockEngine,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, StoreError> {
    let keys = engine.keys().shard(order_id.sale(), order_id.shard());
    let entry = order_id.entry().to_string();
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.orders)
        .arg(&entry)
        .arg(&entry)
        .query_async(&mut engine.conn())
        .await?;
    reply
        .ids
        .first()
        .map(|e| {
            record_from_entry(order_id.sale(), order_id.shard(), e)
                .ok_or_else(|| StoreError::unexpected("order stream entry", &e.id))
        })
        .transpose()
}

/// Rebuilds a pending order from its stream entry (fields written by `purchase.lua`).
pub fn record_from_entry(sale: &SaleId, shard: u32, entry: &StreamId) -> Option<OrderRecord> {
    let text = |field: &str| entry.get::<String>(field);
    Some(OrderRecord {
        order_id: OrderId::new(sale.clone(), shard, EntryId::parse(&entry.id).ok()?),
        user: UserId::parse(&text("user_id")?).ok()?,
        quantity: Quantity::new(text("quantity")?.parse().ok()?).ok()?,
        created_ms: text("created_ms")?.parse().ok()?,
        status: OrderStatus::Pending,
    })
}

impl From<OrderRecord> for NewOrder {
    fn from(r: OrderRecord) -> Self {
        Self {
            order_id: r.order_id,
            user: r.user,
            quantity: r.quantity,
            created_ms: r.created_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(id: &str, fields: &[(&str, &str)]) -> StreamId {
        let map: HashMap<String, redis::Value> = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    redis::Value::BulkString(v.as_bytes().to_vec()),
                )
            })
            .collect();
        StreamId {
            id: id.into(),
            map,
            ..StreamId::default()
        }
    }

    #[test]
    fn stream_entries_rebuild_their_order_strictly() {
        let sale = SaleId::parse("s").unwrap();
        let good = entry(
            "17-3",
            &[
                ("user_id", "bob"),
                ("quantity", "2"),
                ("created_ms", "1700"),
            ],
        );
        let rec = record_from_entry(&sale, 4, &good).unwrap();
        assert_eq!(rec.order_id.to_string(), "s.4.17-3");
        assert_eq!(
            (rec.user.as_str(), rec.quantity.get(), rec.created_ms),
            ("bob", 2, 1700)
        );
        let zero = entry(
            "17-3",
            &[("user_id", "bob"), ("quantity", "0"), ("created_ms", "1")],
        );
        assert!(record_from_entry(&sale, 4, &zero).is_none());
        let missing = entry("17-3", &[("user_id", "bob"), ("quantity", "1")]);
        assert!(record_from_entry(&sale, 4, &missing).is_none());
        let bad_user = entry(
            "17-3",
            &[("user_id", "b b"), ("quantity", "1"), ("created_ms", "1")],
        );
        assert!(record_from_entry(&sale, 4, &bad_user).is_none());
    }
}
