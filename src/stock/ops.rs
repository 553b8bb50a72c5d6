//! One function per Redis call the stock engine makes, each decoding its reply into a type.
//! Every call here is exactly one round trip: to the node owning one shard's slot, or, for
//! the calls that cover several shards (a batch of purchases, acks), to a single node.

use std::collections::BTreeMap;
use std::sync::Arc;

use redis::Value;

use super::record::BuyerRecord;
use crate::domain::{IdempotencyKey, SaleId, UserId};
use crate::store::{RedisConn, ShardKeys, StoreError, scripts};
use crate::tokens::TokenId;

/// A loan of stock from a donor shard, to be credited to the borrower's home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    /// Unique loan id.
    pub id: String,
    /// The shard that lent the units.
    pub donor: u32,
    /// Units lent.
    pub units: u64,
}

/// What `purchase.lua` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseReply {
    /// Stock taken; the order is in the shard's stream as `entry_id`.
    Accepted { entry_id: String, stock_left: u64 },
    /// The same key and body were accepted before.
    Replay { order_id: String, quantity: u32 },
    /// The same key came with another body.
    Conflict,
    /// The purchase token was spent on an earlier purchase.
    TokenUsed,
    /// The buyer already holds `held` units; this order would exceed the limit.
    Limit { held: u32 },
    /// The shard holds only `stock` units, fewer than asked.
    Short { stock: u64 },
}

/// The inputs of one purchase in a `purchase.lua` call, owned so that it can wait in a
/// batch ([`super::batch`]).
#[derive(Debug, Clone)]
pub struct PurchaseCall {
    /// The keys of the buyer's home shard, where the purchase runs.
    pub keys: Arc<ShardKeys>,
    pub user: UserId,
    pub quantity: u32,
    pub limit: u32,
    pub idem_key: IdempotencyKey,
    pub fingerprint: String,
    pub sale: SaleId,
    pub now_ms: i64,
    pub shard: u32,
    pub credits: Vec<Loan>,
    /// The purchase token to spend with this purchase, if any.
    pub token: Option<SpendToken>,
}

/// A verified purchase token, spent (recorded in the buyer hash) with its purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendToken(pub TokenId);

impl SpendToken {
    /// The token's field in the buyer hash: `#` and the id (no user id contains `#`, so it
    /// never meets a buyer's field).
    fn field(self) -> String {
        format!("#{}", self.0.to_hex())
    }
}

/// Runs `purchase.lua` for one purchase.
pub async fn purchase(
    conn: &mut RedisConn,
    call: &PurchaseCall,
) -> Result<PurchaseReply, StoreError> {
    let mut replies = purchase_many(conn, std::slice::from_ref(call)).await?;
    replies
        .pop()
        .unwrap_or_else(|| Err(StoreError::unexpected("purchase.lua", &"no reply")))
}

/// Runs `purchase.lua` once for all of `calls`, in order, and answers each. The outer error
/// is the call's (Redis unreachable, timed out): then no reply is known, and any of the
/// purchases may or may not have run. An inner error is one purchase's own. On a Redis
/// Cluster `calls` must all use one slot, so the gateway sends one at a time there.
pub async fn purchase_many(
    conn: &mut RedisConn,
    calls: &[PurchaseCall],
) -> Result<Vec<Result<PurchaseReply, StoreError>>, StoreError> {
    let mut cmd = scripts::evalsha(&scripts::PURCHASE, 4 * calls.len());
    for call in calls {
        let keys = &call.keys;
        cmd.arg(&keys.shard)
            .arg(&keys.buyers)
            .arg(&keys.orders)
            .arg(&keys.credited);
    }
    cmd.arg(calls.len());
    for call in calls {
        cmd.arg(call.user.as_str())
            .arg(call.quantity)
            .arg(call.limit)
            .arg(call.idem_key.as_str())
            .arg(&call.fingerprint)
            .arg(call.now_ms)
            .arg(call.sale.as_str())
            .arg(call.shard)
            .arg(call.token.map(SpendToken::field).unwrap_or_default())
            .arg(call.credits.len());
        for loan in &call.credits {
            cmd.arg(&loan.id).arg(loan.units);
        }
    }
    let replies: Vec<Value> = scripts::run(&scripts::PURCHASE, &cmd, conn).await?;
    if replies.len() != calls.len() {
        return Err(StoreError::unexpected("purchase.lua", &replies));
    }
    Ok(replies.into_iter().map(decode_purchase).collect())
}

fn decode_purchase(reply: Value) -> Result<PurchaseReply, StoreError> {
    let Value::Array(fields) = reply else {
        return Err(StoreError::unexpected("purchase.lua", &reply));
    };
    if let [kind, message] = fields.as_slice()
        && redis::from_redis_value_ref::<String>(kind).is_ok_and(|k| k == "error")
    {
        let message: String = redis::from_redis_value_ref(message)
            .map_err(|_| StoreError::unexpected("purchase.lua", &fields))?;
        return Err(command_failed(&message));
    }
    decode_fields(&fields).ok_or_else(|| StoreError::unexpected("purchase.lua", &fields))
}

