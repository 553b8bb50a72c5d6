//! The sale registry: sale definitions live in Redis (shared by every gateway instance);
//! each instance caches them with their hints and refreshes the cache in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::domain::{RejectionStats, Sale, SaleId, SaleSpec, Window};
use crate::stock::shard::split_stock;
use crate::stock::{SaleRuntime, StockEngine};
use crate::store::sales::{self, StoredSale};
use crate::store::shards::{self, ShardCounters};
use crate::store::{BulkConn, Redis, StoreError};

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
    #[error("sale {0} is live; pause it and wait for it to end, or create a new sale id")]
    Live(SaleId),
    #[error("sale {0} has sold units; its orders must stay as they are, use a new sale id")]
    HasOrders(SaleId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sale a refresh could not read, and why.
#[derive(Debug)]
pub struct SkippedSale {
    pub sale: SaleId,
    pub error: StoreError,
}

/// Cache of sales, backed by Redis. Cheap to clone.
#[derive(Clone)]
pub struct SaleRegistry {
    redis: Redis,
    engine: StockEngine,
    cache: Arc<RwLock<HashMap<SaleId, Arc<SaleRuntime>>>>,
    stats: Arc<RwLock<HashMap<SaleId, Arc<RejectionStats>>>>,
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
            stats: Arc::default(),
        }
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

    fn stats_for(&self, id: &SaleId) -> Arc<RejectionStats> {
        let mut stats = self.stats.write().unwrap_or_else(|e| e.into_inner());
        stats.entry(id.clone()).or_default().clone()
    }

    /// Redis, for the operator modules beside this one.
    pub(super) fn redis(&self) -> &Redis {
        &self.redis
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
        let rt = Arc::new(SaleRuntime::new(
            sale,
            stored.paused,
            stored.epoch,
            self.stats_for(id),
            self.redis.keys(),
        ));
        cache.insert(id.clone(), rt.clone());
        rt
    }

    pub(super) async fn load(&self, id: &SaleId) -> Result<Option<StoredSale>, StoreError> {
        sales::load(&mut self.redis.conn(), self.redis.keys(), id).await
    }

    /// Creates or replaces a sale. Refused while the sale is in its window, or once it has
    /// sold units (their orders and limits must not be reset).
    pub async fn put(
        &self,
        id: &SaleId,
        spec: SaleSpec,
        now: OffsetDateTime,
    ) -> Result<PutOutcome, PutSaleError> {
        let existing = self.load(id).await?;
        let replacing = existing.is_some();
        let mut conn = self.redis.bulk().await?;
        let keys = self.redis.keys();
        if let Some(old) = existing {
            if old.spec == spec {
                self.install(id, old);
                return Ok(PutOutcome::Unchanged);
            }
            if old.spec.window(now) == Window::Open {
                return Err(PutSaleError::Live(id.clone()));
            }
            let counters = self.counters(&mut conn, id, old.spec.shards()).await?;
            if counters.iter().any(|c| c.sold > 0 || c.lent > 0) {
                return Err(PutSaleError::HasOrders(id.clone()));
            }
            sales::delete_shards(&mut conn, keys, id, old.spec.shards()).await?;
        }
        let units = split_stock(spec.stock(), spec.shards());
        sales::init_shards(&mut conn, keys, id, &units).await?;
        let epoch = sales::write_meta(&mut conn, keys, id, &spec).await?;
        self.install(
            id,
            StoredSale {
                spec,
                paused: false,
                epoch,
            },
        );
        Ok(if replacing {
            PutOutcome::Replaced
        } else {
            PutOutcome::Created
        })
    }

    async fn counters(
        &self,
        conn: &mut BulkConn,
        id: &SaleId,
        count: u32,
    ) -> Result<Vec<ShardCounters>, StoreError> {
        let mut all = Vec::with_capacity(count as usize);
        for shard in 0..count {
            all.push(shards::read_counters(conn, &self.redis.keys().shard(id, shard)).await?);
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
        for id in self.ids().await? {
            if let Err(error) = self.refresh_one(&id).await {
                skipped.push(SkippedSale { sale: id, error });
            }
        }
        Ok(skipped)
    }

    async fn refresh_one(&self, id: &SaleId) -> Result<(), StoreError> {
        let epoch = sales::epoch(&mut self.redis.bulk().await?, self.redis.keys(), id).await?;
        let current = self.cached(id).map(|rt| rt.epoch);
        if epoch.is_some()
            && epoch != current
            && let Some(stored) = self.load(id).await?
        {
            self.install(id, stored);
        }
        if let Some(rt) = self.cached(id) {
            let counters = self.engine.collect(&rt).await?;
            rt.set_remaining(counters.iter().map(|c| c.stock + c.lent).sum());
        }
        Ok(())
    }
}
