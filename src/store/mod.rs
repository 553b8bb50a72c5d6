//! Redis access: the connection (single node or cluster), key layout, scripts, and a local
//! redis-server for the embedded default.

pub mod conn;
pub mod embedded;
pub mod error;
pub mod keys;
pub mod scripts;

pub use conn::{RedisConn, RedisTarget, RedisTimeouts};
pub use error::StoreError;
pub use keys::{Keys, ShardKeys};
