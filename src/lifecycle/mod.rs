//! The order lifecycle after the purchase: an order awaiting payment (`confirmed`) is paid,
//! cancelled by its buyer, or expired by the sweeper once its sale's payment window passed;
//! a cancelled or expired order gives its units back to the sale exactly once.
//!
//! The protocol (docs/DESIGN.md, "Order lifecycle"): the database's compare-and-set out of
//! `confirmed` decides which transition wins and, for cancel and expire, records the return
//! as due (the outbox); `return_units.lua` then puts the units back on the buyer's home shard
//! and marks the order in their record, which makes every later run a no-op; then the row is
//! marked returned. Whoever settles an order drives its return at once; [`Lifecycle::run_once`]
//! re-drives the returns a crash or an outage left undone, on every instance.

mod returns;
mod sweeper;

use crate::clock::Clock;
use crate::config::LifecycleSettings;
use crate::db::{DbError, Transition};
use crate::domain::{OrderId, OrderRecord, OrderStatus, Quantity, Settlement, UserId};
use crate::metrics::ReturnMetrics;
use crate::orders;
use crate::persist::{PersistError, Persister, dead_letters};
use crate::sales::SaleRegistry;
use crate::store::StoreError;

pub use sweeper::SweepReport;

/// Settles orders and returns their units. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    persister: Persister,
    registry: SaleRegistry,
    clock: Clock,
    settings: LifecycleSettings,
    metrics: ReturnMetrics,
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The order's buyer (any other buyer is told there is no such order).
    Buyer(&'a UserId),
    /// The shop's payment service, or an operator.
    Operator,
}

/// How a transition request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The order is in the state asked for (now, or since an earlier request).
    Settled(OrderStatus),
    /// No such order (or it is another buyer's).
    NotFound,
    /// The order's state forbids the transition (it is `current`).
    Forbidden { current: OrderStatus },
}

/// Why a transition could not be decided (nothing changed, or the change stands and its
/// return is left to the outbox).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("redis call failed")]
    Store(#[from] StoreError),
    #[error("order database call failed")]
    Db(#[from] DbError),
    #[error("the order could not be written to the database first")]
    Persist(#[from] PersistError),
}

impl Lifecycle {
    /// The lifecycle of the orders `persister` writes, for the sales of `registry`.
    pub fn new(
        persister: Persister,
        registry: SaleRegistry,
        clock: Clock,
        settings: LifecycleSettings,
    ) -> Self {
        Self {
            persister,
            registry,
            clock,
            settings,
            metrics: ReturnMetrics::noop(),
        }
    }

    /// Counts returned orders in `metrics`.
    pub fn with_metrics(mut self, metrics: ReturnMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// How often the sweeper runs.
    pub fn sweep_interval_ms(&self) -> u64 {
        self.settings.sweep_interval_ms
    }

    /// Moves order `id` to `to` for `actor`. Idempotent: asking again for the state the
    /// order is in answers it again. An order past its payment window expires instead of
    /// being paid or cancelled (the window is the rule; the sweeper only enforces it).
    pub async fn settle(
        &self,
        actor: Actor<'_>,
        id: &OrderId,
        to: Settlement,
    ) -> Result<SettleOutcome, LifecycleError> {
        let Some(order) = self.confirmed(actor, id).await? else {
            return Ok(SettleOutcome::NotFound);
        };
        if order.status == OrderStatus::Pending {
            return Ok(SettleOutcome::Forbidden {
                current: OrderStatus::Pending,
            });
        }
        let now_ms = self.clock.now_ms();
        let effective = if self.overdue(&order, now_ms).await? {
            Settlement::Expired
        } else {
            to
        };
        let lease_until = now_ms + self.settings.return_lease_ms as i64;
        let db = self.persister.db();
        let current = match db.settle(id, effective, now_ms, lease_until).await? {
            Transition::Done => {
                if effective.returns_units() {
                    self.return_now(order, effective).await;
                }
                effective.status()
            }
            Transition::Was(current) => current,
            Transition::Missing => return Ok(SettleOutcome::NotFound),
        };
        Ok(if current == to.status() {
            SettleOutcome::Settled(current)
        } else {
            SettleOutcome::Forbidden { current }
        })
    }

    /// The order as a database row for `actor` (`None`: no such order of theirs). An order
    /// still pending in its stream is written first, through the writer's idempotent insert,
    /// so that every transition is a compare-and-set on a row; a dead letter (the database
    /// refuses it) stays `pending`.
    async fn confirmed(
        &self,
        actor: Actor<'_>,
        id: &OrderId,
    ) -> Result<Option<OrderRecord>, LifecycleError> {
        let visible = |record: &OrderRecord| match actor {
            Actor::Buyer(user) => &record.user == user,
            Actor::Operator => true,
        };
        if let Some(pending) = orders::find_pending(self.persister.redis(), id).await? {
            if !visible(&pending) {
                return Ok(None);
            }
            self.persister.persist(&[pending.into()]).await?;
        }
        if let Some(row) = self.persister.db().find(id).await? {
            let bad_row = || DbError::BadRow(id.to_string());
            let record = OrderRecord {
                order_id: row.order_id,
                user: UserId::parse(&row.user_id).map_err(|_| bad_row())?,
                quantity: Quantity::new(row.quantity).map_err(|_| bad_row())?,
                created_ms: row.created_at_ms,
                status: row.status,
            };
            return Ok(visible(&record).then_some(record));
        }
        let letter = dead_letters::pending_order(&self.persister, id).await?;
        Ok(letter.filter(visible))
    }

    /// Whether `order`, awaiting payment, is past its sale's payment window at `now_ms`.
    async fn overdue(&self, order: &OrderRecord, now_ms: i64) -> Result<bool, StoreError> {
        if order.status != OrderStatus::Confirmed {
            return Ok(false);
        }
        let window = self
            .registry
            .get(order.order_id.sale())
            .await?
            .and_then(|rt| rt.sale.spec.payment_window_ms());
        Ok(window.is_some_and(|w| order.created_ms + w <= now_ms))
    }

    /// When `order` must be paid by (unix ms): `None` when its sale sets no payment window
    /// (or is gone). The deadline follows the sale's current `payment_window_s`.
    pub async fn pay_by_ms(&self, order: &OrderRecord) -> Result<Option<i64>, StoreError> {
        let rt = self.registry.get(order.order_id.sale()).await?;
        Ok(rt
            .and_then(|rt| rt.sale.spec.payment_window_ms())
            .map(|w| order.created_ms + w))
    }
}
