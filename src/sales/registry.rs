//! The sale registry: sale definitions live in Redis (shared by every gateway instance);
//! each instance caches them with their hints and refreshes the cache in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::runtime::SaleRuntime;
use super::stats::RejectionStats;
use crate::domain::{Sale, SaleDefinition, SaleId, SaleSpec, Window};
use crate::stock::StockEngine;
use crate::stock::ops::{self, ShardCounters};
use crate::stock::shard::split_stock;
use crate::store::StoreError;

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
    engine: StockEngine,
    cache: Arc<RwLock<HashMap<SaleId, Arc<SaleRuntime>>>>,
    stats: Arc<RwLock<HashMap<SaleId, Arc<RejectionStats>>>>,
}

/// A sale's record in Redis.
struct StoredSale {
    spec: SaleSpec,
    paused: bool,
    epoch: u64,
}

impl SaleRegistry {
    /// An empty cache over `engine`'s Redis.
    pub fn new(engine: StockEngine) -> Self {
        Self {
            engine,
            cache: Arc::default(),
            stats: Arc::default(),
        }
    }

    /// The stock engine this registry shares its connection with.
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

    /// Puts a stored sale into the cache unless the cache already has its epoch.
    fn install(&self, id: &SaleId, stored: StoredSale) -> Arc<SaleRuntime> {
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
            self.engine.keys(),
        ));
        cache.insert(id.clone(), rt.clone());
        rt
    }

    async fn load(&self, id: &SaleId) -> Result<Option<StoredSale>, StoreError> {
        let (def, paused, epoch): (Option<String>, Option<String>, Option<u64>) =
            redis::cmd("HMGET")
                .arg(self.engine.keys().sale_meta(id))
                .arg(&["def", "paused", "epoch"])
                .query_async(&mut self.engine.conn())
                .await?;
        let Some(def) = def else { return Ok(None) };
        let def: SaleDefinition =
            serde_json::from_str(&def).map_err(|source| StoreError::Corrupt {
                what: "sale definition",
                source: source.into(),
            })?;
        let spec = SaleSpec::try_from(def)
            .map_err(|e| StoreError::unexpected("stored sale definition", &e.to_string()))?;
        Ok(Some(StoredSale {
            spec,
            paused: paused.as_deref() == Some("1"),
            epoch: epoch.unwrap_or(0),
        }))
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
        if let Some(old) = existing {
            if old.spec == spec {
                self.install(id, old);
                return Ok(PutOutcome::Unchanged);
            }
            if old.spec.window(now) == Window::Open {
                return Err(PutSaleError::Live(id.clone()));
            }
            let counters = self.counters(id, old.spec.shards()).await?;
            if counters.iter().any(|c| c.sold > 0 || c.lent > 0) {
                return Err(PutSaleError::HasOrders(id.clone()));
            }
            self.delete_shards(id, old.spec.shards()).await?;
        }
        self.init_shards(id, &spec).await?;
        let epoch = self.write_meta(id, &spec).await?;
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

    async fn delete_shards(&self, id: &SaleId, shards: u32) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        for shard in 0..shards {
            let keys = self.engine.keys().shard(id, shard);
            for key in keys.all() {
                redis::cmd("DEL")
                    .arg(key)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
        }
        Ok(())
    }

    async fn init_shards(&self, id: &SaleId, spec: &SaleSpec) -> Result<(), StoreError> {
        let mut conn = self.engine.conn();
        for (shard, units) in (0..).zip(split_stock(spec.stock(), spec.shards())) {
            let key = self.engine.keys().shard(id, shard).shard;
            redis::cmd("HSET")
                .arg(&key)
                .arg(&[
                    ("stock", units),
                    ("lent", 0),
                    ("allotted", units),
                    ("received", 0),
                    ("given", 0),
                    ("acked", 0),
                ])
                .query_async::<()>(&mut conn)
                .await?;
            redis::cmd("HINCRBY")
                .arg(&key)
                .arg("ver")
                .arg(1)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }

    /// Writes the definition, clears the kill switch, bumps the epoch and indexes the sale.
    async fn write_meta(&self, id: &SaleId, spec: &SaleSpec) -> Result<u64, StoreError> {
        let mut conn = self.engine.conn();
        let meta = self.engine.keys().sale_meta(id);
        let def =
            serde_json::to_string(spec.definition()).map_err(|source| StoreError::Corrupt {
                what: "sale definition",
                source: source.into(),
            })?;
        redis::cmd("HSET")
            .arg(&meta)
            .arg(&[("def", def.as_str()), ("paused", "0")])
            .query_async::<()>(&mut conn)
            .await?;
        let epoch: u64 = redis::cmd("HINCRBY")
            .arg(&meta)
            .arg("epoch")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        redis::cmd("SADD")
            .arg(self.engine.keys().sale_index())
            .arg(id.as_str())
            .query_async::<()>(&mut conn)
            .await?;
        Ok(epoch)
    }

    async fn counters(&self, id: &SaleId, shards: u32) -> Result<Vec<ShardCounters>, StoreError> {
        let mut conn = self.engine.conn();
        let mut all = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            all.push(ops::read_counters(&mut conn, &self.engine.keys().shard(id, shard)).await?);
        }
        Ok(all)
    }

    /// Every sale id stored in Redis.
    pub async fn ids(&self) -> Result<Vec<SaleId>, StoreError> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.engine.keys().sale_index())
            .query_async(&mut self.engine.conn())
            .await?;
        let mut ids: Vec<SaleId> = ids.iter().filter_map(|s| SaleId::parse(s).ok()).collect();
        ids.sort();
        Ok(ids)
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
        let epoch: Option<u64> = redis::cmd("HGET")
            .arg(self.engine.keys().sale_meta(id))
            .arg("epoch")
            .query_async(&mut self.engine.conn())
            .await?;
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
