//! The calls of an operator's change to a live sale: sealing a draining shard, handing
//! buyers' records over to their new homes (`export_buyer.lua`, then `import_buyers.lua`),
//! marking the new homes once every record is there, and adding or removing units once per
//! change (`stock_change.lua`).

use redis::aio::ConnectionLike;

use super::{ShardKeys, StoreError, scripts};
use crate::domain::UserId;

/// The field of a buyer hash whose presence seals the shard (`lua/purchase.lua`).
pub const SEAL: &str = "!";
/// The field of a buyer hash whose presence says every record of the draining layout was
/// handed over: a buyer without a record there has none anywhere (`lua/purchase.lua`).
pub const HANDED_OVER: &str = "?";
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
    let mut records = export_buyers(conn, old_home, &[user]).await?;
    records
        .pop()
        .ok_or_else(|| StoreError::unexpected("export_buyer.lua", &"no record"))
}

/// [`export_buyer`] for a page of buyers of one shard, in one call: their records, in order.
pub async fn export_buyers(
    conn: &mut impl ConnectionLike,
    old_home: &ShardKeys,
    users: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut cmd = scripts::evalsha(&scripts::EXPORT_BUYER, 1);
    cmd.arg(&old_home.buyers).arg(users);
    let records: Vec<String> = scripts::run(&scripts::EXPORT_BUYER, &cmd, conn).await?;
    if records.len() != users.len() {
        return Err(StoreError::unexpected("export_buyer.lua", &records.len()));
    }
    Ok(records)
}

/// Writes handed-over `records` (user, record) at their new home, each unless a record is
/// there already (a purchase there imported it first, and may have added to it since).
pub async fn import_buyers(
    conn: &mut impl ConnectionLike,
    new_home: &ShardKeys,
    records: &[(UserId, String)],
) -> Result<(), StoreError> {
    let mut cmd = scripts::evalsha(&scripts::IMPORT_BUYERS, 1);
    cmd.arg(&new_home.buyers);
    let mut any = false;
    for (user, record) in records.iter().filter(|(_, r)| !r.is_empty()) {
        cmd.arg(user.as_str()).arg(record);
        any = true;
    }
    if any {
        scripts::run::<i64>(&scripts::IMPORT_BUYERS, &cmd, conn).await?;
    }
    Ok(())
}

/// Marks a new home: every record of the draining layout was handed over.
pub async fn mark_handed_over(
    conn: &mut impl ConnectionLike,
    new_home: &ShardKeys,
) -> Result<(), StoreError> {
    redis::cmd("HSET")
        .arg(&new_home.buyers)
        .arg(HANDED_OVER)
        .arg(1)
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
