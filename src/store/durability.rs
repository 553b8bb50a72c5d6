//! How durable an accepted purchase is when it is answered: on the master only (its
//! append-only file and its replicas follow asynchronously), or also on one replica
//! (`WAIT 1 <ms>` on the shard's node right after the purchase script).
//!
//! `WAIT` blocks only the client that sends it, and covers every write that client made
//! before it; on the multiplexed connection that is the purchase just run (and any other
//! request's write sent before it). A `WAIT` that times out with no replica's acknowledgement
//! still answers 202: the record is on the master, as under `async`; it is counted
//! (`flashgate_replica_wait_timeouts_total`) so that an operator sees acknowledgements that a
//! master crash could lose (docs/DESIGN.md, "Durability of an accepted purchase").

use metrics::Counter;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::conn::Link;
use super::purchase::{PurchaseCall, PurchaseReply};
use super::{RedisConn, StoreError};

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

    /// Waits until one replica of the node holding `key` acknowledged this connection's
    /// writes so far. An error is the call's (Redis unreachable, timed out): the purchase it
    /// follows took effect all the same, so the caller answers it and only logs the error.
    pub async fn after_write(&self, conn: &mut RedisConn, key: &str) -> redis::RedisResult<()> {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(self.timeout_ms);
        let acknowledged: i64 = match &mut conn.link {
            Link::Single(c) => cmd.query_async(c).await?,
            Link::Cluster(c) => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                redis::from_redis_value(c.route_command(cmd, routing).await?)?
            }
        };
        if acknowledged < 1 {
            self.timeouts.increment(1);
        }
        Ok(())
    }
}

impl Durability {
    /// After one `purchase.lua` call over `calls` (all on one node) answered `replies`: under
    /// `replica`, waits for a replica when any purchase was accepted. A purchase that took
    /// nothing has nothing to wait for.
    pub async fn after_purchases(
        &self,
        conn: &mut RedisConn,
        calls: &[PurchaseCall],
        replies: &[Result<PurchaseReply, StoreError>],
    ) {
        let Self::Replica(wait) = self else {
            return;
        };
        let accepted = replies
            .iter()
            .any(|reply| matches!(reply, Ok(PurchaseReply::Accepted { .. })));
        let Some(first) = calls.first().filter(|_| accepted) else {
            return;
        };
        if let Err(err) = wait.after_write(conn, &first.keys.shard).await {
            // The purchases took effect on the master; only their copy on a replica is unknown.
            wait.timeouts.increment(1);
            tracing::warn!(error = %err, "waiting for a replica after a purchase failed");
        }
    }
}
