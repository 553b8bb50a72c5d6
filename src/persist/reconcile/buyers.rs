//! The buyers' side of reconciliation: every buyer record of a shard, read with `HSCAN`.
//! A record is `<held>` then one line per accepted order
//! (`store::buyer_record`), so `held` must equal the sum of the lines' quantities, and the
//! lines name every order Redis ever accepted for the sale.

use std::collections::HashSet;

use super::{Finding, ReconcileError};
use crate::domain::OrderId;
use crate::store::buyer_record::BuyerRecord;
use crate::store::migration::{HANDED_OVER, SEAL};
use crate::store::sales::TABLE_MARK;
use crate::store::{BulkConn, ShardKeys, shards};

/// Fields read per `HSCAN`.
const PAGE: usize = 1000;

/// Checks every buyer record of shard `index` (keys `keys`), adding each order id it names
/// to `recorded`; returns the findings.
pub async fn scan(
    conn: &mut BulkConn,
    keys: &ShardKeys,
    index: u32,
    recorded: &mut HashSet<OrderId>,
) -> Result<Vec<Finding>, ReconcileError> {
    let mut findings = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, fields) = shards::scan_buyer_records(conn, keys, cursor, PAGE).await?;
        // `!` and `?` mark a reshard's shards (sealed, handed over), `*` keeps the hash a
        // hash table; every other field is a buyer.
        let markers = [SEAL, HANDED_OVER, TABLE_MARK];
        for (user, record) in fields
            .iter()
            .filter(|(f, _)| !markers.contains(&f.as_str()))
        {
            findings.extend(check(index, user, record, recorded));
        }
        if next == 0 {
            return Ok(findings);
        }
        cursor = next;
    }
}

/// The finding about one buyer's record, if any; records its order ids. A record handed
/// over to a newer layout (a tombstone) is checked like any other: the order ids it names
/// are the same as its copy's at the new home.
fn check(index: u32, user: &str, record: &str, recorded: &mut HashSet<OrderId>) -> Option<Finding> {
    let Ok((parsed, _)) = BuyerRecord::parse_stored(record) else {
        return Some(Finding::UnreadableBuyerRecord {
            shard: index,
            user_id: user.to_owned(),
        });
    };
    recorded.extend(parsed.orders.iter().map(|o| o.order_id.clone()));
    let in_orders = parsed.ordered_units();
    (parsed.held != in_orders).then(|| Finding::HeldMismatch {
        shard: index,
        user_id: user.to_owned(),
        held: parsed.held,
        in_orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_count_that_disagrees_with_the_orders_is_a_finding() {
        let mut recorded = HashSet::new();
        assert_eq!(check(0, "u", "1\nk s.0.1-0 1 fp", &mut recorded), None);
        assert_eq!(
            check(2, "v", "4\nk s.2.1-0 1 fp", &mut recorded),
            Some(Finding::HeldMismatch {
                shard: 2,
                user_id: "v".into(),
                held: 4,
                in_orders: 1
            })
        );
        assert_eq!(
            recorded,
            HashSet::from(["s.0.1-0", "s.2.1-0"].map(|id| OrderId::parse(id).unwrap()))
        );
    }
}
