//! What operators are told about a sale: its figures read from Redis now, or, when its
//! stored record cannot be read, that it is unreadable and why; with its audit trail.

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::registry::SaleRegistry;
use crate::domain::{AuditEntry, Layout, Operation, SaleId, SaleState};
use crate::store::StoreError;

/// One shard's figures for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShardStatus {
    pub shard: u32,
    pub stock: u64,
    pub lent: u64,
    pub sold: u64,
}

/// A sale's figures for operators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SaleStatus {
    pub sale_id: SaleId,
    pub state: SaleState,
    pub epoch: u64,
    pub stock_total: u64,
    pub remaining: u64,
    /// The shards it sells from, and those a reshard is draining.
    #[schema(value_type = Object)]
    pub layout: Layout,
    /// An operator's change in progress (a reshard, a change of stock), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub change: Option<Operation>,
    pub shards: Vec<ShardStatus>,
    /// Units sold (taken by accepted orders; units that cancelled and expired orders gave
    /// back and that sold again count each time: reconciliation shows the units returned).
    pub sold: u64,
    /// Units of accepted orders not yet persisted to the database.
    pub pending: u64,
    /// Units of accepted orders persisted to the database.
    pub persisted: u64,
    /// Refusals on this instance since it started.
    pub rejected_by_reason: HashMap<&'static str, u64>,
}

/// A sale whose stored definition or counters cannot be read: the gateway skips it (its
/// buyers are answered 500, and nothing is taken) and every other sale goes on.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnreadableSale {
    pub sale_id: SaleId,
    /// Always `unreadable`: the field operators switch on, as for a readable sale.
    pub state: &'static str,
    /// What could not be read, and why.
    pub error: String,
}

/// A sale's figures, or why they cannot be read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SaleFigures {
    Readable(Box<SaleStatus>),
    Unreadable(UnreadableSale),
}

/// What the operator view shows for a sale: its figures and its audit trail, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SaleReport {
    #[serde(flatten)]
    pub figures: SaleFigures,
    pub audit: Vec<AuditEntry>,
}

impl UnreadableSale {
    /// The report of `sale`, which failed to read with `error`.
    pub fn new(sale: &SaleId, error: &StoreError) -> Self {
        Self {
            sale_id: sale.clone(),
            state: "unreadable",
            error: error_chain(error),
        }
    }
}

/// Whether `error` says the stored data is bad (as opposed to Redis being unreachable):
/// such a sale stays unreadable until an operator rewrites it.
pub fn is_unreadable(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Corrupt { .. } | StoreError::UnexpectedReply { .. }
    )
}

/// `error` and its sources, joined: "stored sale definition is corrupt: expected value ...".
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl SaleRegistry {
    /// The operator view of a sale, read from Redis now: its figures, or why it cannot be
    /// read. `Err` only when Redis itself failed; `None` if no such sale exists.
    pub async fn report(
        &self,
        id: &SaleId,
        now: OffsetDateTime,
    ) -> Result<Option<SaleReport>, StoreError> {
        let Some(figures) = self.figures(id, now).await? else {
            return Ok(None);
        };
        let audit = self.audit_trail(id).await?;
        Ok(Some(SaleReport { figures, audit }))
    }

    /// The figures of sale `id` read from Redis now, or why they cannot be read. `Err`
    /// only when Redis itself failed; `None` if no such sale exists.
    pub async fn figures(
        &self,
        id: &SaleId,
        now: OffsetDateTime,
    ) -> Result<Option<SaleFigures>, StoreError> {
        match self.status(id, now).await {
            Ok(status) => Ok(status.map(|s| SaleFigures::Readable(Box::new(s)))),
            Err(error) if is_unreadable(&error) => Ok(Some(SaleFigures::Unreadable(
                UnreadableSale::new(id, &error),
            ))),
            Err(error) => Err(error),
        }
    }

    /// Operator figures for a sale, read from Redis now.
    pub async fn status(
        &self,
        id: &SaleId,
        now: OffsetDateTime,
    ) -> Result<Option<SaleStatus>, StoreError> {
        // Read afresh: an operator looks at what Redis holds now, not at this instance's
        // cache (which follows changes made elsewhere within a refresh interval).
        let Some(rt) = self.reload(id).await? else {
            return Ok(None);
        };
        let counters = self.engine().collect(&rt).await?;
        let remaining: u64 = counters.iter().map(|(_, c)| c.stock + c.lent).sum();
        // Sold and pending over every shard the sale used: earlier layouts sold units too,
        // and may still hold orders on their way to the database.
        let all = self.engine().collect_all(&rt).await?;
        let sold = all.iter().map(|c| c.sold).sum();
        let pending = all.iter().map(|c| c.pending_units).sum();
        let shards = counters
            .iter()
            .map(|(shard, c)| ShardStatus {
                shard: *shard,
                stock: c.stock,
                lent: c.lent,
                sold: c.sold,
            })
            .collect();
        Ok(Some(SaleStatus {
            sale_id: id.clone(),
            state: SaleState::of(rt.sale.spec.window(now), rt.paused, remaining),
            epoch: rt.epoch,
            stock_total: rt.sale.spec.stock(),
            remaining,
            layout: rt.layout.clone(),
            change: self.load(id).await?.and_then(|stored| stored.op),
            shards,
            sold,
            pending,
            persisted: sold.saturating_sub(pending),
            rejected_by_reason: rt.stats.snapshot().into_iter().collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_report_names_the_cause() {
        let source = serde_json::from_str::<u32>("{").unwrap_err();
        let error = StoreError::Corrupt {
            what: "sale definition",
            source: source.into(),
        };
        let sale = SaleId::parse("s").unwrap();
        let report = UnreadableSale::new(&sale, &error);
        assert!(
            report
                .error
                .starts_with("stored sale definition is corrupt: "),
            "{}",
            report.error
        );
        assert!(is_unreadable(&error));
    }
}
