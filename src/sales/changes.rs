//! Operators' changes to a live sale that take several steps: a live reshard and a change
//! of stock (top-up or reduction).
//!
//! Each is recorded in the sale's record (`op`) in the same atomic switch that makes it
//! visible to every instance, then driven step by step by the instance that holds the
//! sale's change lock. Every step is idempotent (keyed by the change's id, or a no-op when
//! repeated), so when the driver dies — SIGKILL at any point — any instance's background
//! worker takes the lock once it lapses and runs the same steps again from the start, and
//! the change finishes exactly as if nothing had happened. The last step is one more
//! atomic switch that clears `op` (and, for a reshard, drops the draining layout).

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use super::SaleRegistry;
use crate::clock::unix_ms;
use crate::domain::sale::{MAX_SHARDS, MAX_STOCK};
use crate::domain::{
    AuditAction, AuditEntry, Change, Layout, Operation, Operator, SaleDefinition, SaleId, SaleSpec,
    ShardSet, Window,
};
use crate::stock::shard::split_stock;
use crate::store::StoreError;
use crate::store::sales::{self, Expect, StoredSale, Update};

/// How long the driver's lock lasts without renewal: after a crash, another instance
/// resumes the change this long after the last step that renewed it.
pub(super) const LOCK_HOLD_MS: u64 = 5_000;
/// How often a request whose change another instance drives looks whether it finished.
const FINISH_POLL: Duration = Duration::from_millis(20);
/// Attempts at a switch of the record when concurrent changes (a pause) keep moving its
/// epoch.
const SWITCH_ATTEMPTS: usize = 5;

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no sale {0}")]
    NotFound(SaleId),
    #[error("sale {0} has a change in progress ({1}); retry when it is finished")]
    Busy(SaleId, &'static str),
    #[error("sale {0} has ended")]
    Ended(SaleId),
    #[error("{0}")]
    Invalid(String),
    #[error("sale {0} kept changing while this change was being recorded; retry")]
    Concurrent(SaleId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a change stands when its request is answered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ChangeReport {
    /// The change's id (`None`: nothing to change).
    pub id: Option<String>,
    /// `done`, or `in_progress` (it finishes in the background).
    pub state: &'static str,
    /// Units added (negative: removed) by a change of stock, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<i64>,
}

impl ChangeReport {
    fn nothing() -> Self {
        Self {
            id: None,
            state: "done",
            applied: Some(0),
        }
    }
}

impl SaleRegistry {
    /// Moves the sale's buyers and units to `shards` new shards while it sells.
    pub async fn reshard(
        &self,
        id: &SaleId,
        shards: u32,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<ChangeReport, ChangeError> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(ChangeError::Invalid(format!(
                "shards must be 1..={MAX_SHARDS}"
            )));
        }
        let stored = self.idle(id).await?;
        if stored.layout.current.count() == shards {
            return Ok(ChangeReport::nothing());
        }
        self.reshard_from(id, stored, shards, actor, now).await
    }

    /// Moves the buyers and units of `stored`'s layout to `shards` new shards, placed by
    /// the cluster's slot map of this moment (the count may be the same: a rebalance).
    pub(super) async fn reshard_from(
        &self,
        id: &SaleId,
        stored: StoredSale,
        shards: u32,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<ChangeReport, ChangeError> {
        let mut conn = self.redis.bulk().await?;
        let keys = self.redis.keys();
        let next = stored.layout.next_base();
        let to = self
            .place_shards(&mut conn, id, shards, next)
            .await?
            .ok_or_else(|| {
                ChangeError::Invalid(format!("sale {id} has used every shard index it may"))
            })?;
        sales::init_shards(&mut conn, keys, id, &to, &vec![0; shards as usize]).await?;
        let from = stored.layout.current.clone();
        let change = Change::Reshard {
            from: from.clone(),
            to: to.clone(),
        };
        let op = Operation::new(change, actor.as_str(), unix_ms(now));
        let spec = respecified(&stored.spec, |def| def.shards = shards)?;
        let layout = Layout {
            current: to.clone(),
            draining: Some(from.clone()),
        };
        let update = Update::default()
            .definition(&spec)?
            .layout(&layout)?
            .begin(&op)?;
        let expect = Expect::Epoch(stored.epoch);
        if sales::update(&mut conn, keys, id, expect, &update)
            .await?
            .is_none()
        {
            sales::delete_shards(&mut conn, keys, id, to.indices()).await?;
            return Err(ChangeError::Concurrent(id.clone()));
        }
        self.reload(id).await?;
        let report = self.drive_and_answer(id, op).await?;
        let before = json!({ "shards": from.count() });
        let after = json!({ "shards": shards, "change": &report });
        let entry = AuditEntry::new(now, actor.clone(), AuditAction::Resharded, before, after);
        self.audit(id, entry).await;
        Ok(report)
    }

    /// Adds `add` units spread over the sale's shards, or removes up to `-add` units that
    /// are on the shelves (never units sold or in flight between shards).
    pub async fn change_stock(
        &self,
        id: &SaleId,
        add: i64,
        actor: &Operator,
        now: OffsetDateTime,
    ) -> Result<ChangeReport, ChangeError> {
        if add == 0 {
            return Ok(ChangeReport::nothing());
        }
        let stored = self.idle(id).await?;
        if stored.spec.window(now) == Window::After {
            return Err(ChangeError::Ended(id.clone()));
        }
        let room = MAX_STOCK - stored.spec.stock();
        if add > 0 && add.unsigned_abs() > room {
            return Err(ChangeError::Invalid(format!(
                "stock must stay at most {MAX_STOCK} units"
            )));
        }
        let over = stored.layout.current.clone();
        let op = Operation::new(Change::Stock { add, over }, actor.as_str(), unix_ms(now));
        let update = Update::default().begin(&op)?;
        let mut conn = self.redis.bulk().await?;
        let expect = Expect::Epoch(stored.epoch);
        if sales::update(&mut conn, self.redis.keys(), id, expect, &update)
            .await?
            .is_none()
        {
            return Err(ChangeError::Concurrent(id.clone()));
        }
        self.reload(id).await?;
        let report = self.drive_and_answer(id, op).await?;
        let before = json!({ "stock": stored.spec.stock() });
        let after = json!({ "add": add, "change": &report });
        let entry = AuditEntry::new(now, actor.clone(), AuditAction::StockChanged, before, after);
        self.audit(id, entry).await;
        Ok(report)
    }

    /// The sale's record, if it exists and no change is in progress.
    async fn idle(&self, id: &SaleId) -> Result<StoredSale, ChangeError> {
        let stored = self
            .load(id)
            .await?
            .ok_or_else(|| ChangeError::NotFound(id.clone()))?;
        if let Some(op) = &stored.op {
            return Err(ChangeError::Busy(id.clone(), op.change.name()));
        }
        Ok(stored)
    }

    /// Drives `op` in a task of its own (a client that hangs up does not stop it) and
    /// answers once it is done, or after [`SaleRegistry::answer_changes_within`] that it goes
    /// on.
    async fn drive_and_answer(
        &self,
        id: &SaleId,
        op: Operation,
    ) -> Result<ChangeReport, ChangeError> {
        let registry = self.clone();
        let (sale, change) = (id.clone(), op.clone());
        let task = tokio::spawn(async move { registry.drive(&sale, &change).await });
        let in_progress = ChangeReport {
            id: Some(op.id.clone()),
            state: "in_progress",
            applied: None,
        };
        let deadline = tokio::time::Instant::now() + self.answer_within;
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(Some(applied)))) => Ok(ChangeReport {
                id: Some(op.id),
                state: "done",
                applied: matches!(op.change, Change::Stock { .. }).then_some(applied),
            }),
            // Another instance holds the lock: it drives the change; wait for its end.
            Ok(Ok(Ok(None))) => match self.finished_by_another(id, &op, deadline).await? {
                Some(applied) => Ok(ChangeReport {
                    id: Some(op.id),
                    state: "done",
                    applied,
                }),
                None => Ok(in_progress),
            },
            Err(_) => Ok(in_progress),
            Ok(Ok(Err(error))) => Err(error.into()),
            Ok(Err(panicked)) => Err(ChangeError::Invalid(format!(
                "the change stopped: {panicked}; it resumes in the background"
            ))),
        }
    }

    /// Waits (until `deadline`) for another instance to finish `op`; then the units it
    /// applied, for a change of stock (read from the recorded total).
    async fn finished_by_another(
        &self,
        id: &SaleId,
        op: &Operation,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Option<i64>>, StoreError> {
        while tokio::time::Instant::now() < deadline {
            let stored = self.load(id).await?;
            if stored.as_ref().and_then(|s| s.op.as_ref()).map(|o| &o.id) != Some(&op.id) {
                // Stock changes report what they did from the new total only when this
                // instance drove them; here the total is known but not the change's share.
                return Ok(Some(None));
            }
            tokio::time::sleep(FINISH_POLL).await;
        }
        Ok(None)
    }

    /// Runs `op` to its end if this instance gets the sale's change lock: its steps, then
    /// the switch that finishes it. `Ok(None)` if another instance holds the lock; else the
    /// units a change of stock added (negative: removed), 0 for a reshard.
    pub(super) async fn drive(
        &self,
        id: &SaleId,
        op: &Operation,
    ) -> Result<Option<i64>, StoreError> {
        let holder = uuid::Uuid::now_v7().simple().to_string();
        let keys = self.redis.keys();
        let mut conn = self.redis.bulk().await?;
        if !sales::lock_change(&mut conn, keys, id, &holder, LOCK_HOLD_MS).await? {
            return Ok(None);
        }
        drop(conn);
        let lease = Lease {
            registry: self,
            sale: id,
            holder: &holder,
        };
        let applied = match &op.change {
            Change::Reshard { from, to } => {
                self.run_reshard(id, from, to, &lease).await.map(|()| 0)
            }
            Change::Stock { add, over } => self.run_stock_change(id, &op.id, *add, over).await,
        }?;
        self.finish(id, op, applied).await?;
        let mut conn = self.redis.bulk().await?;
        sales::unlock_change(&mut conn, keys, id, &holder).await?;
        Ok(Some(applied))
    }

    /// The last step: one switch that clears the change (and, for a reshard, settles the
    /// layout; for a change of stock, records the new total), if it is still in progress.
    async fn finish(&self, id: &SaleId, op: &Operation, applied: i64) -> Result<(), StoreError> {
        let keys = self.redis.keys();
        for _ in 0..SWITCH_ATTEMPTS {
            let Some(stored) = self.load(id).await? else {
                return Ok(());
            };
            if stored.op.as_ref().map(|o| &o.id) != Some(&op.id) {
                return Ok(());
            }
            let update = match &op.change {
                Change::Reshard { to, .. } => {
                    Update::default().layout(&Layout::settled(to.clone()))?
                }
                Change::Stock { .. } => {
                    let total = stored.spec.stock().saturating_add_signed(applied);
                    let spec = respecified(&stored.spec, |def| def.stock = total).map_err(|e| {
                        StoreError::unexpected("stock after a change", &e.to_string())
                    })?;
                    Update::default().definition(&spec)?
                }
            }
            .finish();
            let mut conn = self.redis.bulk().await?;
            let expect = Expect::Epoch(stored.epoch);
            if sales::update(&mut conn, keys, id, expect, &update)
                .await?
                .is_some()
            {
                if let Change::Reshard { from, .. } = &op.change {
                    self.forget_handed_over(id, from).await?;
                }
                self.reload(id).await?;
                return Ok(());
            }
        }
        Err(StoreError::unexpected(
            "sale change",
            &"its record kept changing",
        ))
    }

    /// Finishes the changes whose driver died (every instance runs this in the background;
    /// the lock lets one of them drive each change). A change younger than the lock's hold
    /// is left to the instance that recorded it. Returns how many it finished.
    pub async fn resume_changes(&self, now_ms: i64) -> Result<usize, StoreError> {
        let mut finished = 0;
        for rt in self.all_cached() {
            let Some(stored) = self.load(&rt.sale.id).await? else {
                continue;
            };
            let hold = i64::try_from(LOCK_HOLD_MS).unwrap_or(i64::MAX);
            if let Some(op) = stored.op.filter(|op| op.started_ms + hold < now_ms) {
                tracing::info!(sale = %rt.sale.id, change = op.change.name(), id = %op.id, "resuming an unfinished change");
                if self.drive(&rt.sale.id, &op).await?.is_some() {
                    finished += 1;
                }
            }
        }
        Ok(finished)
    }
}

