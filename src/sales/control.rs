//! The operator's switches on a sale: pause, resume, end now. Each is one atomic change of
//! the sale's record in Redis that bumps its epoch (`store::sales::update`): this instance
//! installs the new record at once, every other one within a refresh interval (its
//! background refresh polls the epoch). Each action, no-ops included, is audited.

use std::sync::Arc;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::registry::SaleRegistry;
use crate::domain::{AuditAction, AuditEntry, Operator, SaleId, SaleSpec};
use crate::stock::SaleRuntime;
use crate::store::StoreError;
use crate::store::sales::{self, Expect, StoredSale, Update};

/// Times a switch re-reads the record when other changes keep coming first.
const ATTEMPTS: usize = 8;

/// An operator's switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Turn the kill switch on: purchases and token issuance answer `sale-paused`.
    Pause,
    /// Turn the kill switch off.
    Resume,
    /// Close the window now.
    End,
}

/// Why a switch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("no sale {0}")]
    NotFound(SaleId),
    #[error("sale {0} kept changing under the operator's change; retry")]
    Contended(SaleId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Switch {
    fn action(self) -> AuditAction {
        match self {
            Self::Pause => AuditAction::Paused,
            Self::Resume => AuditAction::Resumed,
            Self::End => AuditAction::Ended,
        }
    }

    /// The record after this switch at `now`, if it changes anything.
    fn apply(self, stored: &StoredSale, now: OffsetDateTime) -> Option<StoredSale> {
        match self {
            Self::Pause | Self::Resume => {
                let paused = self == Self::Pause;
                (stored.paused != paused).then(|| StoredSale {
                    paused,
                    ..stored.clone()
                })
            }
            Self::End => stored.spec.ended_at(now).map(|spec| StoredSale {
                spec,
                ..stored.clone()
            }),
        }
    }

    /// The change of the record that turns it into `next`.
    fn update(self, next: &StoredSale) -> Result<Update, StoreError> {
        match self {
            Self::Pause | Self::Resume => Ok(Update::default().paused(next.paused)),
            Self::End => Update::default().definition(&next.spec),
        }
    }

    /// The part of the record this switch is about, for the audit trail.
    fn audited(self, spec: &SaleSpec, paused: bool) -> Value {
        match self {
            Self::Pause | Self::Resume => json!({ "paused": paused }),
            Self::End => window(spec),
        }
    }
}

fn window(spec: &SaleSpec) -> Value {
    let format = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    json!({ "starts_at": format(spec.starts_at()), "ends_at": format(spec.ends_at()) })
}

impl SaleRegistry {
    /// Applies `switch` to sale `id` for `actor` at `now`, audits it, and returns the sale
    /// as this instance now serves it. A switch that changes nothing (pausing a paused
    /// sale, ending an ended one) bumps nothing and is audited with `before == after`.
    pub async fn switch(
        &self,
        id: &SaleId,
        switch: Switch,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<Arc<SaleRuntime>, SwitchError> {
        for _ in 0..ATTEMPTS {
            let stored = self
                .load(id)
                .await?
                .ok_or_else(|| SwitchError::NotFound(id.clone()))?;
            let before = switch.audited(&stored.spec, stored.paused);
            let installed = match switch.apply(&stored, now) {
                None => self.install(id, stored),
                Some(next) => match self.write_switch(id, switch, &stored, next).await? {
                    Some(rt) => rt,
                    None => continue,
                },
            };
            let after = switch.audited(&installed.sale.spec, installed.paused);
            let entry = AuditEntry::new(now, actor.clone(), switch.action(), before, after);
            self.audit(id, entry).await;
            return Ok(installed);
        }
        Err(SwitchError::Contended(id.clone()))
    }

    /// Writes `next` over `stored` if the record is still at `stored`'s epoch, and installs
    /// it; `None` if the record changed meanwhile (another change came first, or the sale
    /// was deleted: the caller reads it again to tell).
    async fn write_switch(
        &self,
        id: &SaleId,
        switch: Switch,
        stored: &StoredSale,
        next: StoredSale,
    ) -> Result<Option<Arc<SaleRuntime>>, StoreError> {
        let redis = &self.redis;
        let mut conn = redis.bulk().await?;
        let expect = Expect::Epoch(stored.epoch);
        let update = switch.update(&next)?;
        let epoch = sales::update(&mut conn, redis.keys(), id, expect, &update).await?;
        Ok(epoch.map(|epoch| self.install(id, StoredSale { epoch, ..next })))
    }
}
