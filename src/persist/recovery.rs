//! The recovery worker: persists orders whose stream entries are older than
//! `queue.claim_idle_ms` — left by a gateway that died (kill -9, crash) before its writer got
//! to them, by a writer that gave up at shutdown, or spilled by the `spill` policy. A
//! persisted order's entry is deleted, so every entry in a stream is an unpersisted order,
//! and its id (a Redis timestamp) tells its age.
//!
//! Every instance runs it; a short per-shard lock (`SET NX PX`) keeps two instances from
//! doing the same shard at once, and persisting twice would be harmless anyway (idempotent
//! rows, idempotent ack).

use std::time::Duration;

use redis::streams::StreamRangeReply;

use super::{PersistError, Persister};
use crate::orders::{NewOrder, record_from_entry};
use crate::sales::SaleRuntime;
use crate::store::{ShardKeys, StoreError};

/// Persists every order of `rt`'s streams older than `claim_idle` (by the Redis clock).
/// Returns how many it handled.
pub async fn recover_sale(
    persister: &Persister,
    rt: &SaleRuntime,
    claim_idle: Duration,
    batch: usize,
) -> Result<usize, PersistError> {
    let mut handled = 0;
    let now_ms = redis_now_ms(persister).await?;
    let cutoff = now_ms.saturating_sub(claim_idle.as_millis() as u64);
    for shard in 0..rt.shards() {
        let keys = persister.engine().keys().shard(&rt.sale.id, shard);
        if !lock(persister, &keys, claim_idle).await? {
            continue;
        }
        handled += recover_shard(persister, rt, shard, &keys, cutoff, batch).await?;
    }
    Ok(handled)
}

/// The Redis server's clock, which stamped the entry ids.
async fn redis_now_ms(persister: &Persister) -> Result<u64, StoreError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut persister.engine().conn())
        .await?;
    Ok(secs * 1000 + micros / 1000)
}

/// Takes the shard's recovery lock for a while; false if another instance holds it.
async fn lock(persister: &Persister, keys: &ShardKeys, hold: Duration) -> Result<bool, StoreError> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(&keys.recovering)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(hold.as_millis().max(1) as u64)
        .query_async(&mut persister.engine().conn())
        .await?;
    Ok(taken.is_some())
}

async fn recover_shard(
    persister: &Persister,
    rt: &SaleRuntime,
    shard: u32,
    keys: &ShardKeys,
    cutoff_ms: u64,
    batch: usize,
) -> Result<usize, PersistError> {
    let mut conn = persister.engine().conn();
    let mut handled = 0;
    loop {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.orders)
            .arg("-")
            .arg(cutoff_ms)
            .arg("COUNT")
            .arg(batch)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let orders: Vec<NewOrder> = reply
            .ids
            .iter()
            .filter_map(|entry| {
                let order = record_from_entry(&rt.sale.id, shard, entry);
                if order.is_none() {
                    tracing::error!(sale = %rt.sale.id, shard, entry = %entry.id, "unreadable order record left in its stream");
                }
                order.map(NewOrder::from)
            })
            .collect();
        persister.persist(&orders).await?;
        handled += orders.len();
        if reply.ids.len() < batch || orders.is_empty() {
            return Ok(handled);
        }
    }
}
