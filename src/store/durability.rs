//! How durable an accepted purchase is when it is answered: on the master only (its
//! append-only file and its replicas follow asynchronously), or also on one replica.
//!
//! Under `replica` the purchase script and a `WAIT 1 <ms>` go out as one pipeline, so both
//! run on the node that holds the shard, one right after the other: `WAIT` blocks only the
//! client that sends it and covers every write that client made before it, which includes
//! the purchase. Were they sent apart, a failover between the two could send the `WAIT` to
//! the promoted replica, which would vouch for a record it never received. A `WAIT` that
//! ends with no replica's acknowledgement still answers 202 (the record is on the master, as
//! under `async`) and is counted in `flashgate_replica_wait_timeouts_total`, so that an
//! operator sees the acknowledgements a master crash could lose (docs/DESIGN.md,
//! "Durability of an accepted purchase").

use metrics::Counter;
use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

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
}

impl ReplicaWait {
    /// Waits at most `timeout_ms` (at least 1: `WAIT 1 0` would block forever), counting
    /// the waits no replica acknowledged in `timeouts`.
    pub fn new(timeout_ms: u64, timeouts: Counter) -> Self {
        Self {
            timeout_ms: timeout_ms.max(1),
            timeouts,
        }
    }

    /// Runs `cmd` (an `EVALSHA` of `script`) followed by `WAIT 1 <timeout>` in one
    /// pipeline, loading the script once on `NOSCRIPT` as [`super::scripts::run`] does.
    /// Returns the script's reply and whether a replica acknowledged it.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        script: &Script,
        cmd: &Cmd,
        conn: &mut impl ConnectionLike,
    ) -> RedisResult<(T, Acknowledged)> {
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
