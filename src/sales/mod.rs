//! Sales: definitions stored in Redis, the local cache of them, and operators' changes.

pub mod apply;
pub mod changes;
pub mod define;
pub mod delete;
pub mod registry;
pub mod report;
mod reshard;
mod restock;

pub use changes::{ChangeError, ChangeReport};
pub use define::{PutOutcome, PutSaleError};
pub use delete::DeleteError;
pub use registry::{SaleRegistry, SkippedSale};
pub use report::SaleReport;
