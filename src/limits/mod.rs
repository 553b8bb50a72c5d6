//! Rate limits, each a GCRA: kept in this instance's memory (governor) per client IP, per
//! buyer, per sale and per buyer on challenge and token issuance ([`RateLimits`]), or kept
//! in Redis and shared by every instance per sale ([`SharedSaleLimit`]). A limit answers a
//! pace: [`Limited`] says which limit refused and when a request would conform; the HTTP
//! edge turns it into 429 with `Retry-After` and `RateLimit` headers.

mod local;
mod shared;

pub use local::{Limited, Policy, RateLimits};
pub use shared::SharedSaleLimit;
