//! Sales: definitions stored in Redis, the local cache of them, operators' changes and
//! switches, the operator views, and the audit trail of operator actions.

pub mod apply;
pub mod audit;
pub mod changes;
pub mod control;
pub mod define;
pub mod delete;
pub mod listing;
pub mod rebalance;
pub mod registry;
pub mod report;
mod reshard;
mod restock;

pub use changes::{ChangeError, ChangeReport};
pub use control::{Switch, SwitchError};
pub use define::{PutOutcome, PutSaleError};
pub use delete::DeleteError;
pub use listing::SaleListing;
pub use registry::{SaleRegistry, SkippedSale};
pub use report::SaleReport;
