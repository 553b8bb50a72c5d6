//! The recovery worker's calls: Redis's clock, the per-shard recovery lock, and the pages
//! of order-stream entries old enough to be recovery's.

use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::streams::StreamRangeReply;

use super::orders::record_from_entry;
use super::{Keys, StoreError};
use crate::domain::{NewOrder, SaleId};

/// An entry of an order stream, as recovery reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleEntry {
    /// The order it records.
    Order(NewOrder),
    /// An entry whose order record cannot be read, by entry id.
    Unreadable(String),
}

/// The Redis server's clock (which stamps the entry ids), unix ms.
pub async fn now_ms(conn: &mut impl ConnectionLike) -> Result<u64, StoreError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await?;
    Ok(secs * 1000 + micros / 1000)
}

/// Takes shard `shard`'s recovery lock for `hold` (`SET NX PX`); false if another instance
/// holds it.
pub async fn lock_shard(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
    shard: u32,
    hold: Duration,
) -> Result<bool, StoreError> {
    let taken: Option<String> = redis::cmd("SET")
        .arg(keys.shard(sale, shard).recovering)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(hold.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    Ok(taken.is_some())
}

/// The oldest `count` entries of shard `shard`'s order stream stamped at or before
/// `cutoff_ms`.
pub async fn stale_entries(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
    shard: u32,
    cutoff_ms: u64,
    count: usize,
) -> Result<Vec<StaleEntry>, StoreError> {
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(keys.shard(sale, shard).orders)
        .arg("-")
        .arg(cutoff_ms)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(reply
        .ids
        .iter()
        .map(|entry| match record_from_entry(sale, shard, entry) {
            Some(order) => StaleEntry::Order(NewOrder::from(order)),
            None => StaleEntry::Unreadable(entry.id.clone()),
        })
        .collect())
}
