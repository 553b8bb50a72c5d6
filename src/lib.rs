//! flashgate: a flash-sale gateway. Buyers' purchases take stock atomically from sharded
//! Redis keys (Lua), and every accepted order is durably recorded in the same step.
#![forbid(unsafe_code)]

mod auth;
mod cli;
mod clock;
mod config;
mod db;
mod domain;
mod http;
mod lifecycle;
mod limits;
mod logging;
mod metrics;
mod orders;
mod panics;
mod persist;
mod purchase;
mod sales;
mod startup;
mod stock;
mod store;
mod tokens;
mod workers;

/// What the binary runs.
pub use cli::{Cli, run};

/// The crate's insides that the integration tests, benchmarks and examples drive directly:
/// the in-process gateway and its settings, the domain vocabulary, and the Redis calls and
/// background workers they exercise one by one. Not a stable interface.
#[doc(hidden)]
pub mod testing {
    pub mod auth {
        pub use crate::auth::jwks::KeySet;
        pub use crate::auth::subject::buyer_id;
        pub use crate::auth::{BuyerAuth, ClaimRules, Jwks, JwksSource, JwtError, JwtKeys};
    }
    pub mod clock {
        pub use crate::clock::Clock;
    }
    pub mod config {
        pub use crate::config::{
            DurabilityMode, LifecycleSettings, LimitSettings, QueueSettings, Settings,
        };
        pub use crate::logging::{LogFormat, LogSettings};
        pub use crate::metrics::MetricsSettings;
    }
    pub mod db {
        pub use crate::db::{DbError, OrderDb};
    }
    pub mod domain {
        pub use crate::domain::Layout;
        pub use crate::domain::Origin;
        pub use crate::domain::{
            EntryId, IdError, IdempotencyKey, OrderId, Quantity, SaleDefinition, SaleId, SaleSpec,
            ShardSet, UserId,
        };
    }
    pub mod http {
        pub use crate::http::error::ProblemKind;
        pub use crate::http::{ApiError, AppState, app, openapi};
    }
    pub mod lifecycle {
        pub use crate::db::{DueReturn, Transition};
        pub use crate::lifecycle::{Actor, Lifecycle, SettleOutcome, SweepReport};
        pub use crate::store::returns::{ReturnOutcome, return_units};
    }
    pub mod limits {
        pub use crate::limits::SharedSaleLimit;
    }
    pub mod orders {
        pub use crate::domain::NewOrder;
        pub use crate::store::orders::record_from_entry;
    }
    pub mod persist {
        pub use crate::persist::{Persister, dead_letters, queue, writer};
    }
    pub mod sales {
        pub use crate::sales::SaleRegistry;
    }
    pub mod startup {
        pub use crate::startup::Application;
    }
    pub mod stock {
        pub use crate::stock::{StockEngine, batch, shard};
        pub use crate::store::purchase::SpendToken;
    }
    pub mod store {
        pub use crate::store::{
            Keys, Redis, RedisConn, RedisTarget, RedisTimeouts, ShardKeys, StoreError, keys, loans,
            migration, orders, purchase, sales, shards, tokens,
        };
    }
    pub mod tokens {
        pub use crate::domain::{Challenge, PurchaseToken, TokenId};
        pub use crate::tokens::{Audience, TokenSigner, pow};
    }
    pub mod workers {
        pub use crate::workers::Recovery;
    }
}
