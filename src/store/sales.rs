//! Sale records in Redis: the sale hash (`def`, `paused`, `epoch`, `generation`, `layout`,
//! `op`), the set of sale ids, and the shards a change creates or deletes.
//!
//! A record changes only through [`update`] (`lua/sale_update.lua`): one atomic step that
//! checks the record is as the caller read it and bumps the epoch, so every instance sees a
//! change whole, and of two concurrent changes one wins.

use redis::aio::ConnectionLike;

use super::{Keys, StoreError, scripts};
use crate::domain::{Layout, Operation, SaleDefinition, SaleId, SaleSpec, ShardSet};

/// A sale's record in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSale {
    pub spec: SaleSpec,
    /// The operator's kill switch.
    pub paused: bool,
    /// Bumped by every change of the record.
    pub epoch: u64,
    /// Changed only when the definition is replaced: purchase tokens are bound to it, so a
    /// pause, a reshard or a top-up leaves the buyers' tokens valid.
    pub generation: u64,
    /// The shards the sale sells from.
    pub layout: Layout,
    /// A change in progress, if any.
    pub op: Option<Operation>,
}

const FIELDS: [&str; 6] = ["def", "paused", "epoch", "generation", "layout", "op"];

/// The record of sale `id`, if it exists.
pub async fn load(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<Option<StoredSale>, StoreError> {
    type Raw = (
        Option<String>,
        Option<String>,
        Option<u64>,
        Option<u64>,
        Option<String>,
        Option<String>,
    );
    let (def, paused, epoch, generation, layout, op): Raw = redis::cmd("HMGET")
        .arg(keys.sale_meta(id))
        .arg(&FIELDS)
        .query_async(conn)
        .await?;
    let Some(def) = def else { return Ok(None) };
    let def: SaleDefinition = decode("sale definition", &def)?;
    let spec = SaleSpec::try_from(def)
        .map_err(|e| StoreError::unexpected("stored sale definition", &e.to_string()))?;
    let layout = match layout {
        Some(layout) => decode("sale layout", &layout)?,
        None => Layout::settled(
            ShardSet::contiguous(0, spec.shards())
                .map_err(|e| StoreError::unexpected("stored sale shards", &e.to_string()))?,
        ),
    };
    if layout.current.count() != spec.shards() {
        return Err(StoreError::unexpected("sale layout", &layout));
    }
    Ok(Some(StoredSale {
        spec,
        paused: paused.as_deref() == Some("1"),
        epoch: epoch.unwrap_or(0),
        generation: generation.unwrap_or(0),
        layout,
        op: op
            .map(|op| decode("sale change in progress", &op))
            .transpose()?,
    }))
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt {
        what,
        source: source.into(),
    })
}

fn encode(what: &'static str, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Corrupt {
        what,
        source: source.into(),
    })
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

