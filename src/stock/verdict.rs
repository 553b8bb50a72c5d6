//! Deciding "sold out" (or "not enough left") without a false answer.
//!
//! Stock moves between shards (loans), so reading the shards one after another could miss
//! units travelling from an unread shard to an already-read one. Every unit is always counted
//! in some shard's `stock` or `lent`, and every move of units between shards bumps the `ver`
//! of the shards it touches (purchases only remove units and leave `ver` alone). Two collects
//! that return the same versions for every shard therefore saw no unit move between them, and
//! the second one's unsold total is an upper bound of the units unsold when it ends
//! (docs/DESIGN.md §4). Only such a consistent snapshot may say "sold out" or "not enough
//! left". Concurrent requests share one snapshot taken after they asked (single flight), so a
//! burst at sell-out costs Redis a few snapshots, not one per request.

use std::time::Instant;

use futures_util::future::try_join_all;
use tokio::sync::Mutex;

use super::{SaleRuntime, StockEngine};
use crate::store::shards::{self, ShardCounters};
use crate::store::{StoreError, sales};

/// A double-collect snapshot of every shard of a sale.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the first collect started.
    pub started: Instant,
    /// Whether both collects saw identical versions (no units moved between shards meanwhile).
    pub consistent: bool,
    /// Whether the sale's record changed meanwhile (an operator's top-up, reshard or pause):
    /// the runtime the snapshot followed is out of date, and its verdict is no fact.
    pub stale: bool,
    /// The second collect, shard by shard.
    pub shards: Vec<(u32, ShardCounters)>,
}

impl Snapshot {
    /// Units not yet sold: on shelves plus in flight between shards.
    pub fn unsold(&self) -> u64 {
        self.shards.iter().map(|(_, c)| c.stock + c.lent).sum()
    }

    /// The counters of `shard`, if the snapshot read it.
    pub fn shard(&self, shard: u32) -> Option<&ShardCounters> {
        self.shards
            .iter()
            .find(|(i, _)| *i == shard)
            .map(|(_, c)| c)
    }
}

/// The latest snapshot of a sale, shared by the requests waiting on it.
#[derive(Debug, Default)]
pub struct VerdictCache {
    latest: Mutex<Option<Snapshot>>,
}

impl StockEngine {
    /// A consistent-or-not snapshot taken entirely after `since`, reusing a concurrent
    /// request's snapshot when it qualifies.
    pub(crate) async fn snapshot_after(
        &self,
        rt: &SaleRuntime,
        since: Instant,
    ) -> Result<Snapshot, StoreError> {
        let mut latest = rt.verdicts.latest.lock().await;
        if let Some(snap) = latest.as_ref().filter(|s| s.started >= since) {
            return Ok(snap.clone());
        }
        let started = Instant::now();
        let first = self.collect(rt).await?;
        let second = self.collect(rt).await?;
        let consistent = first.iter().zip(&second).all(|(a, b)| a.1.ver == b.1.ver);
        // Read after the collects: an epoch unchanged by then means no operator change
        // (which alone adds units, or moves them to shards this runtime does not know)
        // happened before the snapshot ended.
        let epoch = sales::epoch(&mut self.conn.clone(), self.keys(), &rt.sale.id).await?;
        let snap = Snapshot {
            started,
            consistent,
            stale: epoch != Some(rt.epoch),
            shards: second,
        };
        for (shard, counters) in &snap.shards {
            rt.observe_shard(*shard, counters.stock);
        }
        rt.set_remaining(snap.unsold());
        *latest = Some(snap.clone());
        Ok(snap)
    }

    /// Reads the counters of every shard that may hold units (the layout's, and the
    /// draining one's), concurrently.
    pub(crate) async fn collect(
        &self,
        rt: &SaleRuntime,
    ) -> Result<Vec<(u32, ShardCounters)>, StoreError> {
        let reads = rt.stocked().into_iter().map(|shard| {
            let mut conn = self.conn.clone();
            let keys = rt.keys(shard);
            async move { Ok((shard, shards::read_counters(&mut conn, keys).await?)) }
        });
        try_join_all(reads).await
    }

    /// Reads the counters of every shard the sale ever used, earlier layouts included (the
    /// units they sold, the orders they still hold).
    pub(crate) async fn collect_all(
        &self,
        rt: &SaleRuntime,
    ) -> Result<Vec<ShardCounters>, StoreError> {
        let reads = rt.layout.every_shard().map(|shard| {
            let mut conn = self.conn.clone();
            let keys = self.keys().shard(&rt.sale.id, shard);
            async move { shards::read_counters(&mut conn, &keys).await }
        });
        try_join_all(reads).await
    }
}
