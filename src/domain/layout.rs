//! Where a sale's stock lives: which shard indices hold it now, and, while a live reshard
//! is moving buyers and units, which ones it is moving them from.
//!
//! Shard indices of a sale are never reused: every layout a sale gets (at creation, on a
//! replacement, on each reshard) takes the next unused range, so the keys of an old layout
//! (its order streams, its counters) stay where they are while the new one fills, and an
//! order id (`<sale>.<shard>.<entry>`) always names the shard that recorded it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::ids::UserId;

/// Most shard indices one sale may use over its life (each reshard takes a fresh range).
pub const MAX_SHARD_INDEX: u32 = 16_384;

/// A contiguous range of shard indices, `base..base + count` (never empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ShardRange {
    base: u32,
    count: u32,
}

/// Why a range cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shard range {base}+{count} is empty or goes past index {MAX_SHARD_INDEX}")]
pub struct RangeError {
    base: u32,
    count: u32,
}

impl ShardRange {
    /// `count` shards from index `base`.
    pub fn new(base: u32, count: u32) -> Result<Self, RangeError> {
        match base.checked_add(count) {
            Some(end) if count > 0 && end <= MAX_SHARD_INDEX => Ok(Self { base, count }),
            _ => Err(RangeError { base, count }),
        }
    }

    /// The first index.
    pub fn base(self) -> u32 {
        self.base
    }

    /// How many shards.
    pub fn count(self) -> u32 {
        self.count
    }

    /// One past the last index.
    pub fn end(self) -> u32 {
        self.base + self.count
    }

    /// Every index of the range.
    pub fn indices(self) -> Range<u32> {
        self.base..self.end()
    }

    /// Whether `shard` is one of this range's.
    pub fn contains(self, shard: u32) -> bool {
        self.indices().contains(&shard)
    }

    /// The shard of this range that is `user`'s home: FNV-1a of the user id, so every
    /// gateway instance and every restart agrees.
    pub fn home_of(self, user: &UserId) -> u32 {
        let hash = user
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        // Fold the high bits in: FNV's low bits alone are weak for short, similar ids.
        let mixed = hash ^ (hash >> 32);
        self.base + (mixed % u64::from(self.count)) as u32
    }
}

/// The shards a sale sells from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Where buyers' homes are and purchases run.
    pub current: ShardRange,
    /// The previous range while a reshard moves its buyers and units into `current`:
    /// purchases may still borrow from it, and a buyer's record may still be there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<ShardRange>,
}

impl Layout {
    /// A settled layout over `range`.
    pub fn settled(range: ShardRange) -> Self {
        Self {
            current: range,
            draining: None,
        }
    }

    /// Whether a reshard is moving buyers and units from `draining` into `current`.
    pub fn is_migrating(&self) -> bool {
        self.draining.is_some()
    }

    /// The shards that may hold units on their shelves or out on loan: `current`, and
    /// `draining` while there is one. Every earlier range was emptied before it was dropped.
    pub fn stocked(&self) -> impl Iterator<Item = u32> + use<> {
        let draining = self.draining.map_or(0..0, ShardRange::indices);
        self.current.indices().chain(draining)
    }

    /// Every shard index the sale has used, earlier layouts included: the ones that may
    /// still hold orders not yet in the database, dead letters, or counters of units sold.
    pub fn every_shard(&self) -> Range<u32> {
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

    #[test]
    fn ranges_are_never_empty_nor_past_the_last_index() {
        assert!(ShardRange::new(0, 0).is_err());
        assert!(ShardRange::new(MAX_SHARD_INDEX - 1, 2).is_err());
        assert!(ShardRange::new(u32::MAX, 2).is_err());
        assert_eq!(
            ShardRange::new(8, 64).unwrap().indices(),
            8..72,
            "indices run from base"
        );
    }

    #[test]
    fn a_migrating_layout_stocks_both_ranges() {
        let layout = Layout {
            current: ShardRange::new(8, 4).unwrap(),
            draining: Some(ShardRange::new(0, 8).unwrap()),
        };
        let mut stocked: Vec<u32> = layout.stocked().collect();
        stocked.sort_unstable();
        assert_eq!(stocked, (0..12).collect::<Vec<_>>());
        assert_eq!(layout.every_shard(), 0..12);
        let settled = Layout::settled(ShardRange::new(12, 2).unwrap());
        assert_eq!(settled.stocked().collect::<Vec<_>>(), vec![12, 13]);
        assert_eq!(settled.every_shard(), 0..14);
    }

    #[test]
    fn homes_are_roughly_uniform() {
        let range = ShardRange::new(0, 8).unwrap();
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let user = UserId::parse(&format!("user-{i}")).unwrap();
            counts[range.home_of(&user) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    proptest! {
        #[test]
        fn a_home_is_in_its_range_and_deterministic(
            user in "[A-Za-z0-9_-]{1,64}", base in 0u32..4096, count in 1u32..1024,
        ) {
            let user = UserId::parse(&user).unwrap();
            let range = ShardRange::new(base, count).unwrap();
            let home = range.home_of(&user);
            prop_assert!(range.contains(home));
            prop_assert_eq!(home, range.home_of(&user));
            // The same user keeps the same offset in a range of the same size.
            let moved = ShardRange::new(base + count, count).unwrap();
            prop_assert_eq!(moved.home_of(&user) - moved.base(), home - base);
        }
    }
}
