//! The connection to Redis, single node or cluster, chosen at start-up.
//!
//! Both variants are multiplexed: one socket per node carries every concurrent request,
//! pipelined, so the purchase path never waits for a pool checkout. The single-node manager
//! reconnects by itself after an outage; the cluster connection refreshes its slot map.
//!
//! The cluster connection re-sends a command whose reply was lost (a dropped connection, a
//! timeout): redis-rs counts those re-sends and the MOVED/ASK redirects against one budget
//! per command, so re-sends cannot be turned off without losing redirects. Every script is
//! therefore safe to run twice, and [`RedisConn::replay_window`] says how long a script keyed
//! by an id must remember it.

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

/// Times redis-rs's cluster connection sends a command again after the first attempt, for a
/// redirect or after a lost reply.
const CLUSTER_RETRIES: u32 = 2;
/// Longest pause between two attempts of one command. With [`CLUSTER_RETRIES`] = 2 redis-rs
/// pauses about 1.3 s anyway; set, it is a bound [`RedisConn::replay_window`] can rely on
/// rather than a consequence of redis-rs's defaults (whose cap is minutes).
const CLUSTER_RETRY_WAIT_MS: u64 = 1_500;
/// Shortest pause between two attempts of one command.
const CLUSTER_RETRY_MIN_WAIT_MS: u64 = 1_280;

/// A cheap-to-clone handle on Redis.
#[derive(Clone)]
pub struct RedisConn {
    link: Link,
    replay_window: Duration,
}

/// The connection itself, single node or cluster.
#[derive(Clone)]
enum Link {
    /// A single node, reconnecting by itself.
    Single(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl RedisTimeouts {
    /// How long after a command was first sent a copy of it may still reach Redis: every
    /// attempt of it ends within the connect and response timeouts, with a pause of at most
    /// [`CLUSTER_RETRY_WAIT_MS`] before each re-send. Doubled, since a reconnect may also
    /// refresh the slot map (one more connect and response) before the command is re-sent.
    fn replay_window(self) -> Duration {
        let attempts = CLUSTER_RETRIES + 1;
        let attempt = self.connect + self.response;
        let pauses = Duration::from_millis(CLUSTER_RETRY_WAIT_MS) * CLUSTER_RETRIES;
        (attempt * attempts + pauses) * 2
    }
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
                Ok(Self::new(Link::Single(manager), timeouts))
            }
            RedisTarget::Cluster(urls) => {
                let nodes = urls
                    .iter()
                    .map(|url| no_delay(url))
                    .collect::<redis::RedisResult<Vec<_>>>()?;
                let client = ClusterClientBuilder::new(nodes)
                    .response_timeout(timeouts.response)
                    .connection_timeout(timeouts.connect)
                    .retries(CLUSTER_RETRIES)
                    .min_retry_wait(CLUSTER_RETRY_MIN_WAIT_MS)
                    .max_retry_wait(CLUSTER_RETRY_WAIT_MS)
                    .build()?;
                let conn = client.get_async_connection().await?;
                Ok(Self::new(Link::Cluster(conn), timeouts))
            }
        }
    }
}

/// `url` with Nagle's algorithm off: the connection carries many small commands at once
/// (pipelined), and with Nagle on, each would wait for the acknowledgement of the one
/// before it, so Redis idles between them.
pub(super) fn no_delay(url: &str) -> redis::RedisResult<ConnectionInfo> {
    let info = url.into_connection_info()?;
    let tcp = info.tcp_settings().clone().set_nodelay(true);
    Ok(info.set_tcp_settings(tcp))
}

impl RedisConn {
    fn new(link: Link, timeouts: RedisTimeouts) -> Self {
        Self {
            link,
            replay_window: timeouts.replay_window(),
        }
    }

    /// Whether every script call must keep to one slot (a cluster); a single node runs a
    /// script over any keys.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster(_))
    }

    /// How long a script keyed by an id (a loan, a challenge, a request) must remember that
    /// the id took effect: no copy of a command reaches Redis later than this after its first
    /// send. (The single-node manager never re-sends; the same bound does no harm there.)
    pub fn replay_window(&self) -> Duration {
        self.replay_window
    }

    /// [`Self::replay_window`] in whole milliseconds, at least 1: an expiry for Redis.
    pub fn replay_window_ms(&self) -> u64 {
        u64::try_from(self.replay_window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_window_covers_every_attempt_and_every_pause() {
        let timeouts = RedisTimeouts {
            response: Duration::from_millis(500),
            connect: Duration::from_millis(500),
        };
        // Three attempts of at most 1 s each and two pauses of at most 1.5 s: 6 s, doubled.
        assert_eq!(timeouts.replay_window(), Duration::from_secs(12));
        let attempts = u128::from(CLUSTER_RETRIES + 1);
        let one = (timeouts.connect + timeouts.response).as_millis();
        assert!(timeouts.replay_window().as_millis() >= attempts * one);
    }
}
