//! Which Redis Cluster master each shard of a new layout lands on, chosen so that every
//! master carries an equal share of a sale's shards.
//!
//! A shard's keys share the hash tag `{<sale>:<index>}`, so its index decides its slot and
//! the slot map decides its master. A layout takes indices from the sale's next unused one
//! upward and accepts each only while its master holds fewer than its share: with `n`
//! shards over `m` masters every master gets `n / m`, and the first `n % m` masters to
//! reach that get one more. Indices refused are skipped for good. On a single node the slot
//! map has one master and every index is accepted, so the layout is contiguous.

use super::layout::{MAX_SHARD_INDEX, RangeError, ShardSet};

/// How many slots a Redis Cluster has.
pub const SLOTS: usize = 16_384;

/// Which master serves each cluster slot, as one instance saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// Masters' ids, sorted, so every instance numbers them alike.
    masters: Vec<String>,
    /// For each slot, its master's position in `masters`.
    owner: Box<[u16]>,
}

/// Why a slot map cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotMapError {
    #[error("slot {0} has no master (the cluster is not fully covered)")]
    Uncovered(usize),
    #[error("slot range {0}-{1} is out of 0..{SLOTS}")]
    OutOfRange(u16, u16),
}

impl SlotMap {
    /// One node serving every slot: every index is accepted.
    pub fn single() -> Self {
        Self {
            masters: vec![String::new()],
            owner: vec![0; SLOTS].into(),
        }
    }

    /// The map of `ranges` (first slot, last slot, master id), which must cover every slot.
    pub fn from_ranges(
        ranges: impl IntoIterator<Item = (u16, u16, String)>,
    ) -> Result<Self, SlotMapError> {
        let ranges: Vec<_> = ranges.into_iter().collect();
        let mut masters: Vec<String> = ranges.iter().map(|(_, _, m)| m.clone()).collect();
        masters.sort();
        masters.dedup();
        let mut owner = vec![u16::MAX; SLOTS];
        for (first, last, master) in &ranges {
            if first > last || usize::from(*last) >= SLOTS {
                return Err(SlotMapError::OutOfRange(*first, *last));
            }
            let position = masters.binary_search(master).unwrap_or_default() as u16;
            owner[usize::from(*first)..=usize::from(*last)].fill(position);
        }
        if let Some(slot) = owner.iter().position(|&o| o == u16::MAX) {
            return Err(SlotMapError::Uncovered(slot));
        }
        Ok(Self {
            masters,
            owner: owner.into(),
        })
    }

    /// The masters' ids, sorted.
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// The position in [`Self::masters`] of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> usize {
        usize::from(self.owner[usize::from(slot) % SLOTS])
    }

    /// How many shards of `shards` each master serves (in the order of [`Self::masters`]),
    /// `slot_of` giving each index's slot.
    pub fn shares(&self, shards: &ShardSet, slot_of: impl Fn(u32) -> u16) -> Vec<u32> {
        let mut counts = vec![0; self.masters.len()];
        for index in shards.indices() {
            counts[self.master_of(slot_of(index))] += 1;
        }
        counts
    }

    /// Whether `shards` split evenly over the masters: no master serves more than one
    /// shard more than another.
    pub fn is_even(&self, shards: &ShardSet, slot_of: impl Fn(u32) -> u16) -> bool {
        let counts = self.shares(shards, slot_of);
        let (min, max) = (counts.iter().min(), counts.iter().max());
        max.zip(min).is_none_or(|(max, min)| max - min <= 1)
    }
}

/// A layout of `want` shards being chosen by walking indices upward.
#[derive(Debug)]
pub struct Placement<'a> {
    map: &'a SlotMap,
    want: u32,
    /// Shards accepted per master.
    counts: Vec<u32>,
    /// Masters that reached `want / m + 1`.
    full: u32,
    picked: Vec<u32>,
}

impl<'a> Placement<'a> {
    /// An empty placement of `want` shards (at least 1) over the masters of `map`.
    pub fn new(map: &'a SlotMap, want: u32) -> Self {
        Self {
            map,
            want,
            counts: vec![0; map.masters.len()],
            full: 0,
            picked: Vec::with_capacity(want as usize),
        }
    }

