//! Sales: definitions stored in Redis, the local cache of them, and operator changes.

pub mod registry;
pub mod report;

pub use registry::{PutOutcome, PutSaleError, SaleRegistry, SkippedSale};
pub use report::SaleReport;