/// The driver's hold on a sale's change lock, renewed between steps.
pub(super) struct Lease<'a> {
    registry: &'a SaleRegistry,
    sale: &'a SaleId,
    holder: &'a str,
}

impl Lease<'_> {
    /// Extends the lock; an error if another instance took it over meanwhile (this one
    /// stalled past [`LOCK_HOLD_MS`]): it drives the change now.
    pub(super) async fn renew(&self) -> Result<(), StoreError> {
        let redis = &self.registry.redis;
        let mut conn = redis.bulk().await?;
        if sales::lock_change(
            &mut conn,
            redis.keys(),
            self.sale,
            self.holder,
            LOCK_HOLD_MS,
        )
        .await?
        {
            Ok(())
        } else {
            Err(StoreError::unexpected(
                "sale change lock",
                &"taken over by another instance",
            ))
        }
    }
}

/// `spec` with one field of its definition changed, validated again.
fn respecified(
    spec: &SaleSpec,
    change: impl FnOnce(&mut SaleDefinition),
) -> Result<SaleSpec, ChangeError> {
    let mut def = spec.definition().clone();
    change(&mut def);
    SaleSpec::try_from(def).map_err(|e| ChangeError::Invalid(e.to_string()))
}

/// The units `add` puts on each shard of `over` (a top-up), evenly.
pub(super) fn top_up_split(add: u64, over: &ShardSet) -> impl Iterator<Item = (u32, u64)> {
    over.indices().zip(split_stock(add, over.count()))
}
