//! The audit trail's vocabulary: one entry per operator action on a sale.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::operator::Operator;

/// What an operator did to a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// `PUT` stored a sale that did not exist.
    Created,
    /// `PUT` replaced a sale's definition.
    Replaced,
    /// `PUT` sent the definition already stored (nothing changed).
    Unchanged,
    /// The kill switch was turned on (or already was: then before equals after).
    Paused,
    /// The kill switch was turned off (or already was).
    Resumed,
    /// The sale was ended now (or had already ended).
    Ended,
    /// The sale's stock was moved to a new number of shards, live.
    Resharded,
    /// Units were added to the sale, or unsold ones removed.
    StockChanged,
    /// The finished sale's Redis keys were removed.
    Deleted,
}

impl AuditAction {
    /// The action's name as it is logged and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replaced => "replaced",
            Self::Unchanged => "unchanged",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::Ended => "ended",
            Self::Resharded => "resharded",
            Self::StockChanged => "stock-changed",
            Self::Deleted => "deleted",
        }
    }
}

/// One operator action: when, by whom, what, and the part of the sale it touched before and
/// after. An action that changed nothing has `before == after`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The operator's name.
    #[schema(value_type = String)]
    pub actor: Operator,
    pub action: AuditAction,
    pub before: Value,
    pub after: Value,
}

impl AuditEntry {
    /// `actor`'s `action` at `at`, with the values it touched before and after.
    pub fn new(
        at: OffsetDateTime,
        actor: Operator,
        action: AuditAction,
        before: Value,
        after: Value,
    ) -> Self {
        Self {
            at,
            actor,
            action,
            before,
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_through_json_with_its_action_named_as_logged() {
        let entry = AuditEntry {
            at: time::macros::datetime!(2026-12-01 12:00 UTC),
            actor: Operator::parse("alice").unwrap(),
            action: AuditAction::Paused,
            before: serde_json::json!({ "paused": false }),
            after: serde_json::json!({ "paused": true }),
        };
        let json = serde_json::to_value(&entry).unwrap();
        assert_eq!(json["action"], AuditAction::Paused.as_str());
        assert_eq!(json["at"], "2026-12-01T12:00:00Z");
        assert_eq!(serde_json::from_value::<AuditEntry>(json).unwrap(), entry);
    }
}
