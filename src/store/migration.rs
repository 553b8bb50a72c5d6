//! The calls of an operator's change to a live sale: sealing a draining shard, handing a
//! buyer's record over to their new home (`export_buyer.lua`, then `HSETNX`), and adding
//! or removing units once per change (`stock_change.lua`).

use redis::aio::ConnectionLike;

use super::{ShardKeys, StoreError, scripts};
use crate::domain::UserId;

/// The field of a buyer hash whose presence seals the shard (`lua/purchase.lua`).
pub const SEAL: &str = "!";
/// The first byte of a record that was handed over.
pub const TOMBSTONE: char = '>';

/// Seals a shard of a draining layout: from now on `purchase.lua` answers `moved` to every
/// purchase there, so no record of it changes except by being handed over.
pub async fn seal(conn: &mut impl ConnectionLike, keys: &ShardKeys) -> Result<(), StoreError> {
    redis::cmd("HSET")
        .arg(&keys.buyers)
        .arg(SEAL)
        .arg(1)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Hands `user`'s record over from their home in a draining layout, leaving a tombstone;
/// returns the record (`""`: none). Every run for the same buyer answers the same text.
pub async fn export_buyer(
    conn: &mut impl ConnectionLike,
    old_home: &ShardKeys,
    user: &str,
) -> Result<String, StoreError> {
    let mut cmd = scripts::evalsha(&scripts::EXPORT_BUYER, 1);
    cmd.arg(&old_home.buyers).arg(user);
    Ok(scripts::run(&scripts::EXPORT_BUYER, &cmd, conn).await?)
}

/// Writes a handed-over `record` at the buyer's new home unless one is there already (a
/// purchase there imported it first, and may have added to it since).
pub async fn import_buyer(
    conn: &mut impl ConnectionLike,
    new_home: &ShardKeys,
    user: &UserId,
    record: &str,
) -> Result<(), StoreError> {
    if record.is_empty() {
        return Ok(());
    }
    redis::cmd("HSETNX")
        .arg(&new_home.buyers)
        .arg(user.as_str())
        .arg(record)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Adds `delta` units to a shard (`delta < 0`: removes up to `-delta` unsold units) as
/// part of change `change_id`, once however often it runs; returns the units it moved.
pub async fn change_stock(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    change_id: &str,
    delta: i64,
) -> Result<i64, StoreError> {
    let mut cmd = scripts::evalsha(&scripts::STOCK_CHANGE, 1);
    cmd.arg(&keys.shard).arg(change_id).arg(delta);
    Ok(scripts::run(&scripts::STOCK_CHANGE, &cmd, conn).await?)
}

/// Deletes a drained shard's buyer hash (its tombstones and seal).
pub async fn delete_buyers(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
) -> Result<(), StoreError> {
    redis::cmd("DEL")
        .arg(&keys.buyers)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}
