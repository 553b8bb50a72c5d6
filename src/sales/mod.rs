//! Sales: definitions stored in Redis, the local cache of them, operator changes and
//! switches, the operator views, and the audit trail of operator actions.

pub mod audit;
pub mod control;
pub mod listing;
pub mod registry;
pub mod report;

pub use control::{Switch, SwitchError};
pub use listing::SaleListing;
pub use registry::{PutOutcome, PutSaleError, SaleRegistry, SkippedSale};
pub use report::SaleReport;