    /// Offers index `index`, whose hash tag is in `slot`: accepted (true) if its master
    /// holds fewer than its share and the placement is not complete.
    pub fn offer(&mut self, index: u32, slot: u16) -> bool {
        if self.is_complete() {
            return false;
        }
        let masters = self.map.masters.len() as u32;
        let (floor, extra) = (self.want / masters, self.want % masters);
        let count = &mut self.counts[self.map.master_of(slot)];
        let accepted = *count < floor || (*count == floor && self.full < extra);
        if accepted {
            if *count == floor {
                self.full += 1;
            }
            *count += 1;
            self.picked.push(index);
        }
        accepted
    }

    /// Whether `want` shards are chosen.
    pub fn is_complete(&self) -> bool {
        self.picked.len() == self.want as usize
    }

    /// How many indices from `start` a walk takes to complete this placement (`None`: it
    /// would go past [`MAX_SHARD_INDEX`]). The placement itself is left as it is.
    pub fn span_from(&self, start: u32, slot_of: impl Fn(u32) -> u16) -> Option<u32> {
        let mut trial = Self {
            map: self.map,
            want: self.want,
            counts: self.counts.clone(),
            full: self.full,
            picked: self.picked.clone(),
        };
        for index in start..MAX_SHARD_INDEX {
            trial.offer(index, slot_of(index));
            if trial.is_complete() {
                return Some(index - start + 1);
            }
        }
        None
    }

    /// The shards chosen (once complete).
    pub fn into_set(self) -> Result<ShardSet, RangeError> {
        ShardSet::from_indices(self.picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Three masters with the slot ranges `redis-cli --cluster create` gives them.
    fn three_masters() -> SlotMap {
        SlotMap::from_ranges([
            (0, 5460, "a".to_owned()),
            (5461, 10922, "b".to_owned()),
            (10923, 16383, "c".to_owned()),
        ])
        .unwrap()
    }

    /// A stand-in for CRC16: spreads indices over the slots.
    fn slot_of(index: u32) -> u16 {
        ((index.wrapping_mul(2_654_435_761) >> 7) % SLOTS as u32) as u16
    }

    fn place(map: &SlotMap, start: u32, want: u32) -> ShardSet {
        let mut placement = Placement::new(map, want);
        let span = placement.span_from(start, slot_of).unwrap();
        for index in start..start + span {
            placement.offer(index, slot_of(index));
        }
        assert!(placement.is_complete());
        placement.into_set().unwrap()
    }

    #[test]
    fn a_map_must_cover_every_slot() {
        let partial = SlotMap::from_ranges([(0, 100, "a".to_owned())]);
        assert_eq!(partial, Err(SlotMapError::Uncovered(101)));
        let past = SlotMap::from_ranges([(0, 16_384, "a".to_owned())]);
        assert_eq!(past, Err(SlotMapError::OutOfRange(0, 16_384)));
    }

    #[test]
    fn a_single_node_takes_every_index_in_turn() {
        assert_eq!(
            place(&SlotMap::single(), 8, 5),
            ShardSet::contiguous(8, 5).unwrap()
        );
    }

    #[test]
    fn sixteen_shards_on_three_masters_split_six_five_five() {
        let map = three_masters();
        let shards = place(&map, 0, 16);
        let mut shares = map.shares(&shards, slot_of);
        shares.sort_unstable();
        assert_eq!(shares, vec![5, 5, 6]);
        assert!(map.is_even(&shards, slot_of));
    }

    #[test]
    fn an_uneven_set_is_told_apart() {
        let map = three_masters();
        // Every index whose slot is on master "a".
        let on_a: Vec<u32> = (0..200)
            .filter(|&i| map.master_of(slot_of(i)) == 0)
            .collect();
        let lopsided = ShardSet::from_indices(on_a[..6].to_vec()).unwrap();
        assert!(!map.is_even(&lopsided, slot_of));
    }

    proptest! {
        #[test]
        fn every_placement_is_even_and_starts_where_asked(
            start in 0u32..8000, want in 1u32..=256, cut in 1000u16..15_384,
        ) {
            // Two masters of any sizes, and the usual three.
            let two = SlotMap::from_ranges([
                (0, cut - 1, "x".to_owned()),
                (cut, 16_383, "y".to_owned()),
            ]).unwrap();
            for map in [two, three_masters()] {
                let shards = place(&map, start, want);
                prop_assert_eq!(shards.count(), want);
                prop_assert!(shards.base() >= start);
                prop_assert!(map.is_even(&shards, slot_of));
            }
        }
    }
}
