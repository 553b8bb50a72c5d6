//! Creating or replacing a sale's definition: one atomic switch of its record, or nothing.
//!
//! The new definition gets shards of its own (fresh indices placed over the Redis
//! Cluster's masters, reserved atomically, so two concurrent replacements never write the same keys), set up before
//! the switch; the switch (`store::sales::update`) applies only if the record is still the
//! one the checks read. So a sale is never half-written: instances see the old definition
//! with its shards or the new one with its shards, and of two concurrent PUTs exactly one
//! wins — the other's shards are deleted and it is refused.

use std::time::Duration;

use time::OffsetDateTime;

use super::SaleRegistry;
use crate::clock::unix_ms;
use crate::domain::{Layout, SaleId, SaleSpec, Window};
use crate::stock::shard::split_stock;
use crate::store::StoreError;
use crate::store::sales::{self, Expect, StoredSale, Update};

/// How long before its opening a sale counts as live for a replacement: an instance whose
/// clock runs ahead (NTP keeps them well within this) may already be selling it.
const OPENING_MARGIN: Duration = Duration::from_secs(2);

/// Whether a PUT created a sale or replaced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    Replaced,
    /// The stored definition was already identical.
    Unchanged,
}

/// Why a sale definition could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum PutSaleError {
    #[error(
        "sale {0} is live (or opens within seconds); end it and use a new sale id, or change it live (reshard, stock, pause, end)"
    )]
    Live(SaleId),
    #[error("sale {0} has sold units; its orders must stay as they are, use a new sale id")]
    HasOrders(SaleId),
    #[error("sale {0} changed while this definition was being stored; read it and try again")]
    Concurrent(SaleId),
    #[error("sale {0} has a change in progress ({1}); retry when it is finished")]
    Busy(SaleId, &'static str),
    #[error("sale {0} has used every shard index it may; use a new sale id")]
    Exhausted(SaleId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SaleRegistry {
    /// Creates or replaces a sale. A replacement is refused while the sale is live or about
    /// to open, while a change is in progress, and once it has sold units (their orders and
    /// limits must not be reset).
    pub async fn put(
        &self,
        id: &SaleId,
        spec: SaleSpec,
        now: OffsetDateTime,
    ) -> Result<PutOutcome, PutSaleError> {
        let existing = self.load(id).await?;
        if let Some(old) = &existing {
            if old.spec == spec {
                self.install(id, old.clone());
                return Ok(PutOutcome::Unchanged);
            }
            self.check_replaceable(id, old, now).await?;
        }
        let floor = existing.as_ref().map_or(0, |old| old.layout.next_base());
        let mut conn = self.redis.bulk().await?;
        let keys = self.redis.keys();
        let range = self
            .place_shards(&mut conn, id, spec.shards(), floor)
            .await?
            .ok_or_else(|| PutSaleError::Exhausted(id.clone()))?;
        sales::init_shards(
            &mut conn,
            keys,
            id,
            &range,
            &split_stock(spec.stock(), spec.shards()),
        )
        .await?;
        sales::index(&mut conn, keys, id).await?;
        let update = Update::default()
            .definition(&spec)?
            .layout(&Layout::settled(range.clone()))?
            .paused(false)
            .generation(u64::try_from(unix_ms(now)).unwrap_or(0));
        let expect = existing
            .as_ref()
            .map_or(Expect::Absent, |old| Expect::Epoch(old.epoch));
        if sales::update(&mut conn, keys, id, expect, &update)
            .await?
            .is_none()
        {
            sales::delete_shards(&mut conn, keys, id, range.indices()).await?;
            return Err(PutSaleError::Concurrent(id.clone()));
        }
        if let Some(old) = &existing {
            sales::delete_shards(&mut conn, keys, id, old.layout.every_shard()).await?;
        }
        self.reload(id).await?;
        Ok(if existing.is_some() {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        })
    }

    async fn check_replaceable(
        &self,
        id: &SaleId,
        old: &StoredSale,
        now: OffsetDateTime,
    ) -> Result<(), PutSaleError> {
        if let Some(op) = &old.op {
            return Err(PutSaleError::Busy(id.clone(), op.change.name()));
        }
        if old.spec.window(now + OPENING_MARGIN) != Window::Before
            && old.spec.window(now) != Window::After
        {
            return Err(PutSaleError::Live(id.clone()));
        }
        let counters = self.counters_of(id, old.layout.every_shard()).await?;
        if counters.iter().any(|c| c.sold > 0 || c.lent > 0) {
            return Err(PutSaleError::HasOrders(id.clone()));
        }
        Ok(())
    }
}
