//! The recovery worker: persists orders whose stream entries were left unacknowledged —
//! by a gateway that died (kill -9, crash) before its writer got to them, or spilled by the
//! `spill` policy. Every instance runs it; `XAUTOCLAIM` hands each stale entry to one of
//! them, and persisting twice is harmless anyway (idempotent rows, idempotent ack).

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::{PersistError, Persister};
use crate::domain::{OrderId, Quantity, UserId};
use crate::orders::NewOrder;
use crate::sales::SaleRuntime;
use crate::store::keys::ORDER_WRITERS;
use crate::store::{ShardKeys, StoreError};

/// Persists every order of `rt`'s streams that was never delivered to a writer, or was
/// delivered more than `claim_idle` ago and not acknowledged. Returns how many it handled.
pub async fn recover_sale(
    persister: &Persister,
    rt: &SaleRuntime,
    claim_idle: Duration,
    batch: usize,
) -> Result<usize, PersistError> {
    let mut handled = 0;
    for shard in 0..rt.shards() {
        let keys = persister.engine().keys().shard(&rt.sale.id, shard);
        handled += recover_undelivered(persister, &keys, batch).await?;
        handled += recover_stale(persister, &keys, claim_idle, batch).await?;
    }
    Ok(handled)
}

/// Entries no writer ever received (only possible if the group was missing when the
/// purchase script ran); creates the group if needed.
async fn recover_undelivered(
    persister: &Persister,
    keys: &ShardKeys,
    batch: usize,
) -> Result<usize, PersistError> {
    let mut conn = persister.engine().conn();
    let consumer = persister.engine().consumer().to_owned();
    let mut handled = 0;
    loop {
        let read: Result<Option<StreamReadReply>, _> = redis::cmd("XREADGROUP")
            .arg(&["GROUP", ORDER_WRITERS, &consumer, "COUNT"])
            .arg(batch)
            .arg("STREAMS")
            .arg(&keys.orders)
            .arg(">")
            .query_async(&mut conn)
            .await;
        let reply = match read {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("NOGROUP") => {
                ensure_group(persister, keys).await?;
                continue;
            }
            Err(e) => return Err(StoreError::from(e).into()),
        };
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if entries.is_empty() {
            return Ok(handled);
        }
        handled += persist_entries(persister, &entries).await?;
    }
}

/// Entries delivered more than `claim_idle` ago and still unacknowledged.
async fn recover_stale(
    persister: &Persister,
    keys: &ShardKeys,
    claim_idle: Duration,
    batch: usize,
) -> Result<usize, PersistError> {
    let mut conn = persister.engine().conn();
    let mut cursor = "0-0".to_owned();
    let mut handled = 0;
    loop {
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&keys.orders)
            .arg(ORDER_WRITERS)
            .arg(persister.engine().consumer())
            .arg(claim_idle.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(batch)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        handled += persist_entries(persister, &reply.claimed).await?;
        cursor = reply.next_stream_id;
        if cursor == "0-0" {
            return Ok(handled);
        }
    }
}

/// Creates the order writers' group on a stream (from its beginning) if it is missing.
pub async fn ensure_group(persister: &Persister, keys: &ShardKeys) -> Result<(), StoreError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg(&["CREATE", &keys.orders, ORDER_WRITERS, "0", "MKSTREAM"])
        .query_async(&mut persister.engine().conn())
        .await;
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
        _ => Ok(()),
    }
}

async fn persist_entries(
    persister: &Persister,
    entries: &[StreamId],
) -> Result<usize, PersistError> {
    let orders: Vec<NewOrder> = entries
        .iter()
        .filter_map(|entry| {
            let order = order_from_entry(entry);
            if order.is_none() {
                tracing::error!(entry = %entry.id, "unreadable order record left in its stream");
            }
            order
        })
        .collect();
    persister.persist(&orders).await?;
    Ok(orders.len())
}

/// Rebuilds an order from its stream record (fields written by `purchase.lua`).
pub fn order_from_entry(entry: &StreamId) -> Option<NewOrder> {
    let text = |field: &str| entry.get::<String>(field);
    Some(NewOrder {
        order_id: OrderId::parse(&text("order_id")?).ok()?,
        user: UserId::parse(&text("user_id")?).ok()?,
        quantity: Quantity::new(text("quantity")?.parse().ok()?).ok()?,
        created_ms: text("created_ms")?.parse().ok()?,
        entry_id: entry.id.clone(),
    })
}