/// Adds `id` to the set of sales (before its record exists: a listed sale without a record
/// is skipped by readers, a record nobody lists would never be refreshed).
pub async fn index(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<(), StoreError> {
    redis::cmd("SADD")
        .arg(keys.sale_index())
        .arg(id.as_str())
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// What the record must be for an [`Update`] to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No record yet.
    Absent,
    /// The record at this epoch.
    Epoch(u64),
}

/// One atomic change of a sale's record.
#[derive(Debug, Clone, Default)]
pub struct Update {
    set: Vec<(&'static str, String)>,
    del: Vec<&'static str>,
}

impl Update {
    /// Sets the definition (and the `shards` it names).
    pub fn definition(mut self, spec: &SaleSpec) -> Result<Self, StoreError> {
        self.set
            .push(("def", encode("sale definition", spec.definition())?));
        Ok(self)
    }

    /// Sets the layout.
    pub fn layout(mut self, layout: &Layout) -> Result<Self, StoreError> {
        self.set.push(("layout", encode("sale layout", layout)?));
        Ok(self)
    }

    /// Sets the kill switch.
    pub fn paused(mut self, paused: bool) -> Self {
        self.set
            .push(("paused", if paused { "1" } else { "0" }.into()));
        self
    }

    /// Sets the generation purchase tokens are bound to.
    pub fn generation(mut self, generation: u64) -> Self {
        self.set.push(("generation", generation.to_string()));
        self
    }

    /// Records `op` as the change in progress.
    pub fn begin(mut self, op: &Operation) -> Result<Self, StoreError> {
        self.set.push(("op", encode("sale change", op)?));
        self.set.push(("op_id", op.id.clone()));
        Ok(self)
    }

    /// Clears the change in progress.
    pub fn finish(mut self) -> Self {
        self.del.extend(["op", "op_id"]);
        self
    }
}

/// Applies `update` to sale `id` if its record is as `expect` says, bumping the epoch.
/// Returns the new epoch, or `None` if the record was not as expected (nothing changed).
pub async fn update(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    expect: Expect,
    update: &Update,
) -> Result<Option<u64>, StoreError> {
    let epoch = match expect {
        Expect::Absent => "0".to_owned(),
        Expect::Epoch(epoch) => epoch.to_string(),
    };
    let mut cmd = scripts::evalsha(&scripts::SALE_UPDATE, 1);
    cmd.arg(keys.sale_meta(id)).arg(epoch).arg(update.set.len());
    for (field, value) in &update.set {
        cmd.arg(*field).arg(value);
    }
    cmd.arg(&update.del);
    Ok(scripts::run(&scripts::SALE_UPDATE, &cmd, conn).await?)
}

/// Reserves `count` fresh shard indices for sale `id` and returns the first. Indices are
/// never handed out twice (concurrent replacements get disjoint ranges); `floor` is the
/// first index a record written before reservations existed leaves free.
pub async fn reserve_shards(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    count: u32,
    floor: u32,
) -> Result<u32, StoreError> {
    let meta = keys.sale_meta(id);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("HSETNX")
        .arg(&meta)
        .arg("next_shard")
        .arg(floor)
        .ignore()
        .cmd("HINCRBY")
        .arg(&meta)
        .arg("next_shard")
        .arg(count);
    let (end,): (u32,) = pipe.query_async(conn).await?;
    Ok(end - count)
}

/// The field `init_shard.lua` writes in a new shard's buyer hash: no user id (`*` is not a
/// character of one), so every reader of buyer records passes it by, as it passes the
/// reshard markers.
pub const TABLE_MARK: &str = "*";

/// The value of [`TABLE_MARK`]: longer than Redis's `hash-max-listpack-value` (64 bytes by
/// default; an operator who raises it past this length gets the listpack start back), so
/// the buyer hash is a hash table from its first buyer on (`lua/init_shard.lua` says why).
pub const TABLE_MARK_VALUE: &str = "flashgate: this field keeps the buyer hash a hash table from its \
    first buyer on, instead of a listpack scanned by every lookup";

/// Creates the shards of `shards` (unless they exist), the `i`-th holding `units[i]` units.
pub async fn init_shards(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    shards: &ShardSet,
    units: &[u64],
) -> Result<(), StoreError> {
    for (shard, &units) in shards.indices().zip(units) {
        let keys = keys.shard(id, shard);
        let mut cmd = scripts::evalsha(&scripts::INIT_SHARD, 2);
        cmd.arg(&keys.shard)
            .arg(&keys.buyers)
            .arg(units)
            .arg(TABLE_MARK_VALUE);
        scripts::run::<i64>(&scripts::INIT_SHARD, &cmd, conn).await?;
    }
    Ok(())
}

/// Deletes every key of the shards `shards`.
pub async fn delete_shards(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    shards: impl IntoIterator<Item = u32>,
) -> Result<(), StoreError> {
    for shard in shards {
        let keys = keys.shard(id, shard);
        redis::cmd("DEL")
            .arg(&keys.all())
            .query_async::<()>(conn)
            .await?;
    }
    Ok(())
}

/// Takes (or, if `holder` has it, extends) the lock of the change in progress on sale `id`
/// for `hold_ms`; false if another instance holds it.
pub async fn lock_change(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    holder: &str,
    hold_ms: u64,
) -> Result<bool, StoreError> {
    let key = keys.sale_change_lock(id);
    let taken: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(holder)
        .arg("NX")
        .arg("PX")
        .arg(hold_ms)
        .query_async(conn)
        .await?;
    if taken.is_some() {
        return Ok(true);
    }
    let current: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
    if current.as_deref() != Some(holder) {
        return Ok(false);
    }
    redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(hold_ms)
        .query_async::<()>(conn)
        .await?;
    Ok(true)
}

/// Releases the lock of a change `holder` finished (if it still has it).
pub async fn unlock_change(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    holder: &str,
) -> Result<(), StoreError> {
    let key = keys.sale_change_lock(id);
    let current: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
    if current.as_deref() == Some(holder) {
        redis::cmd("DEL").arg(&key).query_async::<()>(conn).await?;
    }
    Ok(())
}

/// Removes `id` from the set of sales.
pub async fn unindex(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<(), StoreError> {
    redis::cmd("SREM")
        .arg(keys.sale_index())
        .arg(id.as_str())
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Deletes the sale's record and the sale-wide keys beside it (issued tokens, the shared
/// limit's state, the change lock, the audit trail). Spent-challenge markers expire by
/// themselves.
pub async fn delete_record(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<(), StoreError> {
    redis::cmd("DEL")
        .arg(keys.sale_meta(id))
        .arg(keys.issued_tokens(id))
        .arg(keys.sale_quota(id))
        .arg(keys.sale_quota_admitted(id))
        .arg(keys.sale_change_lock(id))
        .arg(keys.sale_audit(id))
        .query_async::<()>(conn)
        .await?;
    Ok(())
}
