//! The purchase call: `purchase.lua` on the buyer's home shard, alone or batched, and the
//! decoding of its replies. The one Redis call of the purchase path.

use std::sync::Arc;

use redis::Value;

use super::loans::Loan;
use super::{Durability, RedisConn, ShardKeys, StoreError, scripts};
use crate::domain::{IdempotencyKey, SaleId, TokenId, UserId};

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
    /// The shard is sealed, or the buyer's record was handed over: the sale has a newer
    /// layout than the caller used.
    Moved,
    /// The buyer has no record here yet and the previous layout may hold one: hand it over
    /// ([`super::migration::export_buyer`]) and call again with [`Import::Record`].
    Import,
}

/// Where a buyer's record may be, as the caller's layout says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Import {
    /// The layout is settled: no record on the home shard means a new buyer.
    Settled,
    /// A reshard is draining the previous layout and its record was not asked for yet.
    Unknown,
    /// The record the previous home handed over (`""`: the buyer had none).
    Record(String),
}

/// The inputs of one purchase in a `purchase.lua` call, owned so that it can wait in a
/// batch ([`crate::stock::batch`]).
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
    /// Where the buyer's record may be.
    pub import: Import,
}

/// A verified purchase token, spent with its purchase: its id is written on the order's
/// line of the buyer's record, so it travels with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendToken(pub TokenId);

impl Import {
    fn arg(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Settled => "".into(),
            Self::Unknown => "?".into(),
            Self::Record(record) => format!("={record}").into(),
        }
    }
}

/// Runs `purchase.lua` for one purchase, answering once the master ran it.
pub async fn purchase(
    conn: &mut RedisConn,
    call: &PurchaseCall,
) -> Result<PurchaseReply, StoreError> {
    purchase_with(conn, call, &Durability::Async).await
}

/// Runs `purchase.lua` for one purchase, answering when `durability` says.
pub async fn purchase_with(
    conn: &mut RedisConn,
    call: &PurchaseCall,
    durability: &Durability,
) -> Result<PurchaseReply, StoreError> {
    let mut replies = purchase_many_with(conn, std::slice::from_ref(call), durability).await?;
    replies
        .pop()
        .unwrap_or_else(|| Err(StoreError::unexpected("purchase.lua", &"no reply")))
}

/// Runs `purchase.lua` once for all of `calls`, in order, and answers each once the master
/// ran them. The outer error is the call's (Redis unreachable, timed out): then no reply is
/// known, and any of the purchases may or may not have run. An inner error is one
/// purchase's own. On a Redis Cluster `calls` must all use one slot, so the gateway sends
/// one at a time there.
pub async fn purchase_many(
    conn: &mut RedisConn,
    calls: &[PurchaseCall],
) -> Result<Vec<Result<PurchaseReply, StoreError>>, StoreError> {
    purchase_many_with(conn, calls, &Durability::Async).await
}

/// As [`purchase_many`], answering when `durability` says: under `replica`, after one
/// replica acknowledged the call (or the wait timed out, counted), sent on the wait's own
/// connections rather than `conn` ([`super::durability`] says why).
pub async fn purchase_many_with(
    conn: &mut RedisConn,
    calls: &[PurchaseCall],
    durability: &Durability,
) -> Result<Vec<Result<PurchaseReply, StoreError>>, StoreError> {
    let cmd = purchase_command(calls);
    let (reply, wait): (Value, _) = match durability {
        Durability::Async => (scripts::run(&scripts::PURCHASE, &cmd, conn).await?, None),
        Durability::Replica(wait) => {
            let (reply, acknowledged) = wait.run(&scripts::PURCHASE, &cmd).await?;
            (reply, Some((wait, acknowledged)))
        }
    };
    let replies = decode_replies(&reply, calls.len())
        .ok_or_else(|| StoreError::unexpected("purchase.lua", &reply))?;
    if let Some((wait, acknowledged)) = wait {
        let accepted = replies
            .iter()
            .any(|reply| matches!(reply, Ok(PurchaseReply::Accepted { .. })));
        wait.record(acknowledged, accepted);
    }
    Ok(replies)
}

/// The `EVALSHA` of `purchase.lua` for `calls`.
fn purchase_command(calls: &[PurchaseCall]) -> redis::Cmd {
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
            .arg(call.token.map(|t| t.0.to_hex()).unwrap_or_default())
            .arg(call.import.arg().as_ref())
            .arg(call.credits.len());
        for loan in &call.credits {
            cmd.arg(&loan.id).arg(loan.units);
        }
    }
    cmd
}

/// The replies of a call of `count` purchases: `purchase.lua` answers one string, a line
/// per purchase. `None` if it is not that.
fn decode_replies(reply: &Value, count: usize) -> Option<Vec<Result<PurchaseReply, StoreError>>> {
    let Value::BulkString(text) = reply else {
        return None;
    };
    let replies: Vec<_> = text.split(|&b| b == b'\n').map(decode_line).collect();
    (replies.len() == count).then_some(replies)
}

