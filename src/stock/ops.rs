//! One function per Redis call the stock engine makes, each decoding its reply into a type.
//! Every call here is exactly one round trip to the node owning one shard's slot.

use redis::Value;

use crate::domain::{SaleId, UserId};
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

/// The inputs of one `purchase.lua` call.
#[derive(Debug)]
pub struct PurchaseCall<'a> {
    pub user: &'a UserId,
    pub quantity: u32,
    pub limit: u32,
    pub idem_field: &'a str,
    pub fingerprint: &'a str,
    pub sale: &'a SaleId,
    pub now_ms: i64,
    pub shard: u32,
    pub credits: &'a [Loan],
    /// The purchase token to spend with this purchase, if any.
    pub token: Option<SpendToken>,
}

/// A verified purchase token, spent (recorded in the buyer's idem hash) with its purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendToken(pub TokenId);

impl SpendToken {
    /// The token's field in the idem hash: `#` and the id (no user id contains `#`, so it
    /// never meets an idempotency field).
    fn field(self) -> String {
        format!("#{}", self.0.to_hex())
    }
}

/// Runs `purchase.lua` on the buyer's home shard.
pub async fn purchase(
    conn: &mut RedisConn,
    keys: &ShardKeys,
    call: &PurchaseCall<'_>,
) -> Result<PurchaseReply, StoreError> {
    let mut inv = scripts::PURCHASE.prepare_invoke();
    inv.key(&keys.shard)
        .key(&keys.held)
        .key(&keys.idem)
        .key(&keys.orders)
        .key(&keys.credited);
    inv.arg(call.user.as_str())
        .arg(call.quantity)
        .arg(call.limit)
        .arg(call.idem_field)
        .arg(call.fingerprint)
        .arg(call.now_ms)
        .arg(call.sale.as_str())
        .arg(call.shard)
        .arg(call.token.map(SpendToken::field).unwrap_or_default())
        .arg(call.credits.len());
    for loan in call.credits {
        inv.arg(&loan.id).arg(loan.units);
    }
    let reply: Vec<Value> = inv.invoke_async(conn).await?;
    decode_purchase(&reply).ok_or_else(|| StoreError::unexpected("purchase.lua", &reply))
}

fn decode_purchase(reply: &[Value]) -> Option<PurchaseReply> {
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

/// Runs `borrow.lua` on `donor_keys`: lends up to `want` units to shard `recipient`.
pub async fn borrow(
    conn: &mut RedisConn,
    donor_keys: &ShardKeys,
    loan_id: &str,
    want: u64,
    recipient: u32,
    now_ms: i64,
) -> Result<BorrowReply, StoreError> {
    let reply: (i64, i64, i64) = scripts::BORROW
        .key(&donor_keys.shard)
        .key(&donor_keys.loans)
        .arg(loan_id)
        .arg(want)
        .arg(recipient)
        .arg(now_ms)
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

/// Runs `ack.lua`: forgets `orders` (stream entry id, quantity) of one shard, which must
/// already be database rows. Returns how many were still in the stream.
pub async fn ack(
    conn: &mut RedisConn,
    keys: &ShardKeys,
    orders: &[(String, u32)],
) -> Result<u64, StoreError> {
    let mut inv = scripts::ACK.prepare_invoke();
    inv.key(&keys.shard).key(&keys.orders);
    for (entry, quantity) in orders {
        inv.arg(entry).arg(*quantity);
    }
    Ok(inv.invoke_async(conn).await?)
}

/// The counters of one shard, read in one `HMGET`.
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
    /// Version, bumped by every change of `stock` or `lent`.
    pub ver: u64,
}

/// Reads a shard's counters (missing fields read as 0).
pub async fn read_counters(
    conn: &mut RedisConn,
    keys: &ShardKeys,
) -> Result<ShardCounters, StoreError> {
    let values: Vec<Option<i64>> = redis::cmd("HMGET")
        .arg(&keys.shard)
        .arg(&["stock", "lent", "sold", "pending_units", "ver"])
        .query_async(conn)
        .await?;
    let fields: Option<Vec<u64>> = values
        .iter()
        .map(|v| u64::try_from(v.unwrap_or(0)).ok())
        .collect();
    match fields.as_deref() {
        Some(&[stock, lent, sold, pending_units, ver]) => Ok(ShardCounters {
            stock,
            lent,
            sold,
            pending_units,
            ver,
        }),
        _ => Err(StoreError::unexpected("shard counters", &values)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn purchase_replies_decode() {
        let ok = [bulk("ok"), bulk("1-0"), Value::Int(7)];
        assert_eq!(
            decode_purchase(&ok),
            Some(PurchaseReply::Accepted {
                entry_id: "1-0".into(),
                stock_left: 7,
            })
        );
        assert_eq!(
            decode_purchase(&[bulk("short"), Value::Int(0)]),
            Some(PurchaseReply::Short { stock: 0 })
        );
        assert_eq!(
            decode_purchase(&[bulk("conflict")]),
            Some(PurchaseReply::Conflict)
        );
        assert_eq!(
            decode_purchase(&[bulk("limit"), Value::Int(2)]),
            Some(PurchaseReply::Limit { held: 2 })
        );
    }

    #[test]
    fn unknown_or_truncated_replies_are_rejected() {
        assert_eq!(decode_purchase(&[]), None);
        assert_eq!(decode_purchase(&[bulk("ok")]), None);
        assert_eq!(decode_purchase(&[bulk("maybe")]), None);
        assert_eq!(decode_purchase(&[bulk("short"), Value::Int(-1)]), None);
    }
}
