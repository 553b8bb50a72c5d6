//! The stock engine: where stock is deducted. Sharded stock in Redis, per-buyer limits and
//! idempotency on the buyer's home shard, loans between shards, and the sold-out verdict.
//! See `docs/DESIGN.md` for why the invariants hold.

pub mod loans;
pub mod ops;
pub mod purchase;
pub mod shard;
pub mod verdict;

pub use purchase::{PurchaseOutcome, PurchaseRequest, Refusal};

use std::sync::Arc;

use crate::store::{Keys, RedisConn};

/// Runs the stock scripts against Redis. Cheap to clone.
#[derive(Clone)]
pub struct StockEngine {
    conn: RedisConn,
    keys: Keys,
    consumer: Arc<str>,
}

impl StockEngine {
    /// An engine over `conn`, with keys built by `keys`. `consumer` names this gateway
    /// instance in the order streams' consumer group (unique per process).
    pub fn new(conn: RedisConn, keys: Keys, consumer: &str) -> Self {
        Self {
            conn,
            keys,
            consumer: consumer.into(),
        }
    }

    /// This instance's consumer name in the order writers' group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// The key builder.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A handle on the Redis connection.
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }
}
