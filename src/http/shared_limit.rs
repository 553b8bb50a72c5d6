//! The per-sale rate limit shared by every gateway instance: GCRA state kept in Redis
//! (`gcra.lua`, on Redis's clock), so N instances together admit what one limit allows.
//! Off unless `[limits.sale_shared]` has a rate; when on it costs one Redis call per
//! purchase that reaches it (after every local check has passed). Each call carries a
//! request id, so a re-sent call takes no second slot (`lua/gcra.lua`).

use std::time::Duration;

use redis::Value;
use uuid::Uuid;

use super::rate_limit::{LimitSettings, Limited, Policy};
use crate::domain::SaleId;
use crate::store::{Keys, RedisConn, StoreError, scripts};

/// A GCRA limit per sale, kept in Redis.
#[derive(Clone)]
pub struct SharedSaleLimit {
    conn: RedisConn,
    keys: Keys,
    policy: Policy,
    /// Microseconds between requests at the sustained rate.
    interval_us: u64,
}

impl SharedSaleLimit {
    /// The limit `settings` over `conn`, or `None` when its rate is 0 (off).
    pub fn new(settings: LimitSettings, conn: RedisConn, keys: Keys) -> Option<Self> {
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
            conn,
            keys,
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
        let mut conn = self.conn.clone();
        let keep_ms = conn.replay_window_ms();
        let reply: Vec<Value> = scripts::GCRA
            .key(self.keys.sale_quota(sale))
            .key(self.keys.sale_quota_admitted(sale))
            .arg(self.interval_us.max(1))
            .arg(self.policy.burst)
            .arg(request)
            .arg(keep_ms)
            .invoke_async(&mut conn)
            .await?;
        let num = |i: usize| -> Option<u64> {
            let n: i64 = redis::from_redis_value_ref(reply.get(i)?).ok()?;
            u64::try_from(n).ok()
        };
        let (Some(allowed), Some(wait_us)) = (num(0), num(1)) else {
            return Err(StoreError::unexpected("gcra.lua", &reply));
        };
        Ok(if allowed == 1 {
            Ok(())
        } else {
            Err(Limited {
                policy: self.policy,
                retry_after: Duration::from_micros(wait_us),
            })
        })
    }
}
