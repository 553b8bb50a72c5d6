//! The sale registry: sale definitions live in Redis (shared by every gateway instance);
//! each instance caches them with their hints and refreshes the cache in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{Sale, SaleId};
use crate::stock::{RuntimeState, SaleCounts, SaleRuntime, StockEngine};
use crate::store::sales::{self, StoredSale};
use crate::store::shards::{self, ShardCounters};
use crate::store::{Redis, StoreError};

/// A sale a refresh could not read, and why.
#[derive(Debug)]
pub struct SkippedSale {
    pub sale: SaleId,
    pub error: StoreError,
}

/// Cache of sales, backed by Redis. Cheap to clone.
#[derive(Clone)]
pub struct SaleRegistry {
    pub(super) redis: Redis,
    engine: StockEngine,
    cache: Arc<RwLock<HashMap<SaleId, Arc<SaleRuntime>>>>,
    counts: Arc<RwLock<HashMap<SaleId, SaleCounts>>>,
    /// How long an operator's request waits for its change (a reshard, a change of stock)
    /// to finish before answering that it goes on in the background.
    pub(super) answer_within: Duration,
}

impl SaleRegistry {
    /// An empty cache of the sales in `redis`, refreshing remaining units through `engine`.
    /// Operators' changes and the background refresh use the bulk pool; a cache miss on
    /// the purchase path reads on the multiplexed connection.
    pub fn new(redis: Redis, engine: StockEngine) -> Self {
        Self {
            redis,
            engine,
            cache: Arc::default(),
            counts: Arc::default(),
            answer_within: Duration::from_secs(10),
        }
    }

    /// Answers an operator's change after at most `wait` (keep it under the HTTP request
    /// timeout: the change goes on in the background either way).
    pub fn answer_changes_within(mut self, wait: Duration) -> Self {
        self.answer_within = wait;
        self
    }

    /// Whether the sales live on a Redis Cluster (their shards are then placed by master).
    pub fn is_cluster(&self) -> bool {
        self.redis.is_cluster()
    }

    /// The stock engine that takes snapshots of the sales' shards.
    pub fn engine(&self) -> &StockEngine {
        &self.engine
    }

    /// The sale, from the cache or else from Redis; `None` if no such sale exists.
    pub async fn get(&self, id: &SaleId) -> Result<Option<Arc<SaleRuntime>>, StoreError> {
        if let Some(rt) = self.cached(id) {
            return Ok(Some(rt));
        }
        let Some(stored) = self.load(id).await? else {
            return Ok(None);
        };
        Ok(Some(self.install(id, stored)))
    }

    /// The cached sale, without asking Redis.
    pub fn cached(&self, id: &SaleId) -> Option<Arc<SaleRuntime>> {
        self.read_cache().get(id).cloned()
    }

    /// Every cached sale.
    pub fn all_cached(&self) -> Vec<Arc<SaleRuntime>> {
        self.read_cache().values().cloned().collect()
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SaleId, Arc<SaleRuntime>>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn counts_for(&self, id: &SaleId) -> SaleCounts {
        let mut counts = self.counts.write().unwrap_or_else(|e| e.into_inner());
        counts.entry(id.clone()).or_default().clone()
    }

    /// The sale as Redis has it now, replacing the cached runtime if its record changed
    /// (a purchase found its view out of date); `None` if the sale no longer exists.
    pub async fn reload(&self, id: &SaleId) -> Result<Option<Arc<SaleRuntime>>, StoreError> {
        let Some(stored) = self.load(id).await? else {
            self.forget(id);
            return Ok(None);
        };
        Ok(Some(self.install(id, stored)))
    }

    /// Drops a sale from the cache (it was deleted): the background workers stop visiting it.
    pub(super) fn forget(&self, id: &SaleId) {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.remove(id);
    }

    /// Puts a stored sale into the cache unless the cache already has its epoch.
    pub(super) fn install(&self, id: &SaleId, stored: StoredSale) -> Arc<SaleRuntime> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = cache.get(id).filter(|rt| rt.epoch == stored.epoch) {
            return rt.clone();
        }
        let sale = Sale {
            id: id.clone(),
            spec: stored.spec,
        };
        let state = RuntimeState {
            paused: stored.paused,
            epoch: stored.epoch,
            generation: stored.generation,
            layout: stored.layout,
        };
        let rt = Arc::new(SaleRuntime::new(
            sale,
            state,
            self.counts_for(id),
            self.redis.keys(),
        ));
        cache.insert(id.clone(), rt.clone());
        rt
    }

