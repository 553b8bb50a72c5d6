//! [`Redis`]: the two kinds of Redis handle and the key builder, which every Redis call of
//! the crate is made with. Cheap to clone.

use std::sync::Arc;

use super::pool::{BulkConn, BulkPool};
use super::{Keys, RedisConn, RedisTarget, RedisTimeouts, StoreError};
use crate::domain::SlotMap;

/// Redis, as the rest of the crate holds it.
///
/// - [`Redis::conn`]: the multiplexed connection of the purchase path and of every small,
///   latency-bound call (tokens, the shared limit, acknowledgements, probes).
/// - [`Redis::bulk`]: a connection of the bounded [`BulkPool`], for calls whose replies are
///   large or many (scans, stream pages, operators' changes), so that they never queue
///   purchase replies behind them on one socket.
#[derive(Clone)]
pub struct Redis {
    conn: RedisConn,
    bulk: BulkPool,
    keys: Keys,
    /// The cluster's nodes as configured, and the time limits of a call to one of them:
    /// where the slot map is read from (`None` on a single node, or when built by
    /// [`Redis::new`]).
    seeds: Option<(Arc<[String]>, RedisTimeouts)>,
}

impl Redis {
    /// The handles over `conn` and `bulk`, with keys built by `keys`.
    pub fn new(conn: RedisConn, bulk: BulkPool, keys: Keys) -> Self {
        Self {
            conn,
            bulk,
            keys,
            seeds: None,
        }
    }

    /// Connects both handles to `target`, the pool holding at most `bulk_size` connections.
    pub async fn connect(
        target: &RedisTarget,
        timeouts: RedisTimeouts,
        bulk_size: usize,
        keys: Keys,
    ) -> redis::RedisResult<Self> {
        let conn = RedisConn::connect(target, timeouts).await?;
        let bulk = BulkPool::new(target, timeouts, bulk_size)?;
        let seeds = match target {
            RedisTarget::Single(_) => None,
            RedisTarget::Cluster(urls) => Some((urls.iter().cloned().collect(), timeouts)),
        };
        Ok(Self {
            seeds,
            ..Self::new(conn, bulk, keys)
        })
    }

    /// The key builder.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The multiplexed connection (cheap to clone).
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// A connection of the bulk pool, once one is free.
    pub async fn bulk(&self) -> Result<BulkConn, StoreError> {
        self.bulk.get().await
    }

    /// The bulk pool (its status shows how much bulk work runs).
    pub fn bulk_pool(&self) -> &BulkPool {
        &self.bulk
    }

    /// Whether Redis is a cluster (a script call then keeps to one slot).
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    /// Which master serves each slot now, or one node serving every slot on a single node.
    ///
    /// Read with `CLUSTER SLOTS` on a plain connection to the first configured node that
    /// answers, opened for the call (once per rebalancing pass or new layout), not through
    /// the cluster connection: right after slots move, that connection is busy refreshing
    /// its own slot map, and redis-rs 1.8 was seen to stall the requests it carried then
    /// when this call was among them.
    pub async fn slot_map(&self) -> Result<SlotMap, StoreError> {
        if !self.is_cluster() {
            return Ok(SlotMap::single());
        }
        let Some((nodes, timeouts)) = &self.seeds else {
            return super::placement::slot_map(&mut self.conn()).await;
        };
        let mut failure = None;
        for node in nodes.iter() {
            match super::placement::slot_map_from(node, *timeouts).await {
                Ok(map) => return Ok(map),
                Err(error) => failure = Some(error),
            }
        }
        Err(failure.unwrap_or_else(|| {
            StoreError::unexpected("the cluster's slot map", &"no cluster node is configured")
        }))
    }
}

/// Whether Redis answers a `PING` on the multiplexed connection.
pub async fn ping(redis: &Redis) -> Result<(), StoreError> {
    redis::cmd("PING")
        .query_async::<String>(&mut redis.conn())
        .await?;
    Ok(())
}
