//! The steps of a live reshard from the shards of `from` (the layout's `draining` range) to
//! those of `to` (its `current` range), which every instance already sells from when these
//! steps start (docs/DESIGN.md §6, "Live reshard"):
//!
//! 1. **seal** every shard of `from`: `purchase.lua` answers `moved` there from now on, so an
//!    instance still on the old layout reloads the sale instead of selling from it;
//! 2. **hand over** every buyer record of `from` to the buyer's home in `to`
//!    (`export_buyer.lua`, a page at a time, leaves tombstones; `import_buyers.lua` at the new
//!    home writes each unless a purchase imported it first), then mark every new home ("?"):
//!    a buyer with no record there has none anywhere, and purchases stop asking;
//! 3. **drain** the units still on `from`'s shelves into `to` with the loans of the purchase
//!    path (borrow, credit, settle), and wait until nothing is on `from`'s shelves or out on
//!    loan from it (a borrower's loan settles at once; an abandoned one by loan recovery);
//! 4. (the switch that finishes the change drops `from` from the layout, then its buyer
//!    hashes — tombstones and seal — are deleted.)
//!
//! Every step is idempotent, so a resumed reshard runs them all again.

use std::collections::HashMap;
use std::time::Duration;

use super::SaleRegistry;
use super::changes::Lease;
use crate::clock::unix_ms;
use crate::domain::{SaleId, ShardSet, UserId};
use crate::stock::shard::split_stock;
use crate::store::loans;
use crate::store::migration;
use crate::store::shards::{self, ShardCounters};
use crate::store::{BulkConn, StoreError};

/// Buyer records per `HSCAN` page.
const PAGE: usize = 256;
/// Pause between looks at the draining shards while loans from them settle.
const DRAIN_PAUSE: Duration = Duration::from_millis(20);

impl SaleRegistry {
    /// Runs steps 1–3 of the module's list.
    pub(super) async fn run_reshard(
        &self,
        id: &SaleId,
        from: &ShardSet,
        to: &ShardSet,
        lease: &Lease<'_>,
    ) -> Result<(), StoreError> {
        let keys = self.redis.keys();
        let mut conn = self.redis.bulk().await?;
        for shard in from.indices() {
            migration::seal(&mut conn, &keys.shard(id, shard)).await?;
        }
        for shard in from.indices() {
            self.hand_over_buyers(&mut conn, id, shard, to).await?;
            lease.renew().await?;
        }
        // Every record is at its new home now: purchases there stop asking for hand-overs.
        for shard in to.indices() {
            migration::mark_handed_over(&mut conn, &keys.shard(id, shard)).await?;
        }
        drop(conn);
        self.drain(id, from, to, lease).await
    }

    /// Hands every buyer record of shard `shard` over to the buyer's home in `to`: a page of
    /// buyers per `export_buyer.lua` call, then one `import_buyers.lua` call per new home
    /// for every [`PAGE`] records gathered for it.
    async fn hand_over_buyers(
        &self,
        conn: &mut BulkConn,
        id: &SaleId,
        shard: u32,
        to: &ShardSet,
    ) -> Result<(), StoreError> {
        let keys = self.redis.keys();
        let old = keys.shard(id, shard);
        let mut homes: HashMap<u32, Vec<(UserId, String)>> = HashMap::new();
        let mut cursor = 0;
        loop {
            let (next, page) = shards::scan_buyer_records(conn, &old, cursor, PAGE).await?;
            // The seal and other markers are no user ids.
            let users: Vec<UserId> = page
                .iter()
                .filter_map(|(field, _)| UserId::parse(field).ok())
                .collect();
            if !users.is_empty() {
                let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                let records = migration::export_buyers(conn, &old, &names).await?;
                for (user, record) in users.into_iter().zip(records) {
                    let home = to.home_of(&user);
                    let batch = homes.entry(home).or_default();
                    batch.push((user, record));
                    if batch.len() >= PAGE {
                        let batch = std::mem::take(batch);
                        migration::import_buyers(conn, &keys.shard(id, home), &batch).await?;
                    }
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for (home, batch) in homes {
            migration::import_buyers(conn, &keys.shard(id, home), &batch).await?;
        }
        Ok(())
    }

    /// Moves the units on `from`'s shelves into `to` until none is left there nor out on
    /// loan from it, as two reads in a row agree (no move between them).
    async fn drain(
        &self,
        id: &SaleId,
        from: &ShardSet,
        to: &ShardSet,
        lease: &Lease<'_>,
    ) -> Result<(), StoreError> {
        let mut last: Option<Vec<ShardCounters>> = None;
        loop {
            let counters = self.counters_of(id, from.indices()).await?;
            let empty = counters.iter().all(|c| c.stock == 0 && c.lent == 0);
            let unmoved = last
                .as_ref()
                .is_some_and(|l| l.iter().zip(&counters).all(|(a, b)| a.ver == b.ver));
            if empty && unmoved {
                return Ok(());
            }
            for (shard, c) in from.indices().zip(&counters) {
                if c.stock > 0 {
                    self.lend_out(id, shard, c.stock, from, to).await?;
                }
            }
            last = Some(counters);
            lease.renew().await?;
            tokio::time::sleep(DRAIN_PAUSE).await;
        }
    }

    /// Lends `units` of draining shard `shard` to its share of `to`'s shards (the shards of
    /// `to` that correspond to it, so the units spread evenly), crediting and settling each
    /// loan at once, as a borrower does.
    async fn lend_out(
        &self,
        id: &SaleId,
        shard: u32,
        units: u64,
        from: &ShardSet,
        to: &ShardSet,
    ) -> Result<(), StoreError> {
        let keys = self.redis.keys();
        let donor = keys.shard(id, shard);
        let mut conn = self.redis.conn();
        let share = to.count().div_ceil(from.count());
        let position = from.position(shard).unwrap_or_default();
        let first = position * to.count() / from.count();
        for (i, part) in (0..).zip(split_stock(units, share)) {
            if part == 0 {
                continue;
            }
            let recipient = to.nth(first + i);
            let loan = uuid::Uuid::now_v7().simple().to_string();
            let now = unix_ms(time::OffsetDateTime::now_utc());
            let reply = loans::borrow(&mut conn, &donor, &loan, part, recipient, now).await?;
            if reply.taken > 0 {
                let recipient_keys = keys.shard(id, recipient);
                loans::credit(&mut conn, &recipient_keys, &loan, reply.taken).await?;
                loans::settle(&mut conn, &donor, &loan).await?;
            }
        }
        Ok(())
    }

    /// Deletes the buyer hashes of a drained layout: every record there was handed over
    /// (tombstones), and the seal goes with them.
    pub(super) async fn forget_handed_over(
        &self,
        id: &SaleId,
        from: &ShardSet,
    ) -> Result<(), StoreError> {
        let mut conn = self.redis.bulk().await?;
        for shard in from.indices() {
            migration::delete_buyers(&mut conn, &self.redis.keys().shard(id, shard)).await?;
        }
        Ok(())
    }
}
