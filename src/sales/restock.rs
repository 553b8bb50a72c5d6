//! The steps of a change of stock: each shard of the layout adds its share of a top-up, or
//! gives up what it has on its shelf towards a reduction, once per change
//! (`store::migration::change_stock`, keyed by the change's id).

use super::SaleRegistry;
use super::changes::top_up_split;
use crate::domain::{SaleId, ShardSet};
use crate::store::{StoreError, migration};

impl SaleRegistry {
    /// Runs a change of stock on the shards of `over`; returns the units it added
    /// (negative: removed). Run again (after a crash), it answers the same: each shard
    /// recorded what it did under `change_id`, and the shards are visited in the same order,
    /// so a reduction asks each of them exactly what it asked the first time.
    pub(super) async fn run_stock_change(
        &self,
        id: &SaleId,
        change_id: &str,
        add: i64,
        over: &ShardSet,
    ) -> Result<i64, StoreError> {
        let mut conn = self.redis.bulk().await?;
        let keys = self.redis.keys();
        if add > 0 {
            let mut added = 0;
            for (shard, units) in top_up_split(add.unsigned_abs(), over) {
                let units = i64::try_from(units).unwrap_or(i64::MAX);
                let shard_keys = keys.shard(id, shard);
                added += migration::change_stock(&mut conn, &shard_keys, change_id, units).await?;
            }
            return Ok(added);
        }
        let mut wanted = add.unsigned_abs();
        let mut removed = 0u64;
        for shard in over.indices() {
            if wanted == 0 {
                break;
            }
            let ask = -i64::try_from(wanted).unwrap_or(i64::MAX);
            let shard_keys = keys.shard(id, shard);
            let taken = migration::change_stock(&mut conn, &shard_keys, change_id, ask)
                .await?
                .unsigned_abs();
            wanted -= taken.min(wanted);
            removed += taken;
        }
        Ok(-i64::try_from(removed).unwrap_or(i64::MAX))
    }
}
