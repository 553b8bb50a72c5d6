//! Where orders are written: from the accepting request, through a bounded in-memory queue
//! and a batching writer, into the database — and, for orders whose gateway died or that
//! were spilled, from the streams' pending lists by the recovery worker.
//!
//! Every path ends in [`Persister::persist`]: insert the rows (idempotent), *then* delete
//! the orders' stream entries (`ack.lua`); it also counts the rows and their lag from
//! acceptance (`flashgate_orders_persisted_total`, `flashgate_persist_lag_seconds`). An order is therefore always a row, or an entry
//! in its shard's stream, or both for a moment — never neither — unless the database keeps
//! refusing it: then it moves, atomically, from its stream to its shard's dead letters
//! ([`isolate`], [`dead_letters`]), where an operator retries or drops it.

pub mod dead_letters;
pub mod health;
pub mod isolate;
pub mod queue;
pub mod reconcile;
pub mod recovery;
pub mod writer;

use std::collections::BTreeMap;

use futures_util::future::try_join_all;

use crate::clock::Clock;
use crate::db::{DbError, OrderDb};
use crate::domain::{EntryId, NewOrder, SaleId};
use crate::metrics::PersistMetrics;
use crate::store::orders::{self, ShardAcks};
use crate::store::{Redis, StoreError};
use health::WriterHealth;

/// Why a batch of orders was not persisted (it stays pending in Redis either way).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("database write failed")]
    Db(#[from] DbError),
    #[error(
        "rows written but redis not updated (the orders stay pending; persisting again is harmless)"
    )]
    Ack(#[from] StoreError),
    #[error("cannot move a refused order to the dead letters (it stays pending)")]
    Bury(#[source] StoreError),
}

/// Writes orders to the database and then forgets them in Redis. Cheap to clone.
#[derive(Clone)]
pub struct Persister {
    db: OrderDb,
    redis: Redis,
    clock: Clock,
    health: WriterHealth,
    metrics: PersistMetrics,
}

impl Persister {
    /// A persister writing to `db` and acknowledging through `redis`.
    pub fn new(db: OrderDb, redis: Redis, clock: Clock) -> Self {
        Self {
            db,
            redis,
            clock,
            health: WriterHealth::default(),
            metrics: PersistMetrics::default(),
        }
    }

    /// Counts rows and their persistence lag in `metrics`.
    pub fn with_metrics(mut self, metrics: PersistMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The batch writer's progress (what readiness reads).
    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    /// The order database.
    pub fn db(&self) -> &OrderDb {
        &self.db
    }

    /// Redis, where the orders wait until they are rows.
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    /// Inserts `orders` (skipping rows that exist), then acknowledges them: one `ack.lua`
    /// call per shard in a cluster, and on a single node one call for up to
    /// [`ACK_CALL_ORDERS`] orders of any shards.
    pub async fn persist(&self, orders: &[NewOrder]) -> Result<u64, PersistError> {
        if orders.is_empty() {
            return Ok(0);
        }
        let inserted = self.db.insert(orders, self.clock.now_ms()).await?;
        // The lag is an order's acceptance to its row's commit; a batch with rows that
        // existed before (a re-sent order) has no such moment for those, so counts no lag.
        let lags = (inserted == orders.len() as u64).then(|| orders.iter().map(|o| o.created_ms));
        self.metrics
            .committed(inserted, lags.into_iter().flatten(), self.clock.now_ms());
        let mut by_shard: BTreeMap<(&SaleId, u32), Vec<(EntryId, u32)>> = BTreeMap::new();
        for order in orders {
            let shard = (order.order_id.sale(), order.order_id.shard());
            by_shard
                .entry(shard)
                .or_default()
                .push((order.order_id.entry(), order.quantity.get()));
        }
        let shards = by_shard
            .into_iter()
            .map(|((sale, shard), orders)| ShardAcks {
                keys: self.redis.keys().shard(sale, shard),
                orders,
            });
        let calls = if self.redis.is_cluster() {
            shards.map(|shard| vec![shard]).collect()
        } else {
            ack_calls(shards)
        };
        if self.redis.is_cluster() {
            try_join_all(calls.iter().map(|call| {
                let mut conn = self.redis.conn();
                async move { orders::ack(&mut conn, call).await }
            }))
            .await?;
        } else {
            // One at a time: calls sent together run back to back on the single node, and
            // every purchase waits behind all of them.
            let mut conn = self.redis.conn();
            for call in &calls {
                orders::ack(&mut conn, call).await?;
            }
        }
        Ok(inserted)
    }
}

/// Most orders one `ack.lua` call forgets on a single node: a call blocks every other
/// command while it runs, and each order costs it about 1 µs (its `XDEL` lookup).
pub const ACK_CALL_ORDERS: usize = 64;

/// Groups shards into calls of at most [`ACK_CALL_ORDERS`] orders (a shard with more gets
/// calls of its own, so no call is ever larger).
fn ack_calls(shards: impl Iterator<Item = ShardAcks>) -> Vec<Vec<ShardAcks>> {
    let mut calls: Vec<Vec<ShardAcks>> = Vec::new();
    let mut size = 0;
    for mut shard in shards {
        while !shard.orders.is_empty() {
            if calls.is_empty() || size == ACK_CALL_ORDERS {
                calls.push(Vec::new());
                size = 0;
            }
            let take = shard.orders.len().min(ACK_CALL_ORDERS - size);
            let rest = shard.orders.split_off(take);
            size += take;
            let part = ShardAcks {
                keys: shard.keys.clone(),
                orders: std::mem::replace(&mut shard.orders, rest),
            };
            calls.last_mut().expect("pushed above").push(part);
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Keys;

    fn shard(index: u32, orders: usize) -> ShardAcks {
        let sale = SaleId::parse("s").unwrap();
        ShardAcks {
            keys: Keys::new("t").shard(&sale, index),
            orders: (0..orders)
                .map(|i| (EntryId::parse(&format!("{i}-0")).unwrap(), 1))
                .collect(),
        }
    }

    #[test]
    fn ack_calls_keep_every_order_once_and_stay_within_the_bound() {
        let sizes = [3, ACK_CALL_ORDERS - 1, 0, 2 * ACK_CALL_ORDERS + 5, 1];
        let calls = ack_calls((0..).zip(sizes).map(|(i, n)| shard(i, n)));
        assert!(
            calls
                .iter()
                .all(|c| (1..=ACK_CALL_ORDERS).contains(&c.iter().map(|s| s.orders.len()).sum()))
        );
        assert!(calls.iter().flatten().all(|s| !s.orders.is_empty()));
        for (i, n) in (0..).zip(sizes) {
            let keys = shard(i, 0).keys;
            let got: Vec<&(EntryId, u32)> = calls
                .iter()
                .flatten()
                .filter(|s| s.keys == keys)
                .flat_map(|s| &s.orders)
                .collect();
            assert_eq!(got, shard(i, n).orders.iter().collect::<Vec<_>>());
        }
        assert_eq!(
            calls.len(),
            sizes.iter().sum::<usize>().div_ceil(ACK_CALL_ORDERS)
        );
    }
}
