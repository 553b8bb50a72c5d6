//! The stock engine: where stock is deducted. Sharded stock in Redis, per-buyer limits and
//! idempotency on the buyer's home shard, loans between shards, and the sold-out verdict.
//! See `docs/DESIGN.md` for why the invariants hold.

pub mod batch;
pub mod holders;
pub mod loans;
pub mod ops;
pub mod purchase;
pub mod record;
pub mod shard;
pub mod verdict;

pub use ops::SpendToken;
pub use purchase::{PurchaseOutcome, PurchaseRequest, Refusal, ReplayLookup};

use batch::PurchaseBatcher;

use crate::store::{Keys, RedisConn};

/// Runs the stock scripts against Redis. Cheap to clone.
#[derive(Clone)]
pub struct StockEngine {
    conn: RedisConn,
    keys: Keys,
    /// Batches purchases, on a single node with batching configured; otherwise each
    /// purchase is its own call.
    batcher: Option<PurchaseBatcher>,
}

impl StockEngine {
    /// An engine over `conn`, with keys built by `keys`, sending each purchase on its own.
    pub fn new(conn: RedisConn, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            batcher: None,
        }
    }

    /// Sends up to `max_batch` purchases per `purchase.lua` call when Redis is a single node
    /// and `max_batch` > 1 ([`batch`]); a cluster keeps one purchase per call (a call keeps
    /// to one slot). Spawns the batching task, so it must run inside the Tokio runtime.
    pub fn with_purchase_batches(mut self, max_batch: usize) -> Self {
        self.batcher = (max_batch > 1 && !self.conn.is_cluster())
            .then(|| PurchaseBatcher::spawn(self.conn.clone(), max_batch));
        self
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
