//! The stock engine: where stock is deducted. Sharded stock in Redis, per-buyer limits and
//! idempotency on the buyer's home shard, loans between shards, and the sold-out verdict.
//! See `docs/DESIGN.md` for why the invariants hold.

pub mod batch;
pub mod holders;
pub mod loans;
pub mod purchase;
pub mod runtime;
pub mod shard;
pub mod verdict;

pub use purchase::{PurchaseOutcome, PurchaseRequest, Refusal, ReplayLookup};
pub use runtime::{RuntimeState, SaleCounts, SaleRuntime};

use batch::PurchaseBatcher;

use crate::metrics::CallTimer;
use crate::store::{Durability, Keys, Redis, RedisConn};

/// Takes stock: runs the purchase path's Redis calls, and the loans and snapshots it needs.
/// Cheap to clone.
#[derive(Clone)]
pub struct StockEngine {
    /// The multiplexed connection every purchase goes through.
    conn: RedisConn,
    /// The handles, for the bulk pool (holder loads, loan recovery) and the keys.
    redis: Redis,
    /// Batches purchases, on a single node with batching configured; otherwise each
    /// purchase is its own call.
    batcher: Option<PurchaseBatcher>,
    /// Times each `purchase.lua` call.
    timer: CallTimer,
    /// Whether an accepted purchase waits for a replica before it is answered.
    durability: Durability,
}

impl StockEngine {
    /// An engine over `redis`, sending each purchase on its own.
    pub fn new(redis: Redis) -> Self {
        Self {
            conn: redis.conn(),
            redis,
            batcher: None,
            timer: CallTimer::noop(),
            durability: Durability::Async,
        }
    }

    /// Times every `purchase.lua` call with `timer` (set it before
    /// [`Self::with_purchase_batches`], whose batches it times too).
    pub fn with_call_timer(mut self, timer: CallTimer) -> Self {
        self.timer = timer;
        self
    }

    /// Makes every accepted purchase as durable as `durability` says before it is answered
    /// (set it before [`Self::with_purchase_batches`], whose batches follow it too).
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sends up to `max_batch` purchases per `purchase.lua` call when Redis is a single node
    /// and `max_batch` > 1 ([`batch`]); a cluster keeps one purchase per call (a call keeps
    /// to one slot). Spawns the batching task, so it must run inside the Tokio runtime.
    pub fn with_purchase_batches(mut self, max_batch: usize) -> Self {
        self.batcher = (max_batch > 1 && !self.conn.is_cluster()).then(|| {
            PurchaseBatcher::spawn_with(
                self.conn.clone(),
                max_batch,
                self.timer.clone(),
                self.durability.clone(),
            )
        });
        self
    }

    /// The key builder.
    fn keys(&self) -> &Keys {
        self.redis.keys()
    }
}