/// One purchase's reply line.
fn decode_line(line: &[u8]) -> Result<PurchaseReply, StoreError> {
    if let Some(message) = line.strip_prefix(b"error ") {
        return Err(command_failed(&String::from_utf8_lossy(message)));
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(decode_fields)
        .ok_or_else(|| StoreError::unexpected("purchase.lua", &String::from_utf8_lossy(line)))
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

/// A reply line other than an error: its kind, then its fields, separated by spaces.
fn decode_fields(line: &str) -> Option<PurchaseReply> {
    let mut fields = line.split(' ');
    let kind = fields.next()?;
    let mut next = || fields.next();
    let reply = match kind {
        "ok" => PurchaseReply::Accepted {
            entry_id: next()?.to_owned(),
            stock_left: next()?.parse().ok()?,
        },
        "replay" => PurchaseReply::Replay {
            order_id: next()?.to_owned(),
            quantity: next()?.parse().ok()?,
        },
        "conflict" => PurchaseReply::Conflict,
        "used" => PurchaseReply::TokenUsed,
        "limit" => PurchaseReply::Limit {
            held: next()?.parse().ok()?,
        },
        "short" => PurchaseReply::Short {
            stock: next()?.parse().ok()?,
        },
        "moved" => PurchaseReply::Moved,
        "import" => PurchaseReply::Import,
        _ => return None,
    };
    // Exactly the fields of its kind: anything more is not a reply this code understands.
    fields.next().is_none().then_some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn purchase_replies_decode() {
        assert_eq!(
            decode_fields("ok 1-0 7"),
            Some(PurchaseReply::Accepted {
                entry_id: "1-0".into(),
                stock_left: 7,
            })
        );
        assert_eq!(
            decode_fields("replay s.3.1-0 2"),
            Some(PurchaseReply::Replay {
                order_id: "s.3.1-0".into(),
                quantity: 2,
            })
        );
        assert_eq!(
            decode_fields("short 0"),
            Some(PurchaseReply::Short { stock: 0 })
        );
        assert_eq!(decode_fields("conflict"), Some(PurchaseReply::Conflict));
        assert_eq!(
            decode_fields("limit 2"),
            Some(PurchaseReply::Limit { held: 2 })
        );
        assert_eq!(decode_fields("moved"), Some(PurchaseReply::Moved));
        assert_eq!(decode_fields("import"), Some(PurchaseReply::Import));
    }

    #[test]
    fn unknown_or_truncated_replies_are_rejected() {
        assert_eq!(decode_fields(""), None);
        assert_eq!(decode_fields("ok"), None);
        assert_eq!(decode_fields("ok 1-0"), None);
        assert_eq!(decode_fields("ok 1-0 7 8"), None);
        assert_eq!(decode_fields("maybe"), None);
        assert_eq!(decode_fields("short -1"), None);
        assert_eq!(decode_fields("limit 99999999999"), None);
    }

    #[test]
    fn a_call_answers_one_line_per_purchase_in_order() {
        let replies = decode_replies(&bulk("ok 1-0 7\nused\nshort 3"), 3).unwrap();
        assert!(matches!(replies[0], Ok(PurchaseReply::Accepted { .. })));
        assert!(matches!(replies[1], Ok(PurchaseReply::TokenUsed)));
        assert!(matches!(replies[2], Ok(PurchaseReply::Short { stock: 3 })));
        // A reply of another count, or of another shape, is not this call's.
        assert!(decode_replies(&bulk("ok 1-0 7\nused"), 3).is_none());
        assert!(decode_replies(&Value::Int(1), 1).is_none());
        assert!(decode_replies(&Value::Array(vec![bulk("ok 1-0 7")]), 1).is_none());
    }

    #[test]
    fn each_purchase_of_a_call_keeps_its_own_error() {
        let replies = decode_replies(
            &bulk(
                "error WRONGTYPE Operation against a key holding the wrong kind of value\nok 2-0 1",
            ),
            2,
        )
        .unwrap();
        let Err(StoreError::Redis(err)) = &replies[0] else {
            panic!("a failed purchase decoded as a reply")
        };
        assert_eq!(err.code(), Some("WRONGTYPE"));
        assert!(matches!(replies[1], Ok(PurchaseReply::Accepted { .. })));
        // Whatever the message holds, it stays one error.
        assert!(matches!(
            decode_line(b"error user_script:1: bad thing"),
            Err(StoreError::Redis(_))
        ));
        assert!(matches!(
            decode_line(b"nonsense"),
            Err(StoreError::UnexpectedReply { .. })
        ));
    }
}
