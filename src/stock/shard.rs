//! Shard arithmetic: how stock is split over shards, and the order a borrower visits them.
//! (A buyer's home is [`crate::domain::ShardSet::home_of`].)

/// Splits `total` units over `shards` shards as evenly as possible: the first
/// `total % shards` shards get one unit more. Nothing is lost: the parts sum to `total`.
pub fn split_stock(total: u64, shards: u32) -> Vec<u64> {
    let n = u64::from(shards.max(1));
    let (base, extra) = (total / n, total % n);
    (0..n).map(|i| base + u64::from(i < extra)).collect()
}

/// The shards of `stocked` other than `home`, in the order a borrower visits them: starting
/// after a per-request offset so concurrent borrowers do not all drain the same donor first.
pub fn donors(home: u32, stocked: &[u32], offset: u32) -> impl Iterator<Item = u32> + '_ {
    let n = stocked.len().max(1);
    let start = offset as usize % n;
    (0..stocked.len())
        .map(move |i| stocked[(start + i) % n])
        .filter(move |&s| s != home)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_spreads_the_remainder_over_the_first_shards() {
        assert_eq!(split_stock(100, 8), vec![13, 13, 13, 13, 12, 12, 12, 12]);
        assert_eq!(split_stock(3, 5), vec![1, 1, 1, 0, 0]);
        assert_eq!(split_stock(0, 2), vec![0, 0]);
    }

    proptest! {
        #[test]
        fn split_conserves_units_and_differs_by_at_most_one(total in 0u64..10_000_000, shards in 1u32..1024) {
            let parts = split_stock(total, shards);
            prop_assert_eq!(parts.len(), shards as usize);
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let (min, max) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            prop_assert!(max - min <= 1);
        }

        #[test]
        fn donors_visit_every_other_shard_once(home_seed in 0u32..1024, shards in 1u32..256, offset in any::<u32>()) {
            let home = home_seed % shards;
            let stocked: Vec<u32> = (0..shards).collect();
            let mut seen: Vec<u32> = donors(home, &stocked, offset).collect();
            seen.sort_unstable();
            let expected: Vec<u32> = (0..shards).filter(|&s| s != home).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
