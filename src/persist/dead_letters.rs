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

use std::fmt;

use redis::streams::{StreamId, StreamRangeReply};
use serde::{Serialize, Serializer};

use super::Persister;
use crate::db::DbError;
use crate::domain::{EntryId, IdError, OrderId, SaleId};
use crate::orders::{NewOrder, OrderRecord, OrderStatus, record_from_entry};
use crate::sales::SaleRegistry;
use crate::store::{ShardKeys, StoreError, scripts};

/// Entries read per `XRANGE` while listing.
const PAGE: usize = 200;

/// A dead letter's id: `<sale>.<shard>.<entry id in the shard's dead-letter stream>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterId(OrderId);

impl DeadLetterId {
    /// Parses the text form produced by `Display`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        OrderId::parse(s).map(Self)
    }

    /// The sale of the order.
    pub fn sale(&self) -> &SaleId {
        self.0.sale()
    }

    /// The shard whose dead-letter stream holds it.
    pub fn shard(&self) -> u32 {
        self.0.shard()
    }

    fn entry(&self) -> String {
        self.0.entry().to_string()
    }
}

impl fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for DeadLetterId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An order that is neither a row nor pending: it waits for an operator.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub sale_id: SaleId,
    pub shard: u32,
    pub order_id: OrderId,
    /// The buyer, when the record can be read.
    pub user_id: Option<String>,
    /// The units, when the record can be read.
    pub quantity: Option<u32>,
    /// Why it is here: the database's words, or why the record cannot be read.
    pub error: String,
    /// How many times the database refused it (0: never sent, its record is unreadable).
    pub attempts: u32,
    /// The order to write, when the record can be read.
    #[serde(skip)]
    pub order: Option<NewOrder>,
}

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
    let keys = persister.engine().keys().shard(order.sale(), order.shard());
    let mut cmd = scripts::evalsha(&scripts::DEAD_LETTER, 2);
    cmd.arg(&keys.orders)
        .arg(&keys.dead)
        .arg(order.entry().to_string())
        .arg(error)
        .arg(attempts);
    let entry: Option<String> =
        scripts::run(&scripts::DEAD_LETTER, &cmd, &mut persister.engine().conn()).await?;
    let Some(entry) = entry else { return Ok(None) };
    let entry =
        EntryId::parse(&entry).map_err(|_| StoreError::unexpected("dead_letter.lua", &entry))?;
    tracing::error!(%order, error, attempts, "order moved to the dead letters");
    Ok(Some(DeadLetterId(OrderId::new(
        order.sale().clone(),
        order.shard(),
        entry,
    ))))
}

/// Every dead letter of every sale, sale by sale and shard by shard.
pub async fn list(
    persister: &Persister,
    sales: &SaleRegistry,
) -> Result<Vec<DeadLetter>, StoreError> {
    let mut letters = Vec::new();
    for id in sales.ids().await? {
        let Some(rt) = sales.get(&id).await? else {
            continue;
        };
        for shard in 0..rt.shards() {
            letters.extend(list_shard(persister, &id, shard).await?);
        }
    }
    Ok(letters)
}

/// Every dead letter of shard `shard` of `sale`, oldest first, read page by page.
pub async fn list_shard(
    persister: &Persister,
    sale: &SaleId,
    shard: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    let keys = persister.engine().keys().shard(sale, shard);
    let mut conn = persister.engine().conn();
    let mut letters = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut conn)
            .await?;
        for entry in &page.ids {
            letters.push(letter_from_entry(sale, shard, entry)?);
        }
        match page.ids.last() {
            Some(last) if page.ids.len() == PAGE => from = format!("({}", last.id),
            _ => return Ok(letters),
        }
    }
}

/// The dead letter `id`, if it exists.
pub async fn find(
    persister: &Persister,
    id: &DeadLetterId,
) -> Result<Option<DeadLetter>, StoreError> {
    let keys = dead_keys(persister, id);
    let entry = id.entry();
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.dead)
        .arg(&entry)
        .arg(&entry)
        .query_async(&mut persister.engine().conn())
        .await?;
    reply
        .ids
        .first()
        .map(|e| letter_from_entry(id.sale(), id.shard(), e))
        .transpose()
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
        .store()
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
        let ids = [order.order_id.to_string()];
        if !persister.store().existing(&ids).await?.is_empty() {
            forget_persisted(persister, id, order.quantity.get()).await?;
            return Ok(DropOutcome::WasPersisted);
        }
    }
    let keys = dead_keys(persister, id);
    let mut cmd = scripts::evalsha(&scripts::DROP_DEAD_LETTER, 2);
    cmd.arg(&keys.shard).arg(&keys.dead).arg(id.entry());
    let units: i64 = scripts::run(
        &scripts::DROP_DEAD_LETTER,
        &cmd,
        &mut persister.engine().conn(),
    )
    .await
    .map_err(StoreError::from)?;
    let units = u64::try_from(units).map_err(|_| DeadLetterError::NotFound(id.clone()))?;
    tracing::warn!(dead_letter = %id, order = %letter.order_id, units, "dead letter dropped by an operator");
    Ok(DropOutcome::Dropped { units })
}

/// Forgets a dead letter whose order is a row: `ack.lua` on the dead-letter stream, which
/// adds its units to the shard's `acked` exactly once.
async fn forget_persisted(
    persister: &Persister,
    id: &DeadLetterId,
    quantity: u32,
) -> Result<(), StoreError> {
    let keys = dead_keys(persister, id);
    let mut cmd = scripts::evalsha(&scripts::ACK, 2);
    cmd.arg(&keys.shard)
        .arg(&keys.dead)
        .arg(1)
        .arg(quantity)
        .arg(1)
        .arg(id.entry());
    scripts::run::<u64>(&scripts::ACK, &cmd, &mut persister.engine().conn()).await?;
    Ok(())
}

fn dead_keys(persister: &Persister, id: &DeadLetterId) -> ShardKeys {
    persister.engine().keys().shard(id.sale(), id.shard())
}

/// Reads a dead letter; its order, when the copied record can be read.
fn letter_from_entry(
    sale: &SaleId,
    shard: u32,
    entry: &StreamId,
) -> Result<DeadLetter, StoreError> {
    let text = |field: &str| entry.get::<String>(field);
    let dead_entry = EntryId::parse(&entry.id)
        .map_err(|_| StoreError::unexpected("dead-letter entry", &entry.id))?;
    let order_entry = text("order_entry")
        .and_then(|e| EntryId::parse(&e).ok())
        .ok_or_else(|| StoreError::unexpected("dead-letter entry", &entry.id))?;
    let as_order = StreamId {
        id: order_entry.to_string(),
        ..entry.clone()
    };
    let order = record_from_entry(sale, shard, &as_order).map(NewOrder::from);
    Ok(DeadLetter {
        id: DeadLetterId(OrderId::new(sale.clone(), shard, dead_entry)),
        sale_id: sale.clone(),
        shard,
        order_id: OrderId::new(sale.clone(), shard, order_entry),
        user_id: order.as_ref().map(|o| o.user.to_string()),
        quantity: order.as_ref().map(|o| o.quantity.get()),
        error: text("error").unwrap_or_default(),
        attempts: text("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
        order,
    })
}
