//! Where a sale's stock lives: which shard indices hold it now, and, while a live reshard
//! is moving buyers and units, which ones it is moving them from.
//!
//! Shard indices of a sale are never reused: every layout a sale gets (at creation, on a
//! replacement, on each reshard) takes indices past every one handed out before, so the
//! keys of an old layout (its order streams, its counters) stay where they are while the
//! new one fills, and an order id (`<sale>.<shard>.<entry>`) always names the shard that
//! recorded it. A layout's indices need not be contiguous: on a Redis Cluster they are
//! chosen by the master their hash tag lands on (`domain::placement`), and the indices
//! walked past are skipped for good (they never get keys).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ids::UserId;

/// Most shard indices one sale may use over its life (each reshard takes fresh ones).
pub const MAX_SHARD_INDEX: u32 = 16_384;

/// The shard indices of one layout: never empty, ascending, each below
/// [`MAX_SHARD_INDEX`]. Cheap to clone.
///
/// Stored as `{"base": b, "count": n}` when the indices are `b..b + n` (every layout stored
/// before placement existed reads that way), else with `"skip"`: the offsets from `b` of
/// the indices walked past, so the set is `b..b + n + skip.len()` without them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "StoredShards", into = "StoredShards")]
pub struct ShardSet {
    indices: Arc<[u32]>,
}

/// The stored form of a [`ShardSet`].
#[derive(Serialize, Deserialize)]
struct StoredShards {
    base: u32,
    count: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    skip: Vec<u32>,
}

/// Why a set of shard indices cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "shard set from {base} with {count} indices is empty, unordered or goes past index {MAX_SHARD_INDEX}"
)]
pub struct RangeError {
    base: u32,
    count: usize,
}

impl ShardSet {
    /// `count` shards from index `base`: `base..base + count`.
    pub fn contiguous(base: u32, count: u32) -> Result<Self, RangeError> {
        match base.checked_add(count) {
            Some(end) if count > 0 && end <= MAX_SHARD_INDEX => Ok(Self {
                indices: (base..end).collect(),
            }),
            _ => Err(RangeError {
                base,
                count: count as usize,
            }),
        }
    }

    /// The shards `indices` (strictly ascending, not empty, below [`MAX_SHARD_INDEX`]).
    pub fn from_indices(indices: Vec<u32>) -> Result<Self, RangeError> {
        let ascending = indices.windows(2).all(|w| w[0] < w[1]);
        match indices.last() {
            Some(&last) if ascending && last < MAX_SHARD_INDEX => Ok(Self {
                indices: indices.into(),
            }),
            _ => Err(RangeError {
                base: indices.first().copied().unwrap_or(0),
                count: indices.len(),
            }),
        }
    }

    /// The first index.
    pub fn base(&self) -> u32 {
        self.indices[0]
    }

    /// How many shards.
    pub fn count(&self) -> u32 {
        self.indices.len() as u32
    }

    /// One past the last index.
    pub fn end(&self) -> u32 {
        self.indices[self.indices.len() - 1] + 1
    }

    /// Every index of the set, ascending.
    pub fn indices(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
        self.indices.iter().copied()
    }

    /// The `position`-th index (ascending order), wrapping around the set.
    pub fn nth(&self, position: u32) -> u32 {
        self.indices[position as usize % self.indices.len()]
    }

    /// Where `shard` stands among the indices, if it is one of them.
    pub fn position(&self, shard: u32) -> Option<u32> {
        self.indices.binary_search(&shard).ok().map(|i| i as u32)
    }

    /// Whether `shard` is one of this set's.
    pub fn contains(&self, shard: u32) -> bool {
        self.position(shard).is_some()
    }

    /// The shard of this set that is `user`'s home: FNV-1a of the user id picks a position,
    /// so every gateway instance and every restart agrees. One hash and one array read.
    pub fn home_of(&self, user: &UserId) -> u32 {
        let hash = user
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        // Fold the high bits in: FNV's low bits alone are weak for short, similar ids.
        let mixed = hash ^ (hash >> 32);
        self.indices[(mixed % self.indices.len() as u64) as usize]
    }
}

impl TryFrom<StoredShards> for ShardSet {
    type Error = RangeError;

    fn try_from(stored: StoredShards) -> Result<Self, RangeError> {
        let invalid = RangeError {
            base: stored.base,
            count: stored.count as usize,
        };
        let span = (stored.count as usize)
            .checked_add(stored.skip.len())
            .and_then(|span| u32::try_from(span).ok())
            .ok_or_else(|| invalid.clone())?;
        let walked = Self::contiguous(stored.base, span)?;
        let ascending = stored.skip.windows(2).all(|w| w[0] < w[1]);
        let skipped_last = stored.skip.last().is_some_and(|&s| s + 1 >= span);
        if !ascending || skipped_last || stored.skip.first() == Some(&0) {
            return Err(invalid);
        }
        let indices = walked
            .indices()
            .filter(|i| stored.skip.binary_search(&(i - stored.base)).is_err())
            .collect();
        Self::from_indices(indices)
    }
}

impl From<ShardSet> for StoredShards {
    fn from(set: ShardSet) -> Self {
        let base = set.base();
        let mut skip = Vec::new();
        let mut next = base;
        for index in set.indices() {
            skip.extend((next..index).map(|i| i - base));
            next = index + 1;
        }
        Self {
            base,
            count: set.count(),
            skip,
        }
    }
}

/// The shards a sale sells from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Where buyers' homes are and purchases run.
    pub current: ShardSet,
    /// The previous set while a reshard moves its buyers and units into `current`:
    /// purchases may still borrow from it, and a buyer's record may still be there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<ShardSet>,
}

