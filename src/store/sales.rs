//! Sale definitions in Redis: the sale hash (`def`, `paused`, `epoch`), the set of sale ids,
//! and the shard hashes an operator's change creates or deletes.

use redis::aio::ConnectionLike;

use super::{Keys, StoreError};
use crate::domain::{SaleDefinition, SaleId, SaleSpec};

/// A sale's record in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSale {
    pub spec: SaleSpec,
    /// The operator's kill switch.
    pub paused: bool,
    /// Bumped by every operator change.
    pub epoch: u64,
}

/// The record of sale `id`, if it exists.
pub async fn load(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<Option<StoredSale>, StoreError> {
    let (def, paused, epoch): (Option<String>, Option<String>, Option<u64>) = redis::cmd("HMGET")
        .arg(keys.sale_meta(id))
        .arg(&["def", "paused", "epoch"])
        .query_async(conn)
        .await?;
    let Some(def) = def else { return Ok(None) };
    let def: SaleDefinition = serde_json::from_str(&def).map_err(|source| StoreError::Corrupt {
        what: "sale definition",
        source: source.into(),
    })?;
    let spec = SaleSpec::try_from(def)
        .map_err(|e| StoreError::unexpected("stored sale definition", &e.to_string()))?;
    Ok(Some(StoredSale {
        spec,
        paused: paused.as_deref() == Some("1"),
        epoch: epoch.unwrap_or(0),
    }))
}

/// The epoch of sale `id` (`None`: no such sale).
pub async fn epoch(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<Option<u64>, StoreError> {
    Ok(redis::cmd("HGET")
        .arg(keys.sale_meta(id))
        .arg("epoch")
        .query_async(conn)
        .await?)
}

/// Every sale id stored, sorted (ids that do not parse are left out).
pub async fn ids(conn: &mut impl ConnectionLike, keys: &Keys) -> Result<Vec<SaleId>, StoreError> {
    let ids: Vec<String> = redis::cmd("SMEMBERS")
        .arg(keys.sale_index())
        .query_async(conn)
        .await?;
    let mut ids: Vec<SaleId> = ids.iter().filter_map(|s| SaleId::parse(s).ok()).collect();
    ids.sort();
    Ok(ids)
}

/// Deletes every key of the first `shards` shards of sale `id`.
pub async fn delete_shards(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    shards: u32,
) -> Result<(), StoreError> {
    for shard in 0..shards {
        let keys = keys.shard(id, shard);
        for key in keys.all() {
            redis::cmd("DEL").arg(key).query_async::<()>(conn).await?;
        }
    }
    Ok(())
}

/// Sets up the shards of sale `id`, shard `i` holding `units[i]` units.
pub async fn init_shards(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    units: &[u64],
) -> Result<(), StoreError> {
    for (shard, &units) in (0..).zip(units) {
        let key = keys.shard(id, shard).shard;
        redis::cmd("HSET")
            .arg(&key)
            .arg(&[
                ("stock", units),
                ("lent", 0),
                ("allotted", units),
                ("received", 0),
                ("given", 0),
                ("acked", 0),
            ])
            .query_async::<()>(conn)
            .await?;
        redis::cmd("HINCRBY")
            .arg(&key)
            .arg("ver")
            .arg(1)
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Writes the definition, clears the kill switch, bumps the epoch and indexes the sale.
/// Returns the new epoch.
pub async fn write_meta(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    spec: &SaleSpec,
) -> Result<u64, StoreError> {
    let meta = keys.sale_meta(id);
    let def = serde_json::to_string(spec.definition()).map_err(|source| StoreError::Corrupt {
        what: "sale definition",
        source: source.into(),
    })?;
    redis::cmd("HSET")
        .arg(&meta)
        .arg(&[("def", def.as_str()), ("paused", "0")])
        .query_async::<()>(conn)
        .await?;
    let epoch: u64 = redis::cmd("HINCRBY")
        .arg(&meta)
        .arg("epoch")
        .arg(1)
        .query_async(conn)
        .await?;
    redis::cmd("SADD")
        .arg(keys.sale_index())
        .arg(id.as_str())
        .query_async::<()>(conn)
        .await?;
    Ok(epoch)
}

/// A field of a sale's record that an operator's change sets.
#[derive(Debug, Clone, Copy)]
pub enum SaleField<'a> {
    /// The kill switch.
    Paused(bool),
    /// The definition (e.g. with `ends_at` moved to now).
    Definition(&'a SaleSpec),
}

/// What [`change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    /// The record was changed; its new epoch.
    Applied { epoch: u64 },
    /// No such sale.
    Missing,
    /// The record's epoch is no longer the one the change was computed from.
    Stale,
}

/// Sets `field` of sale `id` and bumps its epoch, in one atomic step, if the record's epoch
/// is still `from_epoch` (`lua/change_sale.lua`).
pub async fn change(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    from_epoch: u64,
    field: SaleField<'_>,
) -> Result<ChangeOutcome, StoreError> {
    let (name, value) = match field {
        SaleField::Paused(paused) => ("paused", if paused { "1" } else { "0" }.to_owned()),
        SaleField::Definition(spec) => (
            "def",
            serde_json::to_string(spec.definition()).map_err(|source| StoreError::Corrupt {
                what: "sale definition",
                source: source.into(),
            })?,
        ),
    };
    let script = &super::scripts::CHANGE_SALE;
    let mut cmd = super::scripts::evalsha(script, 1);
    cmd.arg(keys.sale_meta(id))
        .arg(from_epoch)
        .arg(name)
        .arg(value);
    let reply: i64 = super::scripts::run(script, &cmd, conn).await?;
    match reply {
        0 => Ok(ChangeOutcome::Missing),
        -1 => Ok(ChangeOutcome::Stale),
        epoch => u64::try_from(epoch)
            .map(|epoch| ChangeOutcome::Applied { epoch })
            .map_err(|_| StoreError::unexpected("change_sale.lua", &reply)),
    }
}
