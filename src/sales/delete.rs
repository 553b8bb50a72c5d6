//! Deleting a finished sale: once it has ended and every order it accepted is a database
//! row, its Redis keys go — every shard it ever used, its record, its token and quota keys —
//! and it leaves the sale index, so the background workers stop visiting it. The orders
//! stay in the database.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::SaleRegistry;
use crate::domain::{AuditAction, AuditEntry, Operator, SaleId, Window};
use crate::store::{StoreError, sales};

/// How long after `ends_at` a sale may be deleted: an instance whose clock runs behind (NTP
/// keeps them well within this) may still be selling it until then.
const ENDED_MARGIN: Duration = Duration::from_secs(2);

/// Why a sale cannot be deleted (yet).
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("no sale {0}")]
    NotFound(SaleId),
    #[error("sale {0} has not ended, or ended less than two seconds ago; end it first")]
    NotEnded(SaleId),
    #[error("sale {0} has a change in progress ({1}); retry when it is finished")]
    Busy(SaleId, &'static str),
    #[error(
        "sale {sale} still has {units} units of orders that are not database rows (pending, or dead letters); retry once they are persisted or dropped"
    )]
    OrdersPending { sale: SaleId, units: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SaleRegistry {
    /// Deletes sale `id` from Redis, if it ended and every order of it is persisted.
    pub async fn delete(
        &self,
        id: &SaleId,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<(), DeleteError> {
        let stored = self
            .load(id)
            .await?
            .ok_or_else(|| DeleteError::NotFound(id.clone()))?;
        if let Some(op) = &stored.op {
            return Err(DeleteError::Busy(id.clone(), op.change.name()));
        }
        if stored.spec.window(now - ENDED_MARGIN) != Window::After {
            return Err(DeleteError::NotEnded(id.clone()));
        }
        let counters = self.counters_of(id, stored.layout.every_shard()).await?;
        let units = counters.iter().map(|c| c.pending_units).sum();
        if units > 0 {
            return Err(DeleteError::OrdersPending {
                sale: id.clone(),
                units,
            });
        }
        let keys = self.redis.keys();
        let mut conn = self.redis.bulk().await?;
        sales::unindex(&mut conn, keys, id).await?;
        self.forget(id);
        sales::delete_shards(&mut conn, keys, id, stored.layout.every_shard()).await?;
        sales::delete_record(&mut conn, keys, id).await?;
        // The trail in Redis went with the other keys: the deletion is in the log.
        let before = serde_json::json!(stored.spec.definition());
        let entry = AuditEntry::new(
            now,
            actor.clone(),
            AuditAction::Deleted,
            before,
            Value::Null,
        );
        super::audit::log(id, &entry);
        Ok(())
    }
}
