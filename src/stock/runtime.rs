//! The gateway's local, per-sale view: the definition plus hints learnt from Redis replies
//! (which shards are empty, whether the sale is sold out, roughly how much remains).
//!
//! Hints only ever save round trips; every decision that could refuse a buyer is either
//! taken by a Lua script or backed by a consistent snapshot (see `stock::verdict`). A new
//! sale epoch (any operator change) replaces the runtime and with it every hint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::holders::Holders;
use super::verdict::VerdictCache;
use crate::domain::{Layout, RejectionStats, Sale, UserId};
use crate::metrics::PurchaseAnswers;
use crate::store::{Keys, ShardKeys};

/// What a sale's record says besides its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    pub paused: bool,
    pub epoch: u64,
    pub generation: u64,
    pub layout: Layout,
}

/// A sale's counters on this instance, shared by every runtime of the same sale id (a new
/// epoch keeps counting where the last left off).
#[derive(Debug, Clone, Default)]
pub struct SaleCounts {
    /// Refusals by reason (the admin view's `rejected_by_reason`).
    pub stats: Arc<RejectionStats>,
    /// Purchase answers by outcome (`flashgate_purchases_total`).
    pub answers: Arc<PurchaseAnswers>,
}

/// A sale as this gateway instance sees it.
#[derive(Debug)]
pub struct SaleRuntime {
    /// Id and definition.
    pub sale: Sale,
    /// The operator's kill switch.
    pub paused: bool,
    /// Bumped by every operator change; a different epoch means a fresh runtime.
    pub epoch: u64,
    /// Changed only when the definition is replaced; purchase tokens are bound to it.
    pub generation: u64,
    /// The shards the sale sells from.
    pub layout: Layout,
    /// Refusal counters; shared by every runtime of the same sale id.
    pub stats: Arc<RejectionStats>,
    /// Purchase answers by outcome; shared by every runtime of the same sale id.
    pub answers: Arc<PurchaseAnswers>,
    /// The keys of shards `first..layout.current.end()`: both sets of the layout (and the
    /// indices a placement skipped between them, which are never asked for).
    first: u32,
    shard_keys: Box<[Arc<ShardKeys>]>,
    empty: Box<[AtomicBool]>,
    sold_out: AtomicBool,
    holders: Arc<Holders>,
    remaining: AtomicU64,
    pub(crate) verdicts: VerdictCache,
}

impl SaleRuntime {
    /// A runtime with no hints yet.
    pub fn new(sale: Sale, state: RuntimeState, counts: SaleCounts, keys: &Keys) -> Self {
        let layout = state.layout;
        let first = layout.draining.as_ref().map_or(layout.current.base(), |d| {
            d.base().min(layout.current.base())
        });
        let shard_keys: Box<[_]> = (first..layout.current.end())
            .map(|i| Arc::new(keys.shard(&sale.id, i)))
            .collect();
        let remaining = sale.spec.stock();
        Self {
            sale,
            paused: state.paused,
            epoch: state.epoch,
            generation: state.generation,
            layout,
            stats: counts.stats,
            answers: counts.answers,
            first,
            empty: shard_keys.iter().map(|_| AtomicBool::new(false)).collect(),
            shard_keys,
            sold_out: AtomicBool::new(false),
            holders: Arc::default(),
            remaining: AtomicU64::new(remaining),
            verdicts: VerdictCache::default(),
        }
    }

    /// `user`'s home shard.
    pub fn home_of(&self, user: &UserId) -> u32 {
        self.layout.current.home_of(user)
    }

    /// The shards that may hold units: the current layout's, and the draining one's.
    pub fn stocked(&self) -> Vec<u32> {
        self.layout.stocked().collect()
    }

    /// The keys of `shard`, one of [`Self::stocked`] (built once per runtime: the purchase
    /// path needs them every time).
    pub fn keys(&self, shard: u32) -> &Arc<ShardKeys> {
        self.slot(shard)
            .and_then(|i| self.shard_keys.get(i))
            .expect("the keys of a shard of the sale's layout")
    }

    fn slot(&self, shard: u32) -> Option<usize> {
        Some(shard.checked_sub(self.first)? as usize)
    }

    fn empty_flag(&self, shard: u32) -> Option<&AtomicBool> {
        self.empty.get(self.slot(shard)?)
    }

    /// Records what a reply said about a shard's stock.
    pub fn observe_shard(&self, shard: u32, stock: u64) {
        if let Some(flag) = self.empty_flag(shard) {
            flag.store(stock == 0, Ordering::Relaxed);
        }
    }

    /// Whether `shard` was last seen empty.
    pub fn shard_seems_empty(&self, shard: u32) -> bool {
        self.empty_flag(shard)
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Marks the sale sold out, as established by a consistent snapshot. Returns the set of
    /// buyers who hold units, to be loaded, if this call set the mark (so one load per
    /// runtime); until it is loaded, every purchase still asks Redis (only a holder can
    /// have an earlier order to replay, and who holds is not known yet).
    pub fn mark_sold_out(&self) -> Option<Arc<Holders>> {
        self.remaining.store(0, Ordering::Relaxed);
        let first = !self.sold_out.swap(true, Ordering::AcqRel);
        first.then(|| self.holders.clone())
    }

    /// Whether the sale is known to be sold out.
    pub fn is_sold_out(&self) -> bool {
        self.sold_out.load(Ordering::Acquire)
    }

    /// Whether a purchase by `user` can be answered "sold out" without asking Redis: the
    /// sale is sold out and `user` is known to hold nothing, so there is no earlier order
    /// to replay.
    pub fn sold_out_for(&self, user: &UserId) -> bool {
        self.is_sold_out() && self.holders.excludes(user)
    }

    /// Whether the holders of a sold-out sale are loaded (so non-holders are answered from
    /// memory).
    pub fn holders_known(&self) -> bool {
        self.holders.is_known()
    }

    /// Units believed to remain (may lag by a refresh interval; never negative).
    pub fn remaining(&self) -> u64 {
        if self.is_sold_out() {
            0
        } else {
            self.remaining.load(Ordering::Relaxed)
        }
    }

    /// Updates the estimate of remaining units.
    pub fn set_remaining(&self, units: u64) {
        self.remaining.store(units, Ordering::Relaxed);
    }
}
