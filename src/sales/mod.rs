//! Sales: definitions stored in Redis, the local cache of them, and operator changes.

pub mod registry;
pub mod runtime;
pub mod stats;

pub use registry::{PutOutcome, PutSaleError, SaleRegistry, SaleStatus, ShardStatus};
pub use runtime::SaleRuntime;
pub use stats::{Rejection, RejectionStats};