impl Layout {
    /// A settled layout over `shards`.
    pub fn settled(shards: ShardSet) -> Self {
        Self {
            current: shards,
            draining: None,
        }
    }

    /// Whether a reshard is moving buyers and units from `draining` into `current`.
    pub fn is_migrating(&self) -> bool {
        self.draining.is_some()
    }

    /// The shards that may hold units on their shelves or out on loan: `current`, and
    /// `draining` while there is one. Every earlier set was emptied before it was dropped.
    pub fn stocked(&self) -> impl Iterator<Item = u32> + '_ {
        let draining = self.draining.as_ref().map(ShardSet::indices);
        self.current.indices().chain(draining.into_iter().flatten())
    }

    /// Every shard index the sale may have used, earlier layouts included: the ones that
    /// may still hold orders not yet in the database, dead letters, or counters of units
    /// sold. (Indices a placement skipped are among them; they simply have no keys.)
    pub fn every_shard(&self) -> std::ops::Range<u32> {
        0..self.current.end()
    }

    /// The next unused index.
    pub fn next_base(&self) -> u32 {
        self.current.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(indices: &[u32]) -> ShardSet {
        ShardSet::from_indices(indices.to_vec()).unwrap()
    }

    #[test]
    fn sets_are_never_empty_unordered_nor_past_the_last_index() {
        assert!(ShardSet::contiguous(0, 0).is_err());
        assert!(ShardSet::contiguous(MAX_SHARD_INDEX - 1, 2).is_err());
        assert!(ShardSet::contiguous(u32::MAX, 2).is_err());
        assert!(ShardSet::from_indices(vec![]).is_err());
        assert!(ShardSet::from_indices(vec![3, 2]).is_err());
        assert!(ShardSet::from_indices(vec![2, 2]).is_err());
        assert!(ShardSet::from_indices(vec![MAX_SHARD_INDEX]).is_err());
        assert_eq!(
            ShardSet::contiguous(8, 64)
                .unwrap()
                .indices()
                .collect::<Vec<_>>(),
            (8..72).collect::<Vec<_>>(),
            "indices run from base"
        );
    }

    #[test]
    fn a_contiguous_set_is_stored_as_before_placement_existed() {
        let stored = serde_json::to_value(ShardSet::contiguous(4, 7).unwrap()).unwrap();
        assert_eq!(stored, serde_json::json!({"base": 4, "count": 7}));
        let read: ShardSet = serde_json::from_value(stored).unwrap();
        assert_eq!(read, ShardSet::contiguous(4, 7).unwrap());
    }

    #[test]
    fn a_placed_set_stores_the_offsets_it_skipped() {
        let placed = set(&[10, 12, 13, 17]);
        let stored = serde_json::to_value(&placed).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"base": 10, "count": 4, "skip": [1, 4, 5, 6]})
        );
        assert_eq!(serde_json::from_value::<ShardSet>(stored).unwrap(), placed);
        for bad in [
            serde_json::json!({"base": 10, "count": 2, "skip": [0]}),
            serde_json::json!({"base": 10, "count": 2, "skip": [2]}),
            serde_json::json!({"base": 10, "count": 3, "skip": [2, 1]}),
            serde_json::json!({"base": 10, "count": 0}),
        ] {
            assert!(
                serde_json::from_value::<ShardSet>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_migrating_layout_stocks_both_sets() {
        let layout = Layout {
            current: ShardSet::contiguous(8, 4).unwrap(),
            draining: Some(ShardSet::contiguous(0, 8).unwrap()),
        };
        let mut stocked: Vec<u32> = layout.stocked().collect();
        stocked.sort_unstable();
        assert_eq!(stocked, (0..12).collect::<Vec<_>>());
        assert_eq!(layout.every_shard(), 0..12);
        let settled = Layout::settled(set(&[12, 15]));
        assert_eq!(settled.stocked().collect::<Vec<_>>(), vec![12, 15]);
        assert_eq!(settled.every_shard(), 0..16);
        assert_eq!(settled.next_base(), 16);
    }

    #[test]
    fn homes_are_roughly_uniform() {
        let shards = set(&[0, 1, 3, 4, 9, 10, 11, 20]);
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let user = UserId::parse(&format!("user-{i}")).unwrap();
            let home = shards.home_of(&user);
            counts[shards.position(home).unwrap() as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    proptest! {
        #[test]
        fn a_home_is_in_its_set_and_deterministic(
            user in "[A-Za-z0-9_-]{1,64}", base in 0u32..4096, count in 1u32..1024,
        ) {
            let user = UserId::parse(&user).unwrap();
            let shards = ShardSet::contiguous(base, count).unwrap();
            let home = shards.home_of(&user);
            prop_assert!(shards.contains(home));
            prop_assert_eq!(home, shards.home_of(&user));
            // The same user keeps the same position in a set of the same size.
            let moved = ShardSet::contiguous(base + count, count).unwrap();
            prop_assert_eq!(moved.position(moved.home_of(&user)), shards.position(home));
        }

        #[test]
        fn any_set_survives_being_stored(
            picks in proptest::collection::btree_set(0u32..MAX_SHARD_INDEX, 1..64),
        ) {
            let shards = ShardSet::from_indices(picks.into_iter().collect()).unwrap();
            let text = serde_json::to_string(&shards).unwrap();
            prop_assert_eq!(serde_json::from_str::<ShardSet>(&text).unwrap(), shards);
        }
    }
}
