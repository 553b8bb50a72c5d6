//! The buyers' side of reconciliation: every buyer record of a shard, read with `HSCAN`.
//! A record is `<held>` then one line `\n<idempotency key> <order id> <quantity>
//! <fingerprint>` per accepted order (`lua/purchase.lua`), so `held` must equal the sum of
//! the lines' quantities, and the lines name every order Redis ever accepted for the sale.

use std::collections::HashSet;

use super::{Finding, ReconcileError};
use crate::store::{BulkConn, ShardKeys, shards};

/// Fields read per `HSCAN`.
const PAGE: usize = 1000;

/// A buyer record, parsed.
#[derive(Debug, PartialEq, Eq)]
struct BuyerRecord<'a> {
    held: u64,
    /// (order id, quantity) per accepted order.
    orders: Vec<(&'a str, u64)>,
}

/// Checks every buyer record of shard `index` (keys `keys`), adding each order id it names
/// to `recorded`; returns the findings.
pub async fn scan(
    conn: &mut BulkConn,
    keys: &ShardKeys,
    index: u32,
    recorded: &mut HashSet<String>,
) -> Result<Vec<Finding>, ReconcileError> {
    let mut findings = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, fields) = shards::scan_buyer_records(conn, keys, cursor, PAGE).await?;
        // `#<token id>` fields mark spent purchase tokens; every other field is a buyer.
        for (user, record) in fields.iter().filter(|(field, _)| !field.starts_with('#')) {
            findings.extend(check(index, user, record, recorded));
        }
        if next == 0 {
            return Ok(findings);
        }
        cursor = next;
    }
}

/// The finding about one buyer's record, if any; records its order ids.
fn check(index: u32, user: &str, record: &str, recorded: &mut HashSet<String>) -> Option<Finding> {
    let Some(parsed) = parse(record) else {
        return Some(Finding::UnreadableBuyerRecord {
            shard: index,
            user_id: user.to_owned(),
        });
    };
    recorded.extend(parsed.orders.iter().map(|(id, _)| (*id).to_owned()));
    let in_orders = parsed.orders.iter().map(|(_, q)| q).sum();
    (parsed.held != in_orders).then(|| Finding::HeldMismatch {
        shard: index,
        user_id: user.to_owned(),
        held: parsed.held,
        in_orders,
    })
}

fn parse(record: &str) -> Option<BuyerRecord<'_>> {
    let mut lines = record.split('\n');
    let held = lines.next()?.parse().ok()?;
    let orders = lines
        .map(
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                [_key, order, quantity, _fingerprint] => Some((*order, quantity.parse().ok()?)),
                _ => None,
            },
        )
        .collect::<Option<_>>()?;
    Some(BuyerRecord { held, orders })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_into_held_and_orders() {
        let record = "3\nk1 s.0.1-0 1 fp1\nk2 s.0.2-0 2 fp2";
        assert_eq!(
            parse(record),
            Some(BuyerRecord {
                held: 3,
                orders: vec![("s.0.1-0", 1), ("s.0.2-0", 2)],
            })
        );
        assert_eq!(parse("0").map(|r| r.orders.len()), Some(0));
        assert_eq!(parse("x\nk s.0.1-0 1 fp"), None);
        assert_eq!(parse("1\nk s.0.1-0 one fp"), None);
        assert_eq!(parse("1\nk s.0.1-0 1"), None);
    }

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
            HashSet::from(["s.0.1-0".to_owned(), "s.2.1-0".to_owned()])
        );
    }
}
