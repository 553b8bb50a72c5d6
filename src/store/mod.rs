//! Redis: every command and script call the crate makes, each beside the key it uses, with
//! typed replies; the two kinds of handle ([`Redis`]); the key layout and the scripts; and a
//! local redis-server for the embedded default. Nothing outside this module builds a
//! command.
//!
//! One module per concern: [`purchase`] (the purchase path's call), [`loans`] (moves of
//! units between shards), [`shards`] (a shard's counters and buyer records), [`orders`]
//! (order streams and acknowledgements), [`placement`] (the cluster's slot map and the
//! reservation of placed shard indices), [`dead_letters`], [`recovery`] (the recovery
//! worker's locks and scans), [`returns`] (units of cancelled and expired orders back to
//! their sale), [`sales`] (sale definitions), [`audit`] (operators' actions
//! on a sale), [`tokens`] (purchase-token issuance) and [`limits`] (the shared per-sale
//! limit).

pub mod audit;
pub mod buyer_record;
pub mod conn;
pub mod dead_letters;
pub mod durability;
pub mod embedded;
pub mod error;
pub mod handle;
pub mod keys;
pub mod limits;
pub mod loans;
pub mod migration;
pub mod orders;
pub mod placement;
pub mod pool;
pub mod purchase;
pub mod recovery;
pub mod returns;
pub mod sales;
pub mod scripts;
pub mod shards;
pub mod tokens;

pub use conn::{RedisConn, RedisTarget, RedisTimeouts};
pub use durability::{Durability, ReplicaWait, WAIT_CONNECTIONS};
pub use error::StoreError;
pub use handle::{Redis, ping};
pub use keys::{Keys, ShardKeys};
pub use pool::BulkConn;
