//! Where orders are written: from the accepting request, through a bounded in-memory queue
//! and a batching writer, into the database — and, for orders whose gateway died or that
//! were spilled, from the streams' pending lists by the recovery worker.
//!
//! Every path ends in [`Persister::persist`]: insert the rows (idempotent), *then* delete
//! the orders' stream entries (`ack.lua`). An order is therefore always a row, or an entry
//! in its shard's stream, or both for a moment — never neither.

pub mod queue;
pub mod reconcile;
pub mod recovery;
pub mod writer;

use std::collections::BTreeMap;

use futures_util::future::try_join_all;

use crate::clock::Clock;
use crate::db::{DbError, OrderStore};
use crate::domain::SaleId;
use crate::orders::NewOrder;
use crate::stock::StockEngine;
use crate::stock::ops;
use crate::store::StoreError;

/// Why a batch of orders was not persisted (it stays pending in Redis either way).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("database write failed")]
    Db(#[from] DbError),
    #[error(
        "rows written but redis not updated (the orders stay pending; persisting again is harmless)"
    )]
    Ack(#[from] StoreError),
}

/// Writes orders to the database and then forgets them in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Persister {
    store: OrderStore,
    engine: StockEngine,
    clock: Clock,
}

impl Persister {
    /// A persister writing to `store` and acknowledging through `engine`.
    pub fn new(store: OrderStore, engine: StockEngine, clock: Clock) -> Self {
        Self {
            store,
            engine,
            clock,
        }
    }

    /// The order database.
    pub fn store(&self) -> &OrderStore {
        &self.store
    }

    /// The stock engine (Redis).
    pub fn engine(&self) -> &StockEngine {
        &self.engine
    }

    /// Inserts `orders` (skipping rows that exist), then acknowledges them shard by shard.
    pub async fn persist(&self, orders: &[NewOrder]) -> Result<u64, PersistError> {
        if orders.is_empty() {
            return Ok(0);
        }
        let inserted = self.store.insert(orders, self.clock.now_ms()).await?;
        let mut by_shard: BTreeMap<(&SaleId, u32), Vec<(String, u32)>> = BTreeMap::new();
        for order in orders {
            let shard = (order.order_id.sale(), order.order_id.shard());
            by_shard
                .entry(shard)
                .or_default()
                .push((order.order_id.entry().to_string(), order.quantity.get()));
        }
        let acks = by_shard.into_iter().map(|((sale, shard), entries)| {
            let mut conn = self.engine.conn();
            let keys = self.engine.keys().shard(sale, shard);
            async move { ops::ack(&mut conn, &keys, &entries).await }
        });
        try_join_all(acks).await?;
        Ok(inserted)
    }
}
