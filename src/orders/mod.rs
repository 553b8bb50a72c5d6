//! Orders as buyers see them: an accepted order is `pending` while its record waits in
//! Redis for the database writer, and `confirmed` once its row is committed.

use serde::Serialize;

use crate::domain::{OrderId, Quantity, UserId};
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

/// An order and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: OrderId,
    pub user: UserId,
    pub quantity: Quantity,
    pub created_ms: i64,
    pub status: OrderStatus,
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
