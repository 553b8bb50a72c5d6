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
    /// A database row, awaiting payment.
    Confirmed,
    /// Paid: its units are sold for good.
    Paid,
    /// Cancelled by its buyer: its units go back to the sale.
    Cancelled,
    /// Not paid within the sale's payment window: its units go back to the sale.
    Expired,
}

impl OrderStatus {
    /// The name stored in the database's `status` column (and served to buyers).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Paid => "paid",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
        }
    }

    /// Reads a stored `status` column (`pending` is never stored).
    pub fn parse_stored(text: &str) -> Option<Self> {
        match text {
            "confirmed" => Some(Self::Confirmed),
            "paid" => Some(Self::Paid),
            "cancelled" => Some(Self::Cancelled),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// The end an order awaiting payment can come to: one transition out of `confirmed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Settlement {
    /// The shop's payment service reported the payment.
    Paid,
    /// The buyer cancelled.
    Cancelled,
    /// The payment window passed.
    Expired,
}

impl Settlement {
    /// The status an order has once settled this way.
    pub fn status(self) -> OrderStatus {
        match self {
            Self::Paid => OrderStatus::Paid,
            Self::Cancelled => OrderStatus::Cancelled,
            Self::Expired => OrderStatus::Expired,
        }
    }

    /// Whether the order's units go back to the sale.
    pub fn returns_units(self) -> bool {
        !matches!(self, Self::Paid)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_states_read_back_and_pending_is_never_stored() {
        for status in [
            OrderStatus::Confirmed,
            OrderStatus::Paid,
            OrderStatus::Cancelled,
            OrderStatus::Expired,
        ] {
            assert_eq!(OrderStatus::parse_stored(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse_stored("pending"), None);
        assert_eq!(OrderStatus::parse_stored("PAID"), None);
    }

    #[test]
    fn only_unpaid_ends_return_units() {
        assert!(!Settlement::Paid.returns_units());
        assert!(Settlement::Cancelled.returns_units());
        assert!(Settlement::Expired.returns_units());
        assert_eq!(Settlement::Expired.status(), OrderStatus::Expired);
    }
}
