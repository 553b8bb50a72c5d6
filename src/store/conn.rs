//! The connection to Redis, single node or cluster, chosen at start-up.
//!
//! Both variants are multiplexed: one socket per node carries every concurrent request,
//! pipelined, so the purchase path never waits for a pool checkout. The single-node manager
//! reconnects by itself after an outage; the cluster connection refreshes its slot map.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture, Value};

/// Where Redis is and how long to wait for it.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// One Redis server.
    Single(String),
    /// A Redis Cluster, given by some of its nodes.
    Cluster(Vec<String>),
}

/// Time limits for Redis calls.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    /// Most time to wait for one answer.
    pub response: Duration,
    /// Most time to wait for a TCP connection.
    pub connect: Duration,
}

/// A cheap-to-clone handle on Redis.
#[derive(Clone)]
pub enum RedisConn {
    /// A single node, reconnecting by itself.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to `target`. A single node may be down at this point: the manager connects
    /// lazily and retries, so the gateway can start (and report not-ready) during an outage.
    pub async fn connect(
        target: &RedisTarget,
        timeouts: RedisTimeouts,
    ) -> redis::RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(no_delay(url)?)?;
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(timeouts.response))
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                let manager = ConnectionManager::new_lazy_with_config(client, config)?;
                Ok(Self::Single(manager))
            }
            RedisTarget::Cluster(urls) => {
                let nodes = urls
                    .iter()
                    .map(|url| no_delay(url))
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                let client = ClusterClientBuilder::new(nodes)
                    .response_timeout(timeouts.response)
                    .connection_timeout(timeouts.connect)
                    .retries(2)
                    .build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

/// `url` with Nagle's algorithm off: the connection carries many small commands at once
/// (pipelined), and with Nagle on, each would wait for the acknowledgement of the one
/// before it, so Redis idles between them.
fn no_delay(url: &str) -> redis::RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

impl RedisConn {
    /// Whether every script call must keep to one slot (a cluster); a single node runs a
    /// script over any keys.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}
