//! Who holds units of a sold-out sale. Once a consistent snapshot finds a sale sold out, a
//! buyer who holds nothing can be told "sold out" from memory, while a holder must still
//! reach Redis, where a retry of theirs replays its order. The set is loaded once per sale
//! runtime, in the background, with `HSCAN` pages over the home shards' buyer hashes, on a
//! connection of the bulk pool: no
//! request waits for it and no single Redis command costs O(buyers). Until it is loaded,
//! purchases ask Redis as before (one `purchase.lua` call each, answered "short").

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::domain::UserId;
use crate::store::{Redis, ShardKeys, StoreError, shards};

/// Fields per `HSCAN` page: each reply carries this many buyer records (~130 bytes each
/// at most per order).
const PAGE: usize = 256;
/// Pause before loading again after a failed load.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The set of buyers who hold units, once loaded.
#[derive(Debug, Default)]
pub struct Holders(OnceLock<HashSet<UserId>>);

impl Holders {
    /// Whether `user` is known to hold nothing (false while the set is not loaded).
    pub fn excludes(&self, user: &UserId) -> bool {
        self.0.get().is_some_and(|holders| !holders.contains(user))
    }

    /// Whether the set is loaded.
    pub fn is_known(&self) -> bool {
        self.0.get().is_some()
    }

    /// Loads the set in a background task, retrying after failures, until it is loaded or
    /// nobody needs it any more (its sale runtime was replaced).
    pub fn load_in_background(self: Arc<Self>, redis: Redis, shards: Vec<Arc<ShardKeys>>) {
        let holders: Weak<Self> = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            loop {
                match load(&redis, &shards).await {
                    Ok(set) => {
                        if let Some(holders) = holders.upgrade() {
                            let _ = holders.0.set(set);
                        }
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "loading a sold-out sale's holders failed; retrying");
                    }
                }
                if holders.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        });
    }
}

/// Every buyer with a record on `shards` (a record exists once a purchase was accepted).
/// Read on a connection of the bulk pool, so that the pages never share a socket with
/// purchase replies.
async fn load(redis: &Redis, shards: &[Arc<ShardKeys>]) -> Result<HashSet<UserId>, StoreError> {
    let mut conn = redis.bulk().await?;
    let mut holders = HashSet::new();
    for keys in shards {
        let mut cursor = 0;
        loop {
            let (next, fields) = shards::scan_buyers(&mut conn, keys, cursor, PAGE).await?;
            // The hash's markers (`*`, and a reshard's `!` and `?`) are no user ids:
            // `parse` leaves them out.
            holders.extend(fields.iter().filter_map(|f| UserId::parse(f).ok()));
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(holders)
}
