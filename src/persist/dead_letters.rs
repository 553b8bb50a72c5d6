//! Dead letters: orders the database refused `queue.poison_attempts` times on their own (a
//! constraint or a trigger rejecting the row), and stream entries whose order record cannot
//! be read. Each shard keeps its own in a stream, `P:{S:i}:dead`, beside (and in the same
//! cluster slot as) its order stream; `dead_letter.lua` moves an order from one to the
//! other atomically, so an accepted order is always a row, an entry of its stream, or a
//! dead letter.
//!
//! Operators list them, and decide: **retry** (persist it now, e.g. after fixing what made
//! the database refuse it; on success it leaves the list like any persisted order leaves
//! its stream) or **drop** (forget it without a row: its units stay sold, and
//! reconciliation reports them as `dropped`).

use super::Persister;
use crate::db::DbError;
use crate::domain::{OrderId, OrderRecord, OrderStatus, SaleId};
use crate::sales::SaleRegistry;
use crate::stock::SaleRuntime;
use crate::store::StoreError;
use crate::store::dead_letters as stored;
pub use crate::store::dead_letters::{DeadLetter, DeadLetterId};

/// Why a dead letter could not be retried or dropped.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead letter {0}")]
    NotFound(DeadLetterId),
    #[error("dead letter {0} holds no readable order; it can only be dropped")]
    Unreadable(DeadLetterId),
    #[error("the database refused the order again: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What happened to a dead letter an operator dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropOutcome {
    /// Forgotten without a row; its units are counted as dropped.
    Dropped { units: u64 },
    /// It had become a row meanwhile, so it was acknowledged as one, not dropped.
    WasPersisted,
}

/// Moves `order` from its stream to its shard's dead letters, with `error` and `attempts`.
/// Returns the dead letter's id, or `None` if the order had already left its stream (a row,
/// or moved before).
pub async fn bury(
    persister: &Persister,
    order: &OrderId,
    error: &str,
    attempts: u32,
) -> Result<Option<DeadLetterId>, StoreError> {
    let redis = persister.redis();
    let id = stored::bury(&mut redis.conn(), redis.keys(), order, error, attempts).await?;
    if id.is_some() {
        tracing::error!(%order, error, attempts, "order moved to the dead letters");
    }
    Ok(id)
}

/// Every dead letter of every sale, sale by sale and shard by shard, read on a connection
/// of the bulk pool.
pub async fn list(
    persister: &Persister,
    sales: &SaleRegistry,
) -> Result<Vec<DeadLetter>, StoreError> {
    let redis = persister.redis();
    let mut letters = Vec::new();
    for id in sales.ids().await? {
        let Some(rt) = sales.get(&id).await? else {
            continue;
        };
        let mut conn = redis.bulk().await?;
        for shard in rt.layout.every_shard() {
            letters.extend(stored::list_shard(&mut conn, redis.keys(), &id, shard).await?);
        }
    }
    Ok(letters)
}

/// How many dead letters the sale of `rt` holds over every shard it ever used, read on a
/// connection of the bulk pool.
pub async fn count(persister: &Persister, rt: &SaleRuntime) -> Result<u64, StoreError> {
    let redis = persister.redis();
    let mut conn = redis.bulk().await?;
    let mut total = 0;
    for shard in rt.layout.every_shard() {
        total += stored::count_shard(&mut conn, redis.keys(), &rt.sale.id, shard).await?;
    }
    Ok(total)
}

/// Every dead letter of shard `shard` of `sale`, oldest first.
pub async fn list_shard(
    persister: &Persister,
    sale: &SaleId,
    shard: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    let redis = persister.redis();
    stored::list_shard(&mut redis.bulk().await?, redis.keys(), sale, shard).await
}

/// The dead letter `id`, if it exists.
pub async fn find(
    persister: &Persister,
    id: &DeadLetterId,
) -> Result<Option<DeadLetter>, StoreError> {
    let redis = persister.redis();
    stored::find(&mut redis.bulk().await?, redis.keys(), id).await
}

/// The order `order` as a record, if it waits among its shard's dead letters: for its buyer
/// it is still `pending` (accepted, not yet a row).
pub async fn pending_order(
    persister: &Persister,
    order: &OrderId,
) -> Result<Option<OrderRecord>, StoreError> {
    let letters = list_shard(persister, order.sale(), order.shard()).await?;
    Ok(letters
        .into_iter()
        .find(|l| &l.order_id == order)
        .and_then(|l| l.order)
        .map(|o| OrderRecord {
            order_id: o.order_id,
            user: o.user,
            quantity: o.quantity,
            created_ms: o.created_ms,
            status: OrderStatus::Pending,
        }))
}
/// Persists the dead letter `id` now; on success it is no longer a dead letter.
pub async fn retry(persister: &Persister, id: &DeadLetterId) -> Result<OrderId, DeadLetterError> {
    let letter = find(persister, id)
        .await?
        .ok_or_else(|| DeadLetterError::NotFound(id.clone()))?;
    let order = letter
        .order
        .ok_or_else(|| DeadLetterError::Unreadable(id.clone()))?;
    let now = persister.clock.now_ms();
    if let Err(error) = persister
        .db()
        .insert(std::slice::from_ref(&order), now)
        .await
    {
        return Err(match error.rejection_reason() {
            Some(reason) => DeadLetterError::Refused(reason),
            None => DeadLetterError::Db(error),
        });
    }
    forget_persisted(persister, id, order.quantity.get()).await?;
    tracing::info!(dead_letter = %id, order = %order.order_id, "dead letter persisted on retry");
    Ok(order.order_id)
}

/// Drops the dead letter `id` without a row (an operator's decision), unless it has become
/// a row meanwhile, in which case it is acknowledged as one.
pub async fn drop_letter(
    persister: &Persister,
    id: &DeadLetterId,
) -> Result<DropOutcome, DeadLetterError> {
    let letter = find(persister, id)
        .await?
        .ok_or_else(|| DeadLetterError::NotFound(id.clone()))?;
    if let Some(order) = &letter.order {
        let ids = std::slice::from_ref(&order.order_id);
        if !persister.db().existing(ids).await?.is_empty() {
            forget_persisted(persister, id, order.quantity.get()).await?;
            return Ok(DropOutcome::WasPersisted);
        }
    }
    let redis = persister.redis();
    let units = stored::drop_letter(&mut redis.bulk().await?, redis.keys(), id)
        .await?
        .ok_or_else(|| DeadLetterError::NotFound(id.clone()))?;
    tracing::warn!(dead_letter = %id, order = %letter.order_id, units, "dead letter dropped by an operator");
    Ok(DropOutcome::Dropped { units })
}

/// Forgets a dead letter whose order is a row (its units count as acknowledged once).
async fn forget_persisted(
    persister: &Persister,
    id: &DeadLetterId,
    quantity: u32,
) -> Result<(), StoreError> {
    let redis = persister.redis();
    stored::forget_persisted(&mut redis.bulk().await?, redis.keys(), id, quantity).await
}
