//! What reconciliation can find wrong, one typed finding per breach, and the checks that
//! need only the shards' ledgers.

use serde::Serialize;

use super::shard::ShardLedger;

/// One thing that does not hold between Redis and the database.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The shards' allotted units do not sum to the sale's stock.
    AllotmentMismatch { allotted: u64, stock_total: u64 },
    /// More units sold than the sale has.
    Oversold { sold: u64, stock_total: u64 },
    /// A shard's units deducted are not all rows, pending orders, dead letters or dropped.
    Difference { shard: u32, difference: i64 },
    /// A shard's `lent` differs from the units of its loan records.
    LentWithoutLoans { shard: u32, lent: u64, on_loan: u64 },
    /// A buyer's held count differs from the units of the orders in their record.
    HeldMismatch {
        shard: u32,
        user_id: String,
        held: u64,
        in_orders: u64,
    },
    /// A buyer's record cannot be read.
    UnreadableBuyerRecord { shard: u32, user_id: String },
    /// A row whose order id is in no buyer record of its sale.
    UnrecordedRow { order_id: String },
    /// Further unrecorded rows, beyond those listed one by one.
    MoreUnrecordedRows { count: u64 },
    /// Orders the database refused, waiting for an operator (`/admin/v1/dead-letters`).
    DeadLetters { shard: u32, count: u64 },
    /// Units of cancelled or expired orders not back on the sale's shelves yet (the return
    /// outbox drives them; lasting only while a return is in flight or Redis is down).
    ReturnsDue { units: u64 },
    /// Units given back according to Redis differ from those the database marks returned
    /// (a return between its Redis step and its row's mark, or a unit returned twice).
    ReturnMismatch { in_redis: u64, in_db: u64 },
}

/// The findings that follow from the shards' ledgers alone.
pub fn of_sale(stock_total: u64, shards: &[ShardLedger]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let allotted = shards.iter().map(|s| s.allotted).sum();
    if allotted != stock_total {
        findings.push(Finding::AllotmentMismatch {
            allotted,
            stock_total,
        });
    }
    let sum = |f: fn(&ShardLedger) -> u64| shards.iter().map(f).sum::<u64>();
    // Units sold and not given back: the returned ones were sold again, or are on a shelf.
    let sold = sum(|s| s.deducted).saturating_sub(sum(|s| s.returned_units));
    if sold > stock_total {
        findings.push(Finding::Oversold { sold, stock_total });
    }
    let (settled_unpaid, in_db, in_redis) = (
        sum(|s| s.settled_unpaid_units),
        sum(|s| s.returned_in_db),
        sum(|s| s.returned_units),
    );
    if settled_unpaid > in_db {
        findings.push(Finding::ReturnsDue {
            units: settled_unpaid - in_db,
        });
    }
    if in_redis != in_db {
        findings.push(Finding::ReturnMismatch { in_redis, in_db });
    }
    for s in shards {
        if s.difference != 0 {
            findings.push(Finding::Difference {
                shard: s.shard,
                difference: s.difference,
            });
        }
        if s.lent != s.on_loan {
            findings.push(Finding::LentWithoutLoans {
                shard: s.shard,
                lent: s.lent,
                on_loan: s.on_loan,
            });
        }
        if s.dead_letters > 0 {
            findings.push(Finding::DeadLetters {
                shard: s.shard,
                count: s.dead_letters,
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(shard: u32, allotted: u64, deducted: u64) -> ShardLedger {
        ShardLedger {
            shard,
            allotted,
            deducted,
            ..ShardLedger::default()
        }
    }

    #[test]
    fn a_consistent_sale_has_no_findings() {
        assert_eq!(of_sale(10, &[shard(0, 5, 5), shard(1, 5, 0)]), []);
    }

    #[test]
    fn returned_units_are_sold_again_without_overselling() {
        let mut resold = shard(0, 10, 12);
        resold.returned_units = 2;
        resold.settled_unpaid_units = 2;
        resold.returned_in_db = 2;
        assert_eq!(of_sale(10, &[resold.clone()]), []);
        resold.returned_in_db = 1;
        assert_eq!(
            of_sale(10, &[resold]),
            [
                Finding::ReturnsDue { units: 1 },
                Finding::ReturnMismatch {
                    in_redis: 2,
                    in_db: 1
                }
            ]
        );
    }

    #[test]
    fn each_breach_is_its_own_finding() {
        let mut odd = shard(1, 7, 9);
        odd.difference = 2;
        odd.lent = 3;
        odd.dead_letters = 1;
        let findings = of_sale(10, &[shard(0, 5, 5), odd]);
        assert_eq!(
            findings,
            [
                Finding::AllotmentMismatch {
                    allotted: 12,
                    stock_total: 10
                },
                Finding::Oversold {
                    sold: 14,
                    stock_total: 10
                },
                Finding::Difference {
                    shard: 1,
                    difference: 2
                },
                Finding::LentWithoutLoans {
                    shard: 1,
                    lent: 3,
                    on_loan: 0
                },
                Finding::DeadLetters { shard: 1, count: 1 },
            ]
        );
        let json = serde_json::to_value(&findings[3]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "lent_without_loans", "shard": 1, "lent": 3, "on_loan": 0})
        );
    }
}
