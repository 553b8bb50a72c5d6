//! The state every handler shares: one `Arc`, so cloning it per request costs one atomic
//! increment (cloning a struct of a dozen `Arc`s per request measurably slowed the edge).

use std::ops::Deref;
use std::sync::Arc;

use super::gate::IpLimit;
use super::in_flight::InFlight;
use super::server::Connections;
use crate::auth::BuyerAuth;
use crate::clock::Clock;
use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::limits::RateLimits;
use crate::metrics::Metrics;
use crate::persist::Persister;
use crate::purchase::Purchases;
use crate::sales::SaleRegistry;
use crate::stock::StockEngine;
use crate::store::Redis;
use crate::tokens::TokenSigner;

/// Pools, caches and keys, shared by all handlers.
pub struct Shared {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// Sale definitions and per-sale hints.
    pub sales: SaleRegistry,
    /// Settles orders after the purchase (pay, cancel, expire) and returns their units.
    pub lifecycle: Lifecycle,
    /// The stock engine: the purchase path's Redis calls.
    pub stock: StockEngine,
    /// Redis, for the calls outside the purchase path (token issuance, order status,
    /// probes).
    pub redis: Redis,
    /// Writes orders to the database (used directly by `caller-runs`).
    pub persister: Persister,
    /// Buyer token verification.
    pub jwt: BuyerAuth,
    /// The time source.
    pub clock: Clock,
    /// The caps on concurrent purchase handlers, overall and per buyer.
    pub in_flight: Arc<InFlight>,
    /// The cap on open connections.
    pub connections: Arc<Connections>,
    /// Per-IP, per-buyer and per-sale rate limits.
    pub rate_limits: Arc<RateLimits>,
    /// The per-IP limit and the proxies trusted for `X-Forwarded-For`.
    pub ip_limit: Arc<IpLimit>,
    /// Signs and verifies challenges and purchase tokens.
    pub tokens: TokenSigner,
    /// The purchase use case: the chain every purchase answer comes from.
    pub purchases: Purchases,
    /// The metrics registry and the tallies `/metrics` publishes.
    pub metrics: Arc<Metrics>,
}

/// A cheap handle on [`Shared`].
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared state.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
