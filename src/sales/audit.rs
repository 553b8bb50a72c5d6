//! The audit trail: every operator action on a sale is logged (target `flashgate::audit`)
//! and kept in the sale's own list in Redis, newest first, which the sale's operator view
//! shows.

use serde_json::{Value, json};

use super::registry::SaleRegistry;
use crate::domain::{AuditEntry, SaleId};
use crate::sales::report::error_chain;
use crate::store::{StoreError, audit};

impl SaleRegistry {
    /// Records `entry`, an action on `sale` that has taken effect: logs it, then appends it
    /// to the sale's trail. The log line comes first and always, so an action is on record
    /// even if Redis fails the append (that is logged as a warning, and the action, which
    /// happened, still answers success).
    pub async fn audit(&self, sale: &SaleId, entry: AuditEntry) {
        log(sale, &entry);
        if let Err(error) = self.append_audit(sale, &entry).await {
            tracing::warn!(
                target: "flashgate::audit",
                %sale,
                action = entry.action.as_str(),
                error = %error_chain(&error),
                "the audit entry was logged but not stored in Redis"
            );
        }
    }

    async fn append_audit(&self, sale: &SaleId, entry: &AuditEntry) -> Result<(), StoreError> {
        let redis = &self.redis;
        audit::append(&mut redis.bulk().await?, redis.keys(), sale, entry).await
    }

    /// The definition of `sale` as stored now, as an audit entry's `before`: `null` if there
    /// is none, or if it cannot be read (the change it precedes decides for itself whether
    /// that matters).
    pub async fn audited_definition(&self, sale: &SaleId) -> Value {
        match self.load(sale).await {
            Ok(Some(stored)) => json!(stored.spec.definition()),
            Ok(None) | Err(_) => Value::Null,
        }
    }

    /// The audit trail of `sale`, newest first (at most [`audit::KEPT_ENTRIES`]).
    pub async fn audit_trail(&self, sale: &SaleId) -> Result<Vec<AuditEntry>, StoreError> {
        let redis = &self.redis;
        audit::list(&mut redis.bulk().await?, redis.keys(), sale).await
    }
}

/// Logs an operator action on `target: flashgate::audit` (only: a deleted sale keeps no
/// trail in Redis, so its deletion is in the log alone).
pub(super) fn log(sale: &SaleId, entry: &AuditEntry) {
    tracing::info!(
        target: "flashgate::audit",
        actor = %entry.actor,
        %sale,
        action = entry.action.as_str(),
        before = %entry.before,
        after = %entry.after,
        "operator action"
    );
}
