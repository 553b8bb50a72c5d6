//! The recovery worker: persists orders whose stream entries are older than
//! `queue.claim_idle_ms` — left by a gateway that died (kill -9, crash) before its writer got
//! to them, by a writer that gave up at shutdown, or spilled by the `spill` policy. A
//! persisted order's entry is deleted, so every entry in a stream is an unpersisted order,
//! and its id (a Redis timestamp) tells its age.
//!
//! Every instance runs it; a short per-shard lock (`SET NX PX`) keeps two instances from
//! doing the same shard at once, and persisting twice would be harmless anyway (idempotent
//! rows, idempotent ack).
//!
//! Orders the database refuses are isolated and dead-lettered as the writer does
//! ([`super::isolate`]); an entry whose order record cannot be read is dead-lettered at once
//! (no retry could make it readable). Dead letters live in their own stream, so recovery
//! never picks them up again.

use std::time::Duration;

use redis::streams::StreamRangeReply;

use super::isolate::{BatchWrite, Step};
use super::{PersistError, Persister, dead_letters};
use crate::domain::{EntryId, OrderId};
use crate::orders::{NewOrder, record_from_entry};
use crate::sales::SaleRuntime;
use crate::store::{ShardKeys, StoreError};

/// How recovery reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct RecoverySettings {
    /// Age after which a stream entry is recovery's to persist.
    pub claim_idle: Duration,
    /// Entries read and written at once.
    pub batch: usize,
    /// Refusals of one order on its own before it becomes a dead letter.
    pub poison_attempts: u32,
}

/// Pause before an order the database refused on its own is sent again.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

/// Persists every order of `rt`'s streams older than `claim_idle` (by the Redis clock).
/// Returns how many it handled.
pub async fn recover_sale(
    persister: &Persister,
    rt: &SaleRuntime,
    settings: RecoverySettings,
) -> Result<usize, PersistError> {
    let mut handled = 0;
    let now_ms = redis_now_ms(persister).await?;
    let cutoff = now_ms.saturating_sub(settings.claim_idle.as_millis() as u64);
    for shard in 0..rt.shards() {
        let keys = persister.engine().keys().shard(&rt.sale.id, shard);
        if !lock(persister, &keys, settings.claim_idle).await? {
            continue;
        }
        handled += recover_shard(persister, rt, shard, &keys, cutoff, settings).await?;
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
    settings: RecoverySettings,
) -> Result<usize, PersistError> {
    let mut conn = persister.engine().conn();
    let mut handled = 0;
    loop {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&keys.orders)
            .arg("-")
            .arg(cutoff_ms)
            .arg("COUNT")
            .arg(settings.batch)
            .query_async(&mut conn)
            .await
            .map_err(StoreError::from)?;
        let mut orders = Vec::with_capacity(reply.ids.len());
        for entry in &reply.ids {
            match record_from_entry(&rt.sale.id, shard, entry) {
                Some(order) => orders.push(NewOrder::from(order)),
                None => bury_unreadable(persister, rt, shard, &entry.id).await?,
            }
        }
        handled += orders.len();
        write_all(persister, orders, settings.poison_attempts).await?;
        if reply.ids.len() < settings.batch {
            return Ok(handled);
        }
    }
}

/// Writes `orders` until each is a row or a dead letter; a failure that passes ends this
/// run (the orders stay in their stream for the next one).
async fn write_all(
    persister: &Persister,
    orders: Vec<NewOrder>,
    poison_attempts: u32,
) -> Result<(), PersistError> {
    let mut write = BatchWrite::new(orders, poison_attempts);
    while !write.is_done() {
        if let Step::Refused { .. } = write.step(persister).await? {
            tokio::time::sleep(REFUSED_PAUSE).await;
        }
    }
    Ok(())
}

/// Dead-letters the stream entry `entry` of `shard`, whose order record cannot be read.
async fn bury_unreadable(
    persister: &Persister,
    rt: &SaleRuntime,
    shard: u32,
    entry: &str,
) -> Result<(), PersistError> {
    let entry = EntryId::parse(entry)
        .map_err(|_| StoreError::unexpected("order stream entry id", &entry))?;
    let order = OrderId::new(rt.sale.id.clone(), shard, entry);
    dead_letters::bury(persister, &order, "unreadable order record", 0)
        .await
        .map_err(PersistError::Bury)?;
    Ok(())
}
