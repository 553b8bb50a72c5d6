//! One shard's side of reconciliation, read from Redis page by page: its counters, its
//! pending orders and dead letters (and which of them are rows already), its loan records.

use std::collections::HashSet;

use serde::Serialize;

use super::ReconcileError;
use crate::domain::OrderId;
use crate::persist::Persister;
use crate::stock::SaleRuntime;
use crate::store::{BulkConn, ShardKeys, dead_letters, loans, orders, returns, shards};

/// Entries or fields read per Redis call.
const PAGE: usize = 1000;

/// One shard's ledger.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ShardLedger {
    pub shard: u32,
    /// Units taken by accepted orders (Redis).
    pub deducted: u64,
    /// Units the shard got when the sale was set up.
    pub allotted: u64,
    /// Units lent to other shards, not yet settled.
    pub lent: u64,
    /// Units of the shard's loan records.
    pub on_loan: u64,
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
    /// The shard's counters' units not yet acknowledged (`sold - acked`): units of its
    /// stream entries and of its dead letters.
    pub pending_units_counter: u64,
    /// Dead letters not (yet) rows.
    pub dead_letters: u64,
    /// Units of those dead letters.
    pub dead_letter_units: u64,
    /// Units of dead letters an operator dropped.
    pub dropped_units: u64,
    /// `deducted - units_in_db - pending_units - dead_letter_units - dropped_units`.
    pub difference: i64,
    /// Units given back to this shard's shelf by cancelled and expired orders (Redis; the
    /// buyer's home shard takes them, whichever shard sold them).
    pub returned_units: u64,
    /// Units of this shard's rows that are paid (database).
    pub paid_units: u64,
    /// Units of this shard's rows awaiting payment (database).
    pub awaiting_units: u64,
    /// Units of this shard's rows cancelled or expired (database).
    pub settled_unpaid_units: u64,
    /// Of those, units whose return the database records as done.
    pub returned_in_db: u64,
}

/// Redis' side of shard `index` of `rt`, read on `conn` (of the bulk pool); the database's
/// figures are filled in by the caller.
pub async fn ledger(
    persister: &Persister,
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    index: u32,
) -> Result<ShardLedger, ReconcileError> {
    let keys = persister.redis().keys().shard(&rt.sale.id, index);
    let counters = shards::read_counters(conn, &keys).await?;
    let (allotted, dropped_units) = shards::allotted_and_dropped(conn, &keys).await?;
    let (stream_entries, pending, pending_units) =
        pending_orders(persister, conn, rt, index, &keys).await?;
    let (dead_letters, dead_letter_units) =
        dead_letters_not_rows(persister, conn, rt, index).await?;
    Ok(ShardLedger {
        shard: index,
        deducted: counters.sold,
        allotted,
        lent: counters.lent,
        on_loan: loans::units_on_loan(conn, &keys, PAGE).await?,
        pending,
        pending_units,
        stream_entries,
        pending_units_counter: counters.pending_units,
        dead_letters,
        dead_letter_units,
        dropped_units,
        returned_units: returns::returned_units(conn, &keys).await?,
        ..ShardLedger::default()
    })
}

/// (stream entries, of which not rows, their units), read page by page.
async fn pending_orders(
    persister: &Persister,
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    index: u32,
    keys: &ShardKeys,
) -> Result<(u64, u64, u64), ReconcileError> {
    let (mut entries, mut pending, mut units) = (0, 0, 0);
    let mut from = "-".to_owned();
    loop {
        // An unreadable entry is left to recovery, which dead-letters it; until then it
        // counts as an entry, with no units known.
        let page = orders::order_page(conn, keys, (&rt.sale.id, index), &from, PAGE).await?;
        entries += page.entries as u64;
        let ids: Vec<OrderId> = page.orders.iter().map(|o| o.order_id.clone()).collect();
        let rows = rows_among(persister, &ids).await?;
        for order in page.orders.iter().filter(|o| !rows.contains(&o.order_id)) {
            pending += 1;
            units += u64::from(order.quantity.get());
        }
        match page.next {
            Some(next) => from = next,
            None => return Ok((entries, pending, units)),
        }
    }
}

/// (dead letters that are not rows, their units).
async fn dead_letters_not_rows(
    persister: &Persister,
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    index: u32,
) -> Result<(u64, u64), ReconcileError> {
    let keys = persister.redis().keys();
    let letters = dead_letters::list_shard(conn, keys, &rt.sale.id, index).await?;
    let ids: Vec<OrderId> = letters.iter().map(|l| l.order_id.clone()).collect();
    let rows = rows_among(persister, &ids).await?;
    let waiting = letters.iter().filter(|l| !rows.contains(&l.order_id));
    Ok(waiting.fold((0, 0), |(count, units), letter| {
        (count + 1, units + u64::from(letter.quantity.unwrap_or(0)))
    }))
}

async fn rows_among(
    persister: &Persister,
    ids: &[OrderId],
) -> Result<HashSet<OrderId>, ReconcileError> {
    Ok(persister.db().existing(ids).await?.into_iter().collect())
}
