//! Giving a cancelled or expired order's units back to its sale: `return_units.lua` on the
//! buyer's home shard, at most once per order (the script's marker in the buyer's record).

use redis::Value;
use redis::aio::ConnectionLike;

use super::{ShardKeys, StoreError, scripts};
use crate::domain::{OrderId, Quantity, UserId};

/// What `return_units.lua` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnOutcome {
    /// The units are back on the shard's shelf, which now holds `stock`.
    Returned { stock: u64 },
    /// An earlier run returned them.
    Already,
    /// The shard is sealed or the buyer's record moved to a newer layout.
    Moved,
    /// The buyer has no record on this shard.
    Absent,
    /// The buyer's record names no such order.
    Unknown,
}

/// Runs `return_units.lua` for `order` of `user` on `home`, the buyer's home shard.
pub async fn return_units(
    conn: &mut impl ConnectionLike,
    home: &ShardKeys,
    user: &UserId,
    order: &OrderId,
    quantity: Quantity,
) -> Result<ReturnOutcome, StoreError> {
    let mut cmd = scripts::evalsha(&scripts::RETURN_UNITS, 2);
    cmd.arg(&home.shard)
        .arg(&home.buyers)
        .arg(user.as_str())
        .arg(order.to_string())
        .arg(quantity.get());
    let reply: Vec<Value> = scripts::run(&scripts::RETURN_UNITS, &cmd, conn).await?;
    let unexpected = || StoreError::unexpected("return_units.lua", &reply);
    let tag = match reply.first() {
        Some(Value::BulkString(tag)) => tag.as_slice(),
        _ => return Err(unexpected()),
    };
    Ok(match (tag, reply.get(1)) {
        (b"returned", Some(Value::Int(stock))) => ReturnOutcome::Returned {
            stock: u64::try_from(*stock).map_err(|_| unexpected())?,
        },
        (b"already", None) => ReturnOutcome::Already,
        (b"moved", None) => ReturnOutcome::Moved,
        (b"absent", None) => ReturnOutcome::Absent,
        (b"unknown", None) => ReturnOutcome::Unknown,
        _ => return Err(unexpected()),
    })
}

/// Units given back to shard `keys` by cancelled and expired orders (its `returned` field).
pub async fn returned_units(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
) -> Result<u64, StoreError> {
    let units: Option<u64> = redis::cmd("HGET")
        .arg(&keys.shard)
        .arg("returned")
        .query_async(conn)
        .await?;
    Ok(units.unwrap_or(0))
}
