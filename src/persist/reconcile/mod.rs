//! Reconciliation: units deducted in Redis must equal units in database rows, plus units of
//! orders still pending in the streams, plus dead letters, plus units an operator dropped —
//! per sale and per shard. After the purchase, units sold minus units given back equal the
//! units paid plus those awaiting payment (rows and pending orders): every cancelled or
//! expired row's units are back on a shelf (`ReturnsDue` otherwise), exactly as many as
//! Redis took back (`ReturnMismatch` otherwise). Beyond that ledger it checks what must hold between Redis and
//! the database and reports each breach as a typed [`Finding`]: shards' allotments summing
//! to the sale's stock, no more sold than the stock, every unit in `lent` backed by a loan
//! record, every buyer's held count equal to the units of their orders, every row an order
//! Redis recorded, no dead letter waiting.
//!
//! Redis is read in pages (`XRANGE … COUNT`, `HSCAN … COUNT`), never in one large reply;
//! rows are read page by page too. It costs O(orders + buyers) calls: an operator tool.

mod buyers;
mod findings;
mod shard;

use std::collections::HashSet;

use serde::Serialize;

use super::Persister;
use crate::db::DbError;
use crate::domain::{OrderId, SaleId};
use crate::stock::SaleRuntime;
use crate::store::StoreError;

pub use findings::Finding;
pub use shard::ShardLedger;
use shard::ShardRead;

/// Rows of the database read per page.
const ROW_PAGE: u32 = 1000;
/// Rows Redis never recorded that are reported one by one; beyond, only their number.
const ROW_FINDINGS: usize = 100;

/// Why reconciliation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A sale's ledger and findings.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Reconciliation {
    pub sale_id: SaleId,
    /// Units taken by accepted orders (Redis).
    pub deducted: u64,
    pub orders_in_db: u64,
    pub units_in_db: u64,
    /// Orders pending in the streams and not (yet) rows, and their units.
    pub pending: u64,
    pub pending_units: u64,
    /// Dead letters not (yet) rows, and their units.
    pub dead_letters: u64,
    pub dead_letter_units: u64,
    /// Units of dead letters an operator dropped (sold, and never to be rows).
    pub dropped_units: u64,
    /// `deducted - units_in_db - pending_units - dead_letter_units - dropped_units`.
    pub difference: i64,
    /// Units given back to the sale by cancelled and expired orders (Redis).
    pub returned_units: u64,
    /// Units of paid rows.
    pub paid_units: u64,
    /// Units of rows awaiting payment.
    pub awaiting_units: u64,
    /// Everything that does not hold; empty when Redis and the database agree.
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Finding>,
    pub shards: Vec<ShardLedger>,
}

impl Reconciliation {
    /// Whether every unit is accounted for and nothing needs an operator.
    pub fn is_exact(&self) -> bool {
        self.difference == 0 && self.findings.is_empty()
    }
}

/// Reconciles one sale. Exact when no purchase is being accepted, even while the order
/// writer is still moving orders from the streams to the database; under traffic a figure
/// read from Redis may be a moment older than the database's.
///
/// The writer moves an order with a commit, then deletes its stream entry. So Redis is read
/// first, and the database after it in one snapshot (`OrderDb::ledger`), which also says
/// which of the orders Redis still holds are rows by then: an order committed in between is
/// a row, counted once, and one still uncommitted is pending. (Read the other way round, an
/// order committed after the database was read and deleted from its stream before the
/// stream was read would be counted nowhere.)
pub async fn reconcile(
    persister: &Persister,
    rt: &SaleRuntime,
) -> Result<Reconciliation, ReconcileError> {
    let mut reads = Vec::new();
    let mut recorded = HashSet::new();
    let mut findings = Vec::new();
    let mut conn = persister.redis().bulk().await?;
    for index in rt.layout.every_shard() {
        reads.push(shard::read(persister, &mut conn, rt, index).await?);
        let keys = persister.redis().keys().shard(&rt.sale.id, index);
        findings.extend(buyers::scan(&mut conn, &keys, index, &mut recorded).await?);
    }
    drop(conn);
    let waiting: Vec<OrderId> = reads
        .iter()
        .flat_map(ShardRead::waiting_ids)
        .cloned()
        .collect();
    let db = persister.db().ledger(&rt.sale.id, &waiting).await?;
    let shards: Vec<ShardLedger> = reads.into_iter().map(|read| read.completed(&db)).collect();
    findings.extend(findings::of_sale(rt.sale.spec.stock(), &shards));
    findings.extend(unrecorded_rows(persister, &rt.sale.id, &recorded).await?);
    Ok(summed(rt.sale.id.clone(), shards, findings))
}

fn summed(sale_id: SaleId, shards: Vec<ShardLedger>, findings: Vec<Finding>) -> Reconciliation {
    let sum = |f: fn(&ShardLedger) -> u64| shards.iter().map(f).sum::<u64>();
    Reconciliation {
        sale_id,
        deducted: sum(|s| s.deducted),
        orders_in_db: sum(|s| s.orders_in_db),
        units_in_db: sum(|s| s.units_in_db),
        pending: sum(|s| s.pending),
        pending_units: sum(|s| s.pending_units),
        dead_letters: sum(|s| s.dead_letters),
        dead_letter_units: sum(|s| s.dead_letter_units),
        dropped_units: sum(|s| s.dropped_units),
        returned_units: sum(|s| s.returned_units),
        paid_units: sum(|s| s.paid_units),
        awaiting_units: sum(|s| s.awaiting_units),
        difference: shards.iter().map(|s| s.difference).sum(),
        findings,
        shards,
    }
}

/// Rows of `sale` whose order id is in no buyer record of the sale: orders Redis never
/// accepted (or whose records it lost).
async fn unrecorded_rows(
    persister: &Persister,
    sale: &SaleId,
    recorded: &HashSet<OrderId>,
) -> Result<Vec<Finding>, ReconcileError> {
    let mut findings = Vec::new();
    let mut more = 0;
    let mut after: Option<OrderId> = None;
    loop {
        let page = persister
            .db()
            .order_ids_after(sale, after.as_ref(), ROW_PAGE)
            .await?;
        for order_id in page.iter().filter(|id| !recorded.contains(*id)) {
            if findings.len() < ROW_FINDINGS {
                findings.push(Finding::UnrecordedRow {
                    order_id: order_id.text(),
                });
            } else {
                more += 1;
            }
        }
        if page.len() < ROW_PAGE as usize {
            break;
        }
        after = page.last().cloned();
    }
    if more > 0 {
        findings.push(Finding::MoreUnrecordedRows { count: more });
    }
    Ok(findings)
}
