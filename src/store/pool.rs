//! The bounded pool of Redis connections for bulk and background work: recovery scans,
//! reconciliation's reads, sold-out holder loads, dead-letter listing and operators' sale
//! changes.
//!
//! The purchase path keeps its one multiplexed connection per node ([`super::RedisConn`]):
//! its replies are small and pipelining them is what makes it fast. A reply of thousands of
//! stream entries or hash fields on that socket would hold back every purchase reply queued
//! behind it, so bulk work takes a connection of its own from this pool, at most
//! `redis.bulk_pool_size` at once; a caller that finds them all taken waits up to the
//! connect timeout, then fails like an unreachable Redis.

use std::time::Duration;

use deadpool_redis::{Runtime, Timeouts, cluster};
use redis::AsyncConnectionConfig;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use super::conn::no_delay;
use super::{RedisTarget, RedisTimeouts, StoreError};

/// A bounded pool of Redis connections, single node or cluster. Cheap to clone.
#[derive(Clone)]
pub struct BulkPool {
    pool: Pool,
    wait: Duration,
}

#[derive(Clone)]
enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(cluster::Pool),
}

/// A connection taken from a [`BulkPool`]; it goes back to the pool when dropped.
pub struct BulkConn(Conn);

enum Conn {
    Single(deadpool_redis::Connection),
    Cluster(cluster::Connection),
}

/// How many connections of a [`BulkPool`] exist and how many are in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkPoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not in use.
    pub available: usize,
}

impl BulkPool {
    /// A pool of at most `size` connections (at least 1) to `target`. Connects lazily: the
    /// first connection opens when work first asks for one.
    pub fn new(
        target: &RedisTarget,
        timeouts: RedisTimeouts,
        size: usize,
    ) -> redis::RedisResult<Self> {
        let wait = timeouts.connect;
        let pool_timeouts = Timeouts {
            wait: Some(wait),
            create: Some(timeouts.connect + timeouts.response),
            recycle: Some(timeouts.response),
        };
        let size = size.max(1);
        let pool = match target {
            RedisTarget::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(timeouts.response))
                    .set_connection_timeout(Some(timeouts.connect));
                let manager = deadpool_redis::Manager::new_with_config(no_delay(url)?, config)?;
                let pool = deadpool_redis::Pool::builder(manager)
                    .max_size(size)
                    .timeouts(pool_timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(build_failed)?;
                Pool::Single(pool)
            }
            RedisTarget::Cluster(urls) => {
                let nodes = urls
                    .iter()
                    .map(|url| no_delay(url))
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                // Checked here, where the error says which node is wrong; the manager
                // builds the same client again for every connection.
                ClusterClientBuilder::new(nodes.clone()).build()?;
                let manager = cluster::Manager::new(nodes, false)?;
                let pool = cluster::Pool::builder(manager)
                    .max_size(size)
                    .timeouts(pool_timeouts)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(build_failed)?;
                Pool::Cluster(pool)
            }
        };
        Ok(Self { pool, wait })
    }

    /// A connection, once one is free (at most the connect timeout).
    pub async fn get(&self) -> Result<BulkConn, StoreError> {
        let conn = match &self.pool {
            Pool::Single(pool) => pool.get().await.map(Conn::Single),
            Pool::Cluster(pool) => pool.get().await.map(Conn::Cluster),
        };
        conn.map(BulkConn).map_err(|error| self.unavailable(error))
    }

    /// The pool's size and use now.
    pub fn status(&self) -> BulkPoolStatus {
        let status = match &self.pool {
            Pool::Single(pool) => pool.status(),
            Pool::Cluster(pool) => pool.status(),
        };
        BulkPoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
        }
    }

    /// A pool failure as the Redis error it amounts to: Redis's own error when making a
    /// connection failed, otherwise an I/O timeout (no connection came free in time).
    fn unavailable(&self, error: deadpool_redis::PoolError) -> StoreError {
        match error {
            deadpool_redis::PoolError::Backend(error) => StoreError::Redis(error),
            other => {
                let message = format!("no bulk redis connection within {:?}: {other}", self.wait);
                let io = std::io::Error::new(std::io::ErrorKind::TimedOut, message);
                StoreError::Redis(redis::RedisError::from(io))
            }
        }
    }
}

fn build_failed(error: deadpool_redis::BuildError) -> redis::RedisError {
    let io = std::io::Error::other(format!("cannot build the bulk redis pool: {error}"));
    redis::RedisError::from(io)
}

impl ConnectionLike for BulkConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
