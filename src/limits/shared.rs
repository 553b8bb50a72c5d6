//! The per-sale rate limit shared by every gateway instance: GCRA state kept in Redis
//! (`gcra.lua`, on Redis's clock), so N instances together admit what one limit allows.
//! Off unless `[limits.sale_shared]` has a rate; when on it costs one Redis call per
//! purchase that reaches it (after every local check has passed). Each call carries a
//! request id, so a re-sent call takes no second slot ([`crate::store::limits`]).

use uuid::Uuid;

use super::{Limited, Policy};
use crate::config::LimitSettings;
use crate::domain::SaleId;
use crate::store::limits::{self, GcraReply};
use crate::store::{Redis, StoreError};

/// A GCRA limit per sale, kept in Redis.
#[derive(Clone)]
pub struct SharedSaleLimit {
    redis: Redis,
    policy: Policy,
    /// Microseconds between requests at the sustained rate.
    interval_us: u64,
}

impl SharedSaleLimit {
    /// The limit `settings` kept in `redis`, or `None` when its rate is 0 (off).
    pub fn new(settings: LimitSettings, redis: Redis) -> Option<Self> {
        let rate = settings.rate_per_sec;
        if rate == 0 {
            return None;
        }
        let burst = if settings.burst == 0 {
            rate
        } else {
            settings.burst
        };
        Some(Self {
            redis,
            policy: Policy {
                scope: "sale",
                rate_per_sec: rate,
                burst,
            },
            interval_us: 1_000_000 / u64::from(rate),
        })
    }

    /// Counts one request for `sale`: `Ok(Err(_))` when it is over the limit. The request
    /// gets a fresh id, so that a re-send of this one call (a lost reply) is not counted again.
    pub async fn check(&self, sale: &SaleId) -> Result<Result<(), Limited>, StoreError> {
        self.check_request(sale, &Uuid::now_v7().simple().to_string())
            .await
    }

    /// Counts request `request` for `sale` once, however often this runs with the same id
    /// within the connection's replay window: a repeat of an admitted request is admitted
    /// again and takes no second slot.
    pub async fn check_request(
        &self,
        sale: &SaleId,
        request: &str,
    ) -> Result<Result<(), Limited>, StoreError> {
        let limit = (self.interval_us, self.policy.burst);
        let keys = self.redis.keys();
        let reply = limits::gcra(&mut self.redis.conn(), keys, sale, limit, request).await?;
        Ok(match reply {
            GcraReply::Allowed => Ok(()),
            GcraReply::Limited { retry_after } => Err(Limited {
                policy: self.policy,
                retry_after,
            }),
        })
    }
}