/// The error of a Redis command that failed inside a script, as the Redis error it was
/// (`WRONGTYPE ...`, `OOM ...`), so that it is told apart and answered like any other.
fn command_failed(message: &str) -> StoreError {
    let line = format!("-{}\r\n", message.replace(['\r', '\n'], " "));
    match redis::parse_redis_value(line.as_bytes()) {
        Ok(Value::ServerError(err)) => StoreError::Redis(err.into()),
        _ => StoreError::unexpected("purchase.lua", &message),
    }
}

fn decode_fields(reply: &[Value]) -> Option<PurchaseReply> {
    let text = |i: usize| -> Option<String> { redis::from_redis_value_ref(reply.get(i)?).ok() };
    // Via i64: redis-rs would wrap a negative integer into a huge u64.
    let num = |i: usize| -> Option<u64> {
        let n: i64 = redis::from_redis_value_ref(reply.get(i)?).ok()?;
        u64::try_from(n).ok()
    };
    Some(match text(0)?.as_str() {
        "ok" => PurchaseReply::Accepted {
            entry_id: text(1)?,
            stock_left: num(2)?,
        },
        "replay" => PurchaseReply::Replay {
            order_id: text(1)?,
            quantity: u32::try_from(num(2)?).ok()?,
        },
        "conflict" => PurchaseReply::Conflict,
        "used" => PurchaseReply::TokenUsed,
        "limit" => PurchaseReply::Limit {
            held: u32::try_from(num(1)?).ok()?,
        },
        "short" => PurchaseReply::Short { stock: num(1)? },
        _ => return None,
    })
}

/// What `borrow.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorrowReply {
    /// Units lent now (0 if the donor was empty).
    pub taken: u64,
    /// Units the donor still holds.
    pub stock_left: u64,
}

/// Runs `borrow.lua` on `donor_keys`: lends up to `want` units to shard `recipient`. Safe to
/// run twice with the same `loan_id`: a second run (a re-send) answers the first run's reply
/// and takes nothing, for as long as the connection's [`RedisConn::replay_window_ms`].
pub async fn borrow(
    conn: &mut RedisConn,
    donor_keys: &ShardKeys,
    loan_id: &str,
    want: u64,
    recipient: u32,
    now_ms: i64,
) -> Result<BorrowReply, StoreError> {
    let keep_ms = conn.replay_window_ms();
    let reply: (i64, i64, i64) = scripts::BORROW
        .key(&donor_keys.shard)
        .key(&donor_keys.loans)
        .key(donor_keys.loan_marker(loan_id))
        .arg(loan_id)
        .arg(want)
        .arg(recipient)
        .arg(now_ms)
        .arg(keep_ms)
        .invoke_async(conn)
        .await?;
    let (Ok(taken), Ok(stock_left)) = (u64::try_from(reply.0), u64::try_from(reply.1)) else {
        return Err(StoreError::unexpected("borrow.lua", &reply));
    };
    Ok(BorrowReply { taken, stock_left })
}

/// Runs `credit.lua`: credits `loan` to the recipient shard unless it already was.
pub async fn credit(
    conn: &mut RedisConn,
    recipient_keys: &ShardKeys,
    loan_id: &str,
    units: u64,
) -> Result<bool, StoreError> {
    let credited: i64 = scripts::CREDIT
        .key(&recipient_keys.shard)
        .key(&recipient_keys.credited)
        .arg(loan_id)
        .arg(units)
        .invoke_async(conn)
        .await?;
    Ok(credited == 1)
}

/// Runs `settle.lua` on the donor: closes the loan once its units are credited.
pub async fn settle(
    conn: &mut RedisConn,
    donor_keys: &ShardKeys,
    loan_id: &str,
) -> Result<bool, StoreError> {
    let settled: i64 = scripts::SETTLE
        .key(&donor_keys.shard)
        .key(&donor_keys.loans)
        .arg(loan_id)
        .invoke_async(conn)
        .await?;
    Ok(settled == 1)
}

/// The orders of one shard to forget: its keys and (stream entry id, quantity) pairs.
#[derive(Debug, Clone)]
pub struct ShardAcks {
    pub keys: ShardKeys,
    pub orders: Vec<(String, u32)>,
}

/// Most entry ids in one `XDEL` of `ack.lua`: the script hands a group to `XDEL` with
/// Lua's `unpack`, which cannot push more than ~8,000 values, and a cluster's call carries
/// all of a batch's orders on one shard however many they are.
const XDEL_IDS: usize = 1024;

