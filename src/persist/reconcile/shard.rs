//! One shard's side of reconciliation, read from Redis page by page: its counters, its
//! pending orders and dead letters, its loan records; then completed with the database's
//! figures, read in one snapshot after it (which of those orders are rows already among
//! them).

use serde::Serialize;

use super::ReconcileError;
use crate::db::DbLedger;
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

/// An order Redis holds for the database (a stream entry or a dead letter), with its
/// units (0 when its record cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub order_id: OrderId,
    pub units: u64,
}

/// Redis' side of one shard: its ledger without the database's figures, and the orders it
/// holds for the database, which may be rows already.
#[derive(Debug, Clone)]
pub struct ShardRead {
    ledger: ShardLedger,
    entries: Vec<Waiting>,
    letters: Vec<Waiting>,
}

impl ShardRead {
    /// The ids of the orders this shard holds for the database.
    pub fn waiting_ids(&self) -> impl Iterator<Item = &OrderId> {
        self.entries
            .iter()
            .chain(&self.letters)
            .map(|w| &w.order_id)
    }

    /// The ledger, with the database's figures of `db` (read after Redis): pending orders
    /// and dead letters are those of the shard's that are no rows, and the difference is
    /// what neither side accounts for.
    pub fn completed(self, db: &DbLedger) -> ShardLedger {
        let mut ledger = self.ledger;
        let index = ledger.shard;
        let not_rows = |waiting: &[Waiting]| {
            waiting
                .iter()
                .filter(|w| !db.existing.contains(&w.order_id))
                .fold((0, 0), |(count, units), w| (count + 1, units + w.units))
        };
        (ledger.pending, ledger.pending_units) = not_rows(&self.entries);
        (ledger.dead_letters, ledger.dead_letter_units) = not_rows(&self.letters);
        if let Some(t) = db.rows.iter().find(|t| t.shard == index) {
            ledger.orders_in_db = t.rows;
            ledger.units_in_db = t.units;
        }
        if let Some(t) = db.states.iter().find(|t| t.shard == index) {
            ledger.paid_units = t.paid;
            ledger.awaiting_units = t.awaiting;
            ledger.settled_unpaid_units = t.settled_unpaid;
            ledger.returned_in_db = t.returned;
        }
        ledger.difference = ledger.deducted as i64
            - (ledger.units_in_db + ledger.pending_units + ledger.dead_letter_units) as i64
            - ledger.dropped_units as i64;
        ledger
    }
}

/// Redis' side of shard `index` of `rt`, read on `conn` (of the bulk pool).
pub async fn read(
    persister: &Persister,
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    index: u32,
) -> Result<ShardRead, ReconcileError> {
    let keys = persister.redis().keys().shard(&rt.sale.id, index);
    let counters = shards::read_counters(conn, &keys).await?;
    let (allotted, dropped_units) = shards::allotted_and_dropped(conn, &keys).await?;
    let (stream_entries, entries) = stream_orders(conn, rt, index, &keys).await?;
    let letters = dead_letters::list_shard(conn, persister.redis().keys(), &rt.sale.id, index)
        .await?
        .into_iter()
        .map(|l| Waiting {
            order_id: l.order_id,
            units: u64::from(l.quantity.unwrap_or(0)),
        })
        .collect();
    let ledger = ShardLedger {
        shard: index,
        deducted: counters.sold,
        allotted,
        lent: counters.lent,
        on_loan: loans::units_on_loan(conn, &keys, PAGE).await?,
        stream_entries,
        pending_units_counter: counters.pending_units,
        dropped_units,
        returned_units: returns::returned_units(conn, &keys).await?,
        ..ShardLedger::default()
    };
    Ok(ShardRead {
        ledger,
        entries,
        letters,
    })
}

/// (stream entries, the orders of the readable ones), read page by page.
async fn stream_orders(
    conn: &mut BulkConn,
    rt: &SaleRuntime,
    index: u32,
    keys: &ShardKeys,
) -> Result<(u64, Vec<Waiting>), ReconcileError> {
    let (mut entries, mut orders) = (0, Vec::new());
    let mut from = "-".to_owned();
    loop {
        // An unreadable entry is left to recovery, which dead-letters it; until then it
        // counts as an entry, with no units known.
        let page = orders::order_page(conn, keys, (&rt.sale.id, index), &from, PAGE).await?;
        entries += page.entries as u64;
        orders.extend(page.orders.into_iter().map(|o| Waiting {
            order_id: o.order_id,
            units: u64::from(o.quantity.get()),
        }));
        match page.next {
            Some(next) => from = next,
            None => return Ok((entries, orders)),
        }
    }
}
