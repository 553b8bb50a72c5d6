//! How durable an accepted purchase is when it is answered: on the master only (its
//! append-only file and its replicas follow asynchronously), or also on one replica.
//!
//! Under `replica` the purchase script and a `WAIT 1 <ms>` go out as one pipeline, so both
//! run on the node that holds the shard, one right after the other: `WAIT` blocks only the
//! client that sends it and covers every write that client made before it, which includes
//! the purchase. Were they sent apart, a failover between the two could send the `WAIT` to
//! the promoted replica, which would vouch for a record it never received. A blocked client
//! runs nothing else until its `WAIT` ends, so these pipelines go round-robin over connections
//! of their own ([`WAIT_CONNECTIONS`]), not over the purchase path's one multiplexed
//! connection, where each wait would hold up every other request to that node. A `WAIT` that
//! ends with no replica's acknowledgement still answers 202 (the record is on the master, as
//! under `async`) and is counted in `flashgate_replica_wait_timeouts_total`, so that an
//! operator sees the acknowledgements a master crash could lose (docs/DESIGN.md,
//! "Durability of an accepted purchase").

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Counter;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

use super::RedisConn;

/// Connections the waiting pipelines take turns on: each carries one wait at a time per
/// node, so this many purchase calls per node wait for their replica at once.
pub const WAIT_CONNECTIONS: usize = 8;

/// When the gateway answers an accepted purchase.
#[derive(Clone, Default)]
pub enum Durability {
    /// Once the master ran the purchase script.
    #[default]
    Async,
    /// Once one replica acknowledged it too, or the wait timed out.
    Replica(ReplicaWait),
}

/// The wait for one replica's acknowledgement.
#[derive(Clone)]
pub struct ReplicaWait {
    timeout_ms: u64,
    timeouts: Counter,
    /// The connections the pipelines take turns on (at least one).
    conns: Arc<[RedisConn]>,
    next: Arc<AtomicUsize>,
}

impl ReplicaWait {
    /// Waits at most `timeout_ms` (at least 1: `WAIT 1 0` would block forever) on `conns`
    /// in turn (e.g. [`WAIT_CONNECTIONS`] of them; empty is not allowed), counting the waits
    /// no replica acknowledged in `timeouts`.
    pub fn new(timeout_ms: u64, timeouts: Counter, conns: Vec<RedisConn>) -> Self {
        assert!(!conns.is_empty(), "a replica wait needs a connection");
        Self {
            timeout_ms: timeout_ms.max(1),
            timeouts,
            conns: conns.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The connection for the next pipeline.
    fn conn(&self) -> RedisConn {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns[turn % self.conns.len()].clone()
    }

    /// Runs `cmd` (an `EVALSHA` of `script`) followed by `WAIT 1 <timeout>` in one
    /// pipeline on the next of its connections, loading the script once on `NOSCRIPT` as
    /// [`super::scripts::run`] does. Returns the script's reply and whether a replica
    /// acknowledged it.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        cmd: &Cmd,
    ) -> RedisResult<(T, Acknowledged)> {
        let conn = &mut self.conn();
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .cmd("WAIT")
            .arg(1)
            .arg(self.timeout_ms);
        let (reply, replicas): (T, i64) = match pipe.query_async(conn).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.load_async(conn).await?;
                pipe.query_async(conn).await?
            }
            other => other?,
        };
        Ok((reply, Acknowledged(replicas >= 1)))
    }

    /// Counts a wait no replica acknowledged, when it followed an accepted purchase (a
    /// purchase that took nothing had nothing to lose).
    pub(super) fn record(&self, acknowledged: Acknowledged, accepted: bool) {
        if accepted && !acknowledged.0 {
            self.timeouts.increment(1);
        }
    }
}

/// Whether a replica acknowledged the writes a `WAIT` covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Acknowledged(bool);
