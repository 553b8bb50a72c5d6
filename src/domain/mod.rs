//! The domain vocabulary: identifiers, quantities, sales, orders, verified credentials,
//! operators and their audit trail, and the reasons a purchase is refused, all valid by
//! construction. Every other module may use it; it uses none.

pub mod audit;
pub mod credential;
pub mod ids;
pub mod layout;
pub mod operation;
pub mod operator;
pub mod order;
pub mod origin;
pub mod placement;
pub mod rejection;
pub mod sale;

pub use audit::{AuditAction, AuditEntry};
pub use credential::{Challenge, PurchaseToken, TokenId};
pub use ids::{EntryId, IdError, IdempotencyKey, OrderId, Quantity, SaleId, UserId};
pub use layout::{Layout, ShardSet};
pub use operation::{Change, Operation};
pub use operator::Operator;
pub use order::{NewOrder, OrderRecord, OrderStatus, Settlement};
pub use origin::Origin;
pub use placement::SlotMap;
pub use rejection::{Rejection, RejectionStats};
pub use sale::{Sale, SaleDefinition, SaleSpec, SaleState, Window};
