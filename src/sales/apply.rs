//! Applying declared sales (`[[sales]]` in the config file) to the sales stored in Redis:
//! at start-up, on SIGHUP, and by `flashgate apply`. A sale that is not stored yet is
//! created; one that may still be replaced (not live, nothing sold) is replaced; for a live
//! one, a changed `shards` is a live reshard and a changed `stock` a top-up (or reduction),
//! through the same paths as the operator endpoints. Every other field of a live sale stays
//! as stored, and the report says which and why — nothing is ignored silently.

use serde::Serialize;
use time::OffsetDateTime;

use super::{ChangeError, ChangeReport, PutOutcome, PutSaleError, SaleRegistry};
use crate::domain::{AuditAction, AuditEntry, Operator, SaleDefinition, SaleId, SaleSpec};
use crate::store::StoreError;

/// What applying one declared sale did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub sale_id: SaleId,
    /// `created`, `replaced`, `unchanged`, or `changed` (a live sale).
    pub outcome: &'static str,
    /// The live changes made (a reshard, a change of stock), each with where it stands.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<AppliedChange>,
    /// What was not applied, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// One live change made by an apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedChange {
    /// `reshard` or `stock`.
    pub kind: &'static str,
    /// From what to what (shards, or units in all).
    pub from: u64,
    pub to: u64,
    pub report: ChangeReport,
}

impl SaleRegistry {
    /// Applies every declared sale; returns one report per sale. `Err` only if Redis failed.
    pub async fn apply(
        &self,
        declared: &[(SaleId, SaleSpec)],
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut reports = Vec::with_capacity(declared.len());
        for (id, spec) in declared {
            let report = self.apply_one(id, spec, actor, now).await?;
            if !report.refused.is_empty() {
                tracing::warn!(sale = %id, refused = ?report.refused, "declared sale not applied in full");
            } else if report.outcome != "unchanged" {
                tracing::info!(sale = %id, outcome = report.outcome, changes = ?report.changes, "declared sale applied");
            }
            reports.push(report);
        }
        Ok(reports)
    }

    async fn apply_one(
        &self,
        id: &SaleId,
        spec: &SaleSpec,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<Applied, StoreError> {
        let mut report = Applied {
            sale_id: id.clone(),
            outcome: "unchanged",
            changes: Vec::new(),
            refused: Vec::new(),
        };
        let before = self.audited_definition(id).await;
        let put = self.put(id, spec.clone(), now).await;
        let stored = match put {
            Ok(PutOutcome::Created) => Some(("created", AuditAction::Created)),
            Ok(PutOutcome::Replaced) => Some(("replaced", AuditAction::Replaced)),
            _ => None,
        };
        if let Some((outcome, action)) = stored {
            report.outcome = outcome;
            let after = serde_json::json!(spec.definition());
            let entry = AuditEntry::new(now, actor.clone(), action, before, after);
            self.audit(id, entry).await;
        }
        match put {
            Ok(_) => {}
            Err(PutSaleError::Live(_) | PutSaleError::HasOrders(_)) => {
                self.apply_live(id, spec, actor, now, &mut report).await?;
            }
            Err(e @ (PutSaleError::Busy(..) | PutSaleError::Concurrent(_))) => {
                report.refused.push(e.to_string());
            }
            Err(e @ PutSaleError::Exhausted(_)) => report.refused.push(e.to_string()),
            Err(PutSaleError::Store(e)) => return Err(e),
        }
        Ok(report)
    }

    /// A live sale: reshard and change stock as declared; refuse the rest.
    async fn apply_live(
        &self,
        id: &SaleId,
        spec: &SaleSpec,
        actor: &Operator,
        now: OffsetDateTime,
        report: &mut Applied,
    ) -> Result<(), StoreError> {
        let Some(stored) = self.load(id).await? else {
            report
                .refused
                .push(format!("sale {id} disappeared while being applied"));
            return Ok(());
        };
        let fixed = fixed_fields_changed(stored.spec.definition(), spec.definition());
        if !fixed.is_empty() {
            report.refused.push(format!(
                "{} of a live sale (or one with orders) cannot change; only shards and stock can",
                fixed.join(", ")
            ));
        }
        report.outcome = "changed";
        let (old_shards, new_shards) = (stored.spec.shards(), spec.shards());
        if old_shards != new_shards {
            let outcome = self.reshard(id, new_shards, actor, now).await;
            record(
                report,
                "reshard",
                old_shards.into(),
                new_shards.into(),
                outcome,
            )?;
        }
        let (old_stock, new_stock) = (stored.spec.stock(), spec.stock());
        if old_stock != new_stock {
            let add = i64::try_from(new_stock).unwrap_or(i64::MAX)
                - i64::try_from(old_stock).unwrap_or(i64::MAX);
            let outcome = self.change_stock(id, add, actor, now).await;
            record(report, "stock", old_stock, new_stock, outcome)?;
        }
        Ok(())
    }
}

fn record(
    report: &mut Applied,
    kind: &'static str,
    from: u64,
    to: u64,
    outcome: Result<ChangeReport, ChangeError>,
) -> Result<(), StoreError> {
    match outcome {
        Ok(change) => report.changes.push(AppliedChange {
            kind,
            from,
            to,
            report: change,
        }),
        Err(ChangeError::Store(e)) => return Err(e),
        Err(e) => report.refused.push(format!("{kind} {from} -> {to}: {e}")),
    }
    Ok(())
}

/// The fields other than `shards` and `stock` that differ.
fn fixed_fields_changed(stored: &SaleDefinition, declared: &SaleDefinition) -> Vec<&'static str> {
    let checks: [(&'static str, bool); 7] = [
        ("name", stored.name != declared.name),
        ("starts_at", stored.starts_at != declared.starts_at),
        ("ends_at", stored.ends_at != declared.ends_at),
        (
            "per_user_limit",
            stored.per_user_limit != declared.per_user_limit,
        ),
        (
            "max_per_order",
            stored.max_per_order != declared.max_per_order,
        ),
        (
            "pow_difficulty",
            stored.pow_difficulty != declared.pow_difficulty,
        ),
        (
            "payment_window_s",
            stored.payment_window_s != declared.payment_window_s,
        ),
    ];
    checks
        .into_iter()
        .filter_map(|(name, changed)| changed.then_some(name))
        .collect()
}
