//! Driving returns: the units of cancelled and expired orders go back to their buyer's home
//! shard (`return_units.lua`, at most once per order), then the rows are marked returned.
//!
//! The home is the buyer's in the sale's current layout: that is where their record is once
//! a reshard is done (it hands records over with their markers). While a reshard is moving
//! records and units, returns wait for it to finish: the draining shards are being emptied,
//! and units put back on them could be left behind. A sale that no longer exists has no
//! shelves to return to: its orders' returns are marked done with nothing given back.

use super::Lifecycle;
use crate::db::DueReturn;
use crate::domain::{OrderRecord, Settlement};
use crate::store::StoreError;
use crate::store::returns::{self, ReturnOutcome};

/// What one pass over due returns did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReturnPass {
    /// Orders whose units this pass put back.
    pub returned: u64,
    /// Orders found returned already (an earlier run crashed before marking the row).
    pub already: u64,
    /// Orders left for a later pass (a reshard in progress, a moved record).
    pub deferred: u64,
}

impl Lifecycle {
    /// Returns the units of `order`, just settled as `reason`, and marks its row; a failure
    /// is logged and left to the outbox (the row stays due once its lease runs out).
    pub(super) async fn return_now(&self, order: OrderRecord, reason: Settlement) {
        let due = DueReturn {
            order_id: order.order_id,
            user: order.user,
            quantity: order.quantity,
            reason,
        };
        if let Err(error) = self.drive(std::slice::from_ref(&due)).await {
            tracing::warn!(order = %due.order_id, %error, "returning units failed; the outbox retries");
        }
    }

    /// Gives back the units of `due` orders and marks the rows of those given back (now or
    /// by an earlier run).
    pub(super) async fn drive(
        &self,
        due: &[DueReturn],
    ) -> Result<ReturnPass, super::LifecycleError> {
        let mut pass = ReturnPass::default();
        let mut done = Vec::with_capacity(due.len());
        for order in due {
            match self.return_one(order).await? {
                Some(ReturnOutcome::Returned { .. }) => {
                    pass.returned += 1;
                    self.metrics.returned(
                        order.order_id.sale().as_str(),
                        order.reason.status().as_str(),
                    );
                    done.push(order.order_id.clone());
                }
                Some(ReturnOutcome::Already) => {
                    pass.already += 1;
                    done.push(order.order_id.clone());
                }
                None => {
                    pass.deferred += 1;
                }
                Some(outcome) => {
                    pass.deferred += 1;
                    tracing::warn!(order = %order.order_id, ?outcome, "the buyer's record does not hold this order; its return waits");
                }
            }
        }
        self.persister
            .db()
            .mark_returned(&done, self.clock.now_ms())
            .await?;
        Ok(pass)
    }

    /// Runs `return_units.lua` for `order` at its buyer's home; `None` when the return must
    /// wait (a reshard is moving the sale's records). A sale that is gone answers `Already`:
    /// there is nothing to give back to. A home that answers `moved` or `absent` may be the
    /// cached layout's and not the sale's any more (a reshard finished since): the sale is
    /// reloaded and, if its layout changed, the new home asked.
    async fn return_one(&self, order: &DueReturn) -> Result<Option<ReturnOutcome>, StoreError> {
        let sale = order.order_id.sale();
        let mut rt = self.registry.get(sale).await?;
        for _ in 0..2 {
            let Some(current) = rt else {
                return Ok(Some(ReturnOutcome::Already));
            };
            if current.layout.is_migrating() {
                return Ok(None);
            }
            let redis = self.persister.redis();
            let home = redis.keys().shard(sale, current.home_of(&order.user));
            let outcome = returns::return_units(
                &mut redis.conn(),
                &home,
                &order.user,
                &order.order_id,
                order.quantity,
            )
            .await?;
            if !matches!(outcome, ReturnOutcome::Moved | ReturnOutcome::Absent) {
                return Ok(Some(outcome));
            }
            rt = self.registry.reload(sale).await?;
            if rt
                .as_ref()
                .is_some_and(|fresh| fresh.layout == current.layout)
            {
                // The layout was current: `moved` means a reshard is starting (wait for
                // it), `absent` that the record is not where it must be (reconcile says so).
                return Ok((outcome == ReturnOutcome::Absent).then_some(outcome));
            }
        }
        Ok(None)
    }
}
