//! Reconciliation: units deducted in Redis must equal units in database rows plus units of
//! orders still pending in the streams — per sale and per shard.

use std::collections::HashSet;

use serde::Serialize;

use super::Persister;
use crate::db::DbError;
use crate::domain::SaleId;
use crate::orders::{OrderRecord, record_from_entry};
use crate::sales::SaleRuntime;
use crate::stock::ops;
use crate::store::StoreError;
use redis::streams::StreamRangeReply;

/// Why reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// One shard's ledger.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ShardLedger {
    pub shard: u32,
    /// Units taken by accepted orders (Redis).
    pub deducted: u64,
    /// Order rows in the database.
    pub orders_in_db: u64,
    /// Units in those rows.
    pub units_in_db: u64,
    /// Orders pending in Redis and not (yet) rows.
    pub pending: u64,
    /// Units of those orders.
    pub pending_units: u64,
    /// Entries in the shard's order stream (each an order not yet acknowledged as a row).
    pub stream_entries: u64,
    /// The shard's `pending_units` counter: units of the entries in its stream.
    pub pending_units_counter: u64,
    /// `deducted - units_in_db - pending_units`: zero when everything is accounted for.
    pub difference: i64,
}

/// A sale's ledger.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reconciliation {
    pub sale_id: SaleId,
    pub deducted: u64,
    pub orders_in_db: u64,
    pub units_in_db: u64,
    pub pending: u64,
    pub pending_units: u64,
    pub difference: i64,
    pub shards: Vec<ShardLedger>,
}

impl Reconciliation {
    /// Whether every unit is accounted for.
    pub fn is_exact(&self) -> bool {
        self.difference == 0 && self.shards.iter().all(|s| s.difference == 0)
    }
}

/// Reconciles one sale. Exact when the sale is quiet; under traffic a figure read from
/// Redis may be a moment older than the database's.
pub async fn reconcile(
    persister: &Persister,
    rt: &SaleRuntime,
) -> Result<Reconciliation, ReconcileError> {
    let db = persister.store().totals(&rt.sale.id).await?;
    let mut shards = Vec::new();
    for shard in 0..rt.shards() {
        let mut ledger = shard_ledger(persister, rt, shard).await?;
        if let Some(t) = db.iter().find(|t| t.shard == shard) {
            ledger.orders_in_db = t.rows;
            ledger.units_in_db = t.units;
        }
        ledger.difference =
            ledger.deducted as i64 - ledger.units_in_db as i64 - ledger.pending_units as i64;
        shards.push(ledger);
    }
    let sum = |f: fn(&ShardLedger) -> u64| shards.iter().map(f).sum::<u64>();
    Ok(Reconciliation {
        sale_id: rt.sale.id.clone(),
        deducted: sum(|s| s.deducted),
        orders_in_db: sum(|s| s.orders_in_db),
        units_in_db: sum(|s| s.units_in_db),
        pending: sum(|s| s.pending),
        pending_units: sum(|s| s.pending_units),
        difference: shards.iter().map(|s| s.difference).sum(),
        shards,
    })
}

/// Redis' side of one shard: units deducted, and pending orders (stream entries) that are
/// not rows yet (an order is briefly both, between commit and acknowledgement).
async fn shard_ledger(
    persister: &Persister,
    rt: &SaleRuntime,
    shard: u32,
) -> Result<ShardLedger, ReconcileError> {
    let engine = persister.engine();
    let keys = engine.keys().shard(&rt.sale.id, shard);
    let mut conn = engine.conn();
    let counters = ops::read_counters(&mut conn, &keys).await?;
    let entries: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.orders)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let pending: Vec<OrderRecord> = entries
        .ids
        .iter()
        .map(|e| {
            record_from_entry(&rt.sale.id, shard, e)
                .ok_or_else(|| StoreError::unexpected("order stream entry", &e.id))
        })
        .collect::<Result<_, _>>()?;
    let ids: Vec<String> = pending.iter().map(|o| o.order_id.to_string()).collect();
    let in_db: HashSet<String> = persister
        .store()
        .existing(&ids)
        .await?
        .into_iter()
        .collect();
    let not_rows: Vec<u64> = pending
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !in_db.contains(*id))
        .map(|(o, _)| u64::from(o.quantity.get()))
        .collect();
    Ok(ShardLedger {
        shard,
        deducted: counters.sold,
        pending: not_rows.len() as u64,
        pending_units: not_rows.iter().sum(),
        stream_entries: entries.ids.len() as u64,
        pending_units_counter: counters.pending_units,
        ..ShardLedger::default()
    })
}
