//! The domain vocabulary: identifiers, quantities and sales, all valid by construction.

pub mod ids;
pub mod sale;

pub use ids::{EntryId, IdError, IdempotencyKey, OrderId, Quantity, SaleId, UserId};
pub use sale::{Sale, SaleDefinition, SaleSpec, SaleSpecError, SaleState, Window};
