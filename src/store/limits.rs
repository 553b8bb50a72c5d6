//! The per-sale rate limit shared by every gateway instance: one `gcra.lua` call, on Redis's
//! clock, keyed by a request id so that a re-sent call takes no second slot.

use std::time::Duration;

use redis::Value;

use super::{Keys, RedisConn, StoreError, scripts};
use crate::domain::SaleId;

/// What `gcra.lua` decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcraReply {
    /// Admitted (or admitted before, for a re-sent request).
    Allowed,
    /// Over the limit; a request would conform after `retry_after`.
    Limited { retry_after: Duration },
}

/// Counts request `request` against `sale`'s shared limit: one request per `interval_us` on
/// average, `burst` at once. Idempotent per request id within the connection's replay
/// window.
pub async fn gcra(
    conn: &mut RedisConn,
    keys: &Keys,
    sale: &SaleId,
    (interval_us, burst): (u64, u32),
    request: &str,
) -> Result<GcraReply, StoreError> {
    let keep_ms = conn.replay_window_ms();
    let reply: Vec<Value> = scripts::GCRA
        .key(keys.sale_quota(sale))
        .key(keys.sale_quota_admitted(sale))
        .arg(interval_us.max(1))
        .arg(burst)
        .arg(request)
        .arg(keep_ms)
        .invoke_async(conn)
        .await?;
    let num = |i: usize| -> Option<u64> {
        let n: i64 = redis::from_redis_value_ref(reply.get(i)?).ok()?;
        u64::try_from(n).ok()
    };
    let (Some(allowed), Some(wait_us)) = (num(0), num(1)) else {
        return Err(StoreError::unexpected("gcra.lua", &reply));
    };
    Ok(if allowed == 1 {
        GcraReply::Allowed
    } else {
        GcraReply::Limited {
            retry_after: Duration::from_micros(wait_us),
        }
    })
}
