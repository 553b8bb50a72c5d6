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

use super::isolate::{BatchWrite, Step};
use super::{PersistError, Persister, dead_letters};
use crate::domain::{EntryId, NewOrder, OrderId};
use crate::stock::SaleRuntime;
use crate::store::recovery::{self, StaleEntry};
use crate::store::{BulkConn, StoreError};

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
/// Returns how many it handled. Reads on a connection of the bulk pool.
pub async fn recover_sale(
    persister: &Persister,
    rt: &SaleRuntime,
    settings: RecoverySettings,
) -> Result<usize, PersistError> {
    let redis = persister.redis();
    let mut conn = redis.bulk().await?;
    let mut handled = 0;
    let now_ms = recovery::now_ms(&mut conn).await?;
    let cutoff = now_ms.saturating_sub(settings.claim_idle.as_millis() as u64);
    for shard in rt.layout.every_shard() {
        let locked = recovery::lock_shard(
            &mut conn,
            redis.keys(),
            &rt.sale.id,
            shard,
            settings.claim_idle,
        );
        if !locked.await? {
            continue;
        }
        handled += recover_shard(persister, &mut conn, rt, shard, cutoff, settings).await?;
    }
    Ok(handled)
}

async fn recover_shard(
    persister: &Persister,
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    shard: u32,
    cutoff_ms: u64,
    settings: RecoverySettings,
) -> Result<usize, PersistError> {
    let keys = persister.redis().keys();
    let mut handled = 0;
    loop {
        let entries =
            recovery::stale_entries(conn, keys, &rt.sale.id, shard, cutoff_ms, settings.batch)
                .await?;
        let read = entries.len();
        let mut orders = Vec::with_capacity(read);
        for entry in entries {
            match entry {
                StaleEntry::Order(order) => orders.push(order),
                StaleEntry::Unreadable(id) => bury_unreadable(persister, rt, shard, &id).await?,
            }
        }
        handled += orders.len();
        write_all(persister, orders, settings.poison_attempts).await?;
        if read < settings.batch {
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
