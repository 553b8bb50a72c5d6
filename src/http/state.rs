//! The state every handler shares: cheap to clone, no globals.

use std::sync::Arc;

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Settings;
use crate::persist::Persister;
use crate::persist::queue::OrderQueue;
use crate::sales::SaleRegistry;
use crate::stock::StockEngine;

/// Pools, caches and keys, shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// Sale definitions and per-sale hints.
    pub sales: SaleRegistry,
    /// The stock engine (Redis).
    pub stock: StockEngine,
    /// The bounded queue to the order writer.
    pub queue: OrderQueue,
    /// Writes orders to the database (used directly by `caller-runs`).
    pub persister: Persister,
    /// Buyer token verification.
    pub jwt: JwtKeys,
    /// The time source.
    pub clock: Clock,
}