    pub(super) async fn load(&self, id: &SaleId) -> Result<Option<StoredSale>, StoreError> {
        sales::load(&mut self.redis.conn(), self.redis.keys(), id).await
    }

    /// The counters of the shards `shards` of sale `id`, read on a bulk connection.
    pub(super) async fn counters_of(
        &self,
        id: &SaleId,
        shards: impl ExactSizeIterator<Item = u32>,
    ) -> Result<Vec<ShardCounters>, StoreError> {
        let mut conn = self.redis.bulk().await?;
        let mut all = Vec::with_capacity(shards.len());
        for shard in shards {
            let keys = self.redis.keys().shard(id, shard);
            all.push(shards::read_counters(&mut conn, &keys).await?);
        }
        Ok(all)
    }

    /// Every sale id stored in Redis.
    pub async fn ids(&self) -> Result<Vec<SaleId>, StoreError> {
        sales::ids(&mut self.redis.bulk().await?, self.redis.keys()).await
    }

    /// Re-reads every sale whose epoch changed and refreshes every sale's remaining units.
    /// A sale that fails is skipped, never blocking the sales after it: the failures come
    /// back, sale by sale, for the caller to log. `Err` only when the list of sales itself
    /// could not be read.
    pub async fn refresh(&self) -> Result<Vec<SkippedSale>, StoreError> {
        let mut skipped = Vec::new();
        let ids = self.ids().await?;
        let gone: Vec<SaleId> = self
            .read_cache()
            .keys()
            .filter(|id| ids.binary_search(id).is_err())
            .cloned()
            .collect();
        for id in &gone {
            self.forget(id);
        }
        for id in ids {
            if let Err(error) = self.refresh_one(&id).await {
                skipped.push(SkippedSale { sale: id, error });
            }
        }
        Ok(skipped)
    }

    async fn refresh_one(&self, id: &SaleId) -> Result<(), StoreError> {
        let epoch = sales::epoch(&mut self.redis.bulk().await?, self.redis.keys(), id).await?;
        let current = self.cached(id).map(|rt| rt.epoch);
        if epoch.is_some() && epoch != current {
            match self.load(id).await? {
                Some(stored) => {
                    self.install(id, stored);
                }
                None => self.forget(id),
            }
        }
        if let Some(rt) = self.cached(id) {
            let counters = self.engine.collect(&rt).await?;
            let unsold = counters.iter().map(|(_, c)| c.stock + c.lent).sum();
            if rt.is_sold_out() && unsold > 0 {
                // Units came back (cancelled or expired orders): the sale sells again, so
                // every hint of the sold-out runtime goes (its mark, empty shards, holders).
                self.renew_hints(&rt).set_remaining(unsold);
            } else {
                rt.set_remaining(unsold);
            }
        }
        Ok(())
    }

    /// Replaces `rt` in the cache with a runtime of the same record and no hints, unless the
    /// cache moved on to another runtime meanwhile.
    fn renew_hints(&self, rt: &Arc<SaleRuntime>) -> Arc<SaleRuntime> {
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        let id = &rt.sale.id;
        match cache.get(id) {
            Some(cached) if Arc::ptr_eq(cached, rt) => {
                let state = RuntimeState {
                    paused: rt.paused,
                    epoch: rt.epoch,
                    generation: rt.generation,
                    layout: rt.layout.clone(),
                };
                let fresh = Arc::new(SaleRuntime::new(
                    rt.sale.clone(),
                    state,
                    self.counts_for(id),
                    self.redis.keys(),
                ));
                cache.insert(id.clone(), fresh.clone());
                fresh
            }
            Some(cached) => cached.clone(),
            None => rt.clone(),
        }
    }
}
