//! One shard's side of reconciliation, read from Redis page by page: its counters, its
//! pending orders and dead letters (and which of them are rows already), its loan records.

use std::collections::HashSet;

use redis::streams::StreamRangeReply;
use serde::Serialize;

use super::ReconcileError;
use crate::orders::record_from_entry;
use crate::persist::{Persister, dead_letters};
use crate::sales::SaleRuntime;
use crate::stock::ops;
use crate::store::{RedisConn, ShardKeys, StoreError};

/// Entries or fields read per Redis call.
const PAGE: usize = 1000;

/// One shard's ledger.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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
}

/// Redis' side of shard `index` of `rt`; the database's figures are filled in by the caller.
pub async fn ledger(
    persister: &Persister,
    rt: &SaleRuntime,
    index: u32,
) -> Result<ShardLedger, ReconcileError> {
    let keys = persister.engine().keys().shard(&rt.sale.id, index);
    let mut conn = persister.engine().conn();
    let counters = ops::read_counters(&mut conn, &keys).await?;
    let (allotted, dropped): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(&keys.shard)
        .arg(&["allotted", "dropped"])
        .query_async(&mut conn)
        .await
        .map_err(StoreError::from)?;
    let (stream_entries, pending, pending_units) = pending_orders(persister, rt, index).await?;
    let (dead_letters, dead_letter_units) = dead_letters_not_rows(persister, rt, index).await?;
    Ok(ShardLedger {
        shard: index,
        deducted: counters.sold,
        allotted: allotted.unwrap_or(0),
        lent: counters.lent,
        on_loan: on_loan(&mut conn, &keys).await?,
        pending,
        pending_units,
        stream_entries,
        pending_units_counter: counters.pending_units,
        dead_letters,
        dead_letter_units,
        dropped_units: dropped.unwrap_or(0),
        ..ShardLedger::default()
    })
}

/// (stream entries, of which not rows, their units), read page by page.
async fn pending_orders(
    persister: &Persister,
    rt: &SaleRuntime,
    index: u32,
) -> Result<(u64, u64, u64), ReconcileError> {
    let keys = persister.engine().keys().shard(&rt.sale.id, index);
    let mut conn = persister.engine().conn();
    let (mut entries, mut pending, mut units) = (0, 0, 0);
    let mut from = "-".to_owned();
    loop {
        let page = stream_page(&mut conn, &keys.orders, &from).await?;
        entries += page.ids.len() as u64;
        // An unreadable entry is left to recovery, which dead-letters it; until then it
        // counts as an entry, with no units known.
        let orders: Vec<_> = page
            .ids
            .iter()
            .filter_map(|e| record_from_entry(&rt.sale.id, index, e))
            .collect();
        let ids: Vec<String> = orders.iter().map(|o| o.order_id.to_string()).collect();
        let rows = rows_among(persister, &ids).await?;
        for (order, _) in orders
            .iter()
            .zip(&ids)
            .filter(|(_, id)| !rows.contains(*id))
        {
            pending += 1;
            units += u64::from(order.quantity.get());
        }
        match page.ids.last() {
            Some(last) if page.ids.len() == PAGE => from = format!("({}", last.id),
            _ => return Ok((entries, pending, units)),
        }
    }
}

/// Up to [`PAGE`] entries of `stream` from `from` (an id, `(`id for after it, or `-`).
async fn stream_page(
    conn: &mut RedisConn,
    stream: &str,
    from: &str,
) -> Result<StreamRangeReply, StoreError> {
    Ok(redis::cmd("XRANGE")
        .arg(stream)
        .arg(from)
        .arg("+")
        .arg("COUNT")
        .arg(PAGE)
        .query_async(conn)
        .await?)
}

/// (dead letters that are not rows, their units).
async fn dead_letters_not_rows(
    persister: &Persister,
    rt: &SaleRuntime,
    index: u32,
) -> Result<(u64, u64), ReconcileError> {
    let letters = dead_letters::list_shard(persister, &rt.sale.id, index).await?;
    let ids: Vec<String> = letters.iter().map(|l| l.order_id.to_string()).collect();
    let rows = rows_among(persister, &ids).await?;
    let waiting = letters
        .iter()
        .zip(&ids)
        .filter(|(_, id)| !rows.contains(*id));
    Ok(waiting.fold((0, 0), |(count, units), (letter, _)| {
        (count + 1, units + u64::from(letter.quantity.unwrap_or(0)))
    }))
}

async fn rows_among(
    persister: &Persister,
    ids: &[String],
) -> Result<HashSet<String>, ReconcileError> {
    Ok(persister.store().existing(ids).await?.into_iter().collect())
}

/// Units of the shard's loan records (`<recipient>|<units>|<created ms>`), by `HSCAN`.
async fn on_loan(conn: &mut RedisConn, keys: &ShardKeys) -> Result<u64, StoreError> {
    let mut cursor = 0u64;
    let mut units = 0;
    loop {
        let (next, fields): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&keys.loans)
            .arg(cursor)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await?;
        for (loan, record) in &fields {
            let loan_units = record.split('|').nth(1).and_then(|u| u.parse::<u64>().ok());
            units += loan_units.ok_or_else(|| StoreError::unexpected("loan record", loan))?;
        }
        if next == 0 {
            return Ok(units);
        }
        cursor = next;
    }
}
