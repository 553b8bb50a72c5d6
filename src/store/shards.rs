//! Reads of one shard's state: its counters (`HMGET`) and its buyers' records (`HGET`,
//! `HSCAN`).

use redis::aio::ConnectionLike;

use super::buyer_record::BuyerRecord;
use super::{ShardKeys, StoreError};
use crate::domain::UserId;

/// Reads `user`'s record from the buyer hash of their home shard (`None`: no order yet). A
/// record handed over to a newer layout reads as it was handed over.
pub async fn read_buyer_record(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    user: &UserId,
) -> Result<Option<BuyerRecord>, StoreError> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(&keys.buyers)
        .arg(user.as_str())
        .query_async(conn)
        .await?;
    text.map(|text| {
        BuyerRecord::parse_stored(&text)
            .map(|(record, _)| record)
            .map_err(|_| StoreError::unexpected("buyer record", &text))
    })
    .transpose()
}

/// One page of the field names of a shard's buyer hash (`HSCAN`, about `count` fields):
/// the cursor to continue from (0 when done) and the names (values are dropped).
pub async fn scan_buyers(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<String>), StoreError> {
    let (next, pairs): (u64, Vec<String>) = redis::cmd("HSCAN")
        .arg(&keys.buyers)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let names = pairs.into_iter().step_by(2).collect();
    Ok((next, names))
}

/// One page of a shard's buyer hash with its values (`HSCAN`, about `count` fields): the
/// cursor to continue from (0 when done) and the (field, record) pairs.
pub async fn scan_buyer_records(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    cursor: u64,
    count: usize,
) -> Result<(u64, Vec<(String, String)>), StoreError> {
    Ok(redis::cmd("HSCAN")
        .arg(&keys.buyers)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?)
}

/// The units a shard was allotted when its sale was set up, and the units of its dead
/// letters an operator dropped (missing fields read as 0).
pub async fn allotted_and_dropped(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
) -> Result<(u64, u64), StoreError> {
    let (allotted, dropped): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
        .arg(&keys.shard)
        .arg(&["allotted", "dropped"])
        .query_async(conn)
        .await?;
    Ok((allotted.unwrap_or(0), dropped.unwrap_or(0)))
}

/// The counters of one shard, read in one `HMGET`.
///
/// Redis keeps the ones a move of units changes: `stock`, `lent`, `ver`, and `allotted` (units
/// given to the shard when the sale was set up), `received` (units credited to it by loans),
/// `given` (units of its loans that were settled) and `acked` (units of its orders that became
/// rows). A purchase changes `stock` alone: every unit ever on the shard is on its shelf, lent,
/// or sold, so `sold` = `allotted + received - given - stock - lent`, and the units of orders
/// not yet rows are `sold - acked`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// Units available on this shard.
    pub stock: u64,
    /// Units lent to other shards and not yet settled (in flight, still unsold).
    pub lent: u64,
    /// Units sold from this shard.
    pub sold: u64,
    /// Units of accepted orders not yet persisted to the database.
    pub pending_units: u64,
    /// Version, bumped by every move of units between shards (borrow, credit, settle).
    pub ver: u64,
}

/// The fields [`read_counters`] reads, in order.
const COUNTER_FIELDS: [&str; 7] = [
    "stock", "lent", "ver", "allotted", "received", "given", "acked",
];

/// Reads a shard's counters (missing fields read as 0).
pub async fn read_counters(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
) -> Result<ShardCounters, StoreError> {
    let values: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(&keys.shard)
        .arg(&COUNTER_FIELDS)
        .query_async(conn)
        .await?;
    counters_from(&values).ok_or_else(|| StoreError::unexpected("shard counters", &values))
}

/// Derives the counters from the fields' values; `None` if they contradict each other.
fn counters_from(values: &[Option<i64>]) -> Option<ShardCounters> {
    let fields: Vec<u64> = values
        .iter()
        .map(|v| u64::try_from(v.unwrap_or(0)).ok())
        .collect::<Option<_>>()?;
    let &[stock, lent, ver, allotted, received, given, acked] = fields.as_slice() else {
        return None;
    };
    let sold = (allotted + received)
        .checked_sub(given)?
        .checked_sub(stock)?
        .checked_sub(lent)?;
    Some(ShardCounters {
        stock,
        lent,
        sold,
        pending_units: sold.checked_sub(acked)?,
        ver,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_derive_sold_and_pending_from_the_conserved_total() {
        // stock, lent, ver, allotted, received, given, acked: 10 allotted, 4 received by
        // loans, 3 lent out of which 2 settled; 5 on the shelf, so 10 + 4 - 2 - 5 - 3 = 4
        // sold, of which 1 is a row.
        let values = [5, 3, 9, 10, 4, 2, 1].map(Some);
        assert_eq!(
            counters_from(&values),
            Some(ShardCounters {
                stock: 5,
                lent: 3,
                sold: 4,
                pending_units: 3,
                ver: 9,
            })
        );
        // Missing fields read as 0: a shard that does not exist has sold nothing.
        assert_eq!(counters_from(&[None; 7]), Some(ShardCounters::default()));
    }

    #[test]
    fn contradictory_counters_are_rejected() {
        // More units on the shelf than the shard ever had, more acked than sold, a
        // negative field, a missing field.
        assert_eq!(counters_from(&[11, 0, 1, 10, 0, 0, 0].map(Some)), None);
        assert_eq!(counters_from(&[5, 0, 1, 10, 0, 0, 6].map(Some)), None);
        assert_eq!(counters_from(&[-1, 0, 1, 10, 0, 0, 0].map(Some)), None);
        assert_eq!(counters_from(&[Some(1); 6]), None);
    }
}
