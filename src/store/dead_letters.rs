//! The dead-letter streams, `P:{S:i}:dead`: orders the database refused repeatedly, or whose
//! record could not be read. `dead_letter.lua` moves an order there from its order stream
//! atomically; `drop_dead_letter.lua` drops one on an operator's word; `ack.lua` forgets one
//! that became a row.

use std::fmt;

use redis::aio::ConnectionLike;
use redis::streams::{StreamId, StreamRangeReply};
use serde::{Serialize, Serializer};

use super::orders::{read_entry, record_from_entry};
use super::{Keys, StoreError, scripts};
use crate::domain::{EntryId, IdError, NewOrder, OrderId, SaleId};

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

    /// The entry id in the dead-letter stream.
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
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

/// Moves `order` from its stream to its shard's dead letters, with `error` and `attempts`.
/// Returns the dead letter's id, or `None` if the order had already left its stream (a row,
/// or moved before).
pub async fn bury(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    order: &OrderId,
    error: &str,
    attempts: u32,
) -> Result<Option<DeadLetterId>, StoreError> {
    let keys = keys.shard(order.sale(), order.shard());
    let mut cmd = scripts::evalsha(&scripts::DEAD_LETTER, 2);
    cmd.arg(&keys.orders)
        .arg(&keys.dead)
        .arg(order.entry().to_string())
        .arg(error)
        .arg(attempts);
    let entry: Option<String> = scripts::run(&scripts::DEAD_LETTER, &cmd, conn).await?;
    let Some(entry) = entry else { return Ok(None) };
    let entry =
        EntryId::parse(&entry).map_err(|_| StoreError::unexpected("dead_letter.lua", &entry))?;
    Ok(Some(DeadLetterId(OrderId::new(
        order.sale().clone(),
        order.shard(),
        entry,
    ))))
}

/// Every dead letter of shard `shard` of `sale`, oldest first, read page by page.
pub async fn list_shard(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
    shard: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    let keys = keys.shard(sale, shard);
    let mut letters = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let page: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.dead)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
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

/// How many dead letters shard `shard` of `sale` holds (`XLEN`).
pub async fn count_shard(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
    shard: u32,
) -> Result<u64, StoreError> {
    let keys = keys.shard(sale, shard);
    Ok(redis::cmd("XLEN").arg(&keys.dead).query_async(conn).await?)
}

/// The dead letter `id`, if it exists.
pub async fn find(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &DeadLetterId,
) -> Result<Option<DeadLetter>, StoreError> {
    let keys = keys.shard(id.sale(), id.shard());
    read_entry(conn, &keys.dead, &id.entry().to_string())
        .await?
        .as_ref()
        .map(|e| letter_from_entry(id.sale(), id.shard(), e))
        .transpose()
}

/// Drops the dead letter `id` without a row (`drop_dead_letter.lua`), counting its units as
/// dropped. Returns the units, or `None` if there is no such dead letter.
pub async fn drop_letter(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &DeadLetterId,
) -> Result<Option<u64>, StoreError> {
    let keys = keys.shard(id.sale(), id.shard());
    let mut cmd = scripts::evalsha(&scripts::DROP_DEAD_LETTER, 2);
    cmd.arg(&keys.shard).arg(&keys.dead).arg(id.entry());
    let units: i64 = scripts::run(&scripts::DROP_DEAD_LETTER, &cmd, conn).await?;
    Ok(u64::try_from(units).ok())
}

/// Forgets a dead letter whose order is a row: `ack.lua` on the dead-letter stream, which
/// adds its units to the shard's `acked` exactly once.
pub async fn forget_persisted(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &DeadLetterId,
    quantity: u32,
) -> Result<(), StoreError> {
    let keys = keys.shard(id.sale(), id.shard());
    let mut cmd = scripts::evalsha(&scripts::ACK, 2);
    cmd.arg(&keys.shard)
        .arg(&keys.dead)
        .arg(1)
        .arg(quantity)
        .arg(1)
        .arg(id.entry());
    scripts::run::<u64>(&scripts::ACK, &cmd, conn).await?;
    Ok(())
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
