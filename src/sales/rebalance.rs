//! Keeping each sale's shards evenly spread over the Redis Cluster's masters.
//!
//! A new layout (a sale's creation or replacement, a reshard) takes shard indices placed by
//! the slot map of that moment (`domain::placement`). When slots later move between
//! masters, a layout's shards may no longer split evenly; every instance checks that on a
//! timer (one `CLUSTER SLOTS` per pass, then a CRC16 per shard of each cached sale) and,
//! for a sale that is uneven, starts a live reshard to the same shard count through the
//! ordinary path (`changes`): recorded, locked, resumable, audited with the actor
//! `rebalance`. Of several instances finding the same sale uneven, one records the
//! reshard; the others find the change in progress and leave it.

use time::OffsetDateTime;

use super::SaleRegistry;
use super::changes::{ChangeError, ChangeReport};
use crate::domain::{Operator, SaleId, ShardSet, SlotMap, Window};
use crate::store::{BulkConn, Keys, StoreError, placement};

/// What one rebalancing pass did to one sale.
#[derive(Debug)]
pub struct Rebalanced {
    pub sale: SaleId,
    /// The reshard started, or why it was not.
    pub outcome: Result<ChangeReport, ChangeError>,
}

impl SaleRegistry {
    /// Reserves `count` fresh shard indices for sale `id` from `floor` upward, placed
    /// evenly over the masters of the cluster's current slot map (`None`: the sale has used
    /// every index it may).
    pub(super) async fn place_shards(
        &self,
        conn: &mut BulkConn,
        id: &SaleId,
        count: u32,
        floor: u32,
    ) -> Result<Option<ShardSet>, StoreError> {
        let map = self.redis.slot_map().await?;
        placement::reserve_placed(conn, self.redis.keys(), id, count, floor, &map).await
    }

    /// One pass over the cached sales: each whose current shards no longer split evenly
    /// over the masters gets a live reshard to the same count. Nothing on a single node.
    pub async fn rebalance_all(&self, now: OffsetDateTime) -> Result<Vec<Rebalanced>, StoreError> {
        if !self.redis.is_cluster() {
            return Ok(Vec::new());
        }
        let map = self.redis.slot_map().await?;
        let mut done = Vec::new();
        for rt in self.all_cached() {
            if rt.layout.is_migrating() || is_even(&map, &rt.sale.id, &rt.layout.current) {
                continue;
            }
            let sale = rt.sale.id.clone();
            if let Some(outcome) = self.rebalance(&sale, &map, now).await.transpose() {
                done.push(Rebalanced { sale, outcome });
            }
        }
        Ok(done)
    }

    /// Starts a reshard of sale `id` to its own shard count if its stored layout is uneven
    /// over `map`, the sale has not ended and no change is in progress (`None`: nothing to
    /// do).
    async fn rebalance(
        &self,
        id: &SaleId,
        map: &SlotMap,
        now: OffsetDateTime,
    ) -> Result<Option<ChangeReport>, ChangeError> {
        let Some(stored) = self.load(id).await? else {
            return Ok(None);
        };
        let settled = stored.op.is_none() && !stored.layout.is_migrating();
        let uneven = !is_even(map, id, &stored.layout.current);
        if !settled || !uneven || stored.spec.window(now) == Window::After {
            return Ok(None);
        }
        let shards = stored.layout.current.count();
        tracing::info!(sale = %id, shards, "shards no longer split evenly over the cluster's masters: resharding");
        let report = self
            .reshard_from(id, stored, shards, &Operator::rebalance(), now)
            .await?;
        Ok(Some(report))
    }
}

/// Whether the shards `shards` of sale `id` split evenly over the masters of `map`.
fn is_even(map: &SlotMap, id: &SaleId, shards: &ShardSet) -> bool {
    map.is_even(shards, |index| Keys::shard_slot(id, index))
}
