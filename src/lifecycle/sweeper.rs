//! The background half of the lifecycle, run by every instance on a timer: the expiry
//! sweeper (orders past their sale's payment window become `expired`, a batch per statement,
//! each order by exactly one instance: the statement's compare-and-set, with rows another
//! instance holds skipped) and the return outbox (returns a crash or an outage left undone,
//! claimed under a lease so that one instance drives each at a time).

use super::returns::ReturnPass;
use super::{Lifecycle, LifecycleError};
use crate::domain::SaleId;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders this sweep expired.
    pub expired: u64,
    /// Returns it drove (of the orders it expired and of those the outbox held).
    pub returns: ReturnPass,
}

impl Lifecycle {
    /// One sweep: expires every order past its payment window, then re-drives the returns
    /// whose lease ran out. A sale that fails is logged and skipped.
    pub async fn run_once(&self) -> SweepReport {
        let mut report = SweepReport::default();
        for rt in self.registry.all_cached() {
            let Some(window_ms) = rt.sale.spec.payment_window_ms() else {
                continue;
            };
            if let Err(error) = self.expire_sale(&rt.sale.id, window_ms, &mut report).await {
                tracing::warn!(sale = %rt.sale.id, %error, "expiring unpaid orders failed; retrying");
            }
        }
        if let Err(error) = self.drive_outbox(&mut report).await {
            tracing::warn!(%error, "re-driving unit returns failed; retrying");
        }
        report
    }

    async fn expire_sale(
        &self,
        sale: &SaleId,
        window_ms: i64,
        report: &mut SweepReport,
    ) -> Result<(), LifecycleError> {
        let batch = self.settings.batch.max(1);
        loop {
            let now_ms = self.clock.now_ms();
            let lease_until = now_ms + self.settings.return_lease_ms as i64;
            let expired = self
                .persister
                .db()
                .expire_due(sale, now_ms - window_ms, (now_ms, lease_until), batch)
                .await?;
            report.expired += expired.len() as u64;
            add(&mut report.returns, self.drive(&expired).await?);
            if expired.len() < batch as usize {
                return Ok(());
            }
        }
    }

    async fn drive_outbox(&self, report: &mut SweepReport) -> Result<(), LifecycleError> {
        let batch = self.settings.batch.max(1);
        loop {
            let now_ms = self.clock.now_ms();
            let lease_until = now_ms + self.settings.return_lease_ms as i64;
            let due = self
                .persister
                .db()
                .claim_returns(now_ms, lease_until, batch)
                .await?;
            add(&mut report.returns, self.drive(&due).await?);
            if due.len() < batch as usize {
                return Ok(());
            }
        }
    }
}

fn add(total: &mut ReturnPass, pass: ReturnPass) {
    total.returned += pass.returned;
    total.already += pass.already;
    total.deferred += pass.deferred;
}