impl ShardAcks {
    /// The shard's entry ids grouped by their orders' quantity, as `ack.lua` takes them: at
    /// most [`XDEL_IDS`] ids a group (a quantity with more gets several groups).
    fn by_quantity(&self) -> Vec<(u32, Vec<&str>)> {
        let mut by_quantity: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for (entry, quantity) in &self.orders {
            by_quantity.entry(*quantity).or_default().push(entry);
        }
        by_quantity
            .into_iter()
            .flat_map(|(quantity, entries)| {
                entries
                    .chunks(XDEL_IDS)
                    .map(|group| (quantity, group.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Runs `ack.lua` once for `shards`: forgets their orders, which must already be database
/// rows. Returns how many were still in their streams. Several shards in one call only on a
/// single node (in a cluster their keys live in different slots). Each shard's orders go as
/// groups of one quantity, so Redis forgets a group with one `XDEL`.
pub async fn ack(conn: &mut RedisConn, shards: &[ShardAcks]) -> Result<u64, StoreError> {
    let groups: Vec<_> = shards.iter().map(ShardAcks::by_quantity).collect();
    let mut cmd = scripts::evalsha(&scripts::ACK, 2 * shards.len());
    for shard in shards {
        cmd.arg(&shard.keys.shard).arg(&shard.keys.orders);
    }
    for groups in &groups {
        cmd.arg(groups.len());
    }
    for (quantity, entries) in groups.iter().flatten() {
        cmd.arg(*quantity).arg(entries.len()).arg(entries);
    }
    Ok(scripts::run(&scripts::ACK, &cmd, conn).await?)
}

/// Reads `user`'s record from the buyer hash of their home shard (`None`: no order yet).
pub async fn read_buyer_record(
    conn: &mut RedisConn,
    keys: &ShardKeys,
    user: &UserId,
) -> Result<Option<BuyerRecord>, StoreError> {
    let text: Option<String> = redis::cmd("HGET")
        .arg(&keys.buyers)
        .arg(user.as_str())
        .query_async(conn)
        .await?;
    text.map(|text| {
        BuyerRecord::parse(&text).map_err(|_| StoreError::unexpected("buyer record", &text))
    })
    .transpose()
}

/// One page of the field names of a shard's buyer hash (`HSCAN`, about `count` fields):
/// the cursor to continue from (0 when done) and the names (values are dropped).
pub async fn scan_buyers(
    conn: &mut RedisConn,
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
    conn: &mut RedisConn,
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

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn acks_group_by_quantity_and_no_group_outgrows_one_xdel() {
        let sale = SaleId::parse("s").unwrap();
        let mut orders: Vec<(String, u32)> =
            (0..XDEL_IDS + 3).map(|i| (format!("{i}-0"), 1)).collect();
        orders.insert(5, ("a-0".into(), 3));
        orders.push(("b-0".into(), 2));
        let acks = ShardAcks {
            keys: crate::store::Keys::new("t").shard(&sale, 0),
            orders,
        };
        let groups = acks.by_quantity();
        let shape: Vec<(u32, usize)> = groups.iter().map(|(q, ids)| (*q, ids.len())).collect();
        assert_eq!(shape, [(1, XDEL_IDS), (1, 3), (2, 1), (3, 1)]);
        // Every order once, under its own quantity.
        let mut seen: Vec<(String, u32)> = groups
            .iter()
            .flat_map(|(q, ids)| ids.iter().map(|id| (id.to_string(), *q)))
            .collect();
        let mut expected = acks.orders.clone();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn purchase_replies_decode() {
        let ok = [bulk("ok"), bulk("1-0"), Value::Int(7)];
        assert_eq!(
            decode_fields(&ok),
            Some(PurchaseReply::Accepted {
                entry_id: "1-0".into(),
                stock_left: 7,
            })
        );
        assert_eq!(
            decode_fields(&[bulk("short"), Value::Int(0)]),
            Some(PurchaseReply::Short { stock: 0 })
        );
        assert_eq!(
            decode_fields(&[bulk("conflict")]),
            Some(PurchaseReply::Conflict)
        );
        assert_eq!(
            decode_fields(&[bulk("limit"), Value::Int(2)]),
            Some(PurchaseReply::Limit { held: 2 })
        );
    }

    #[test]
    fn unknown_or_truncated_replies_are_rejected() {
        assert_eq!(decode_fields(&[]), None);
        assert_eq!(decode_fields(&[bulk("ok")]), None);
        assert_eq!(decode_fields(&[bulk("maybe")]), None);
        assert_eq!(decode_fields(&[bulk("short"), Value::Int(-1)]), None);
    }

    #[test]
    fn each_purchase_of_a_call_keeps_its_own_error() {
        let failed = Value::Array(vec![
            bulk("error"),
            bulk("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ]);
        let Err(StoreError::Redis(err)) = decode_purchase(failed) else {
            panic!("a failed purchase decoded as a reply")
        };
        assert_eq!(err.code(), Some("WRONGTYPE"));
        // Whatever the message holds, it stays one error.
        let odd = Value::Array(vec![bulk("error"), bulk("user_script:1: bad\r\nthing")]);
        assert!(matches!(decode_purchase(odd), Err(StoreError::Redis(_))));
        assert!(matches!(
            decode_purchase(Value::Array(vec![bulk("used")])),
            Ok(PurchaseReply::TokenUsed)
        ));
        assert!(matches!(
            decode_purchase(Value::Int(1)),
            Err(StoreError::UnexpectedReply { .. })
        ));
    }

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
