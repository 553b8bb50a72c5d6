//! Sales: definitions stored in Redis, the local cache of them, and operator changes.

pub mod registry;
pub mod report;
pub mod runtime;
pub mod stats;

pub use registry::{PutOutcome, PutSaleError, SaleRegistry, SkippedSale};
pub use report::{SaleReport, SaleStatus, ShardStatus, UnreadableSale};
pub use runtime::SaleRuntime;
pub use stats::{Rejection, RejectionStats};
