//! The stock engine: where stock is deducted. Sharded stock in Redis, per-buyer limits and
//! idempotency on the buyer's home shard, loans between shards, and the sold-out verdict.
//! See `docs/DESIGN.md` for why the invariants hold.

pub mod loans;
pub mod ops;
pub mod purchase;
pub mod shard;
pub mod verdict;

pub use ops::SpendToken;
pub use purchase::{PurchaseOutcome, PurchaseRequest, Refusal};

use crate::store::{Keys, RedisConn};

/// Runs the stock scripts against Redis. Cheap to clone.
#[derive(Clone)]
pub struct StockEngine {
    conn: RedisConn,
    keys: Keys,
}

impl StockEngine {
    /// An engine over `conn`, with keys built by `keys`.
    pub fn new(conn: RedisConn, keys: Keys) -> Self {
        Self { conn, keys }
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
