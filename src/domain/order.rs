//! Orders as every layer sees them: an accepted order (`NewOrder`), and an order with its
//! status as buyers see it (`OrderRecord`).

use serde::Serialize;

use super::{OrderId, Quantity, UserId};

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
