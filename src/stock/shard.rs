//! Shard arithmetic: which shard is a buyer's home, and how stock is split over shards.

use crate::domain::UserId;

/// The shard that holds `user`'s per-sale records (units held, idempotency keys) and from
/// which their purchases take stock. Stable across processes and restarts (FNV-1a, not the
/// randomly seeded std hasher), so every gateway instance agrees.
pub fn home_shard(user: &UserId, shards: u32) -> u32 {
    debug_assert!(shards > 0);
    let hash = user
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    // Fold the high bits in: FNV's low bits alone are weak for short, similar ids.
    let mixed = hash ^ (hash >> 32);
    (mixed % u64::from(shards)) as u32
}

/// Splits `total` units over `shards` shards as evenly as possible: the first
/// `total % shards` shards get one unit more. Nothing is lost: the parts sum to `total`.
pub fn split_stock(total: u64, shards: u32) -> Vec<u64> {
    let n = u64::from(shards.max(1));
    let (base, extra) = (total / n, total % n);
    (0..n).map(|i| base + u64::from(i < extra)).collect()
}

/// The shards other than `home`, in the order a borrower visits them: starting after a
/// per-request offset so concurrent borrowers do not all drain the same donor first.
pub fn donors(home: u32, shards: u32, offset: u32) -> impl Iterator<Item = u32> {
    let start = offset % shards;
    (0..shards)
        .map(move |i| (start + i) % shards)
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

    #[test]
    fn home_shards_are_roughly_uniform() {
        let shards = 8;
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let user = UserId::parse(&format!("user-{i}")).unwrap();
            counts[home_shard(&user, shards) as usize] += 1;
        }
        for c in counts {
            assert!((700..1300).contains(&c), "{counts:?}");
        }
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
        fn home_shard_is_in_range_and_deterministic(user in "[A-Za-z0-9_-]{1,64}", shards in 1u32..1024) {
            let user = UserId::parse(&user).unwrap();
            let home = home_shard(&user, shards);
            prop_assert!(home < shards);
            prop_assert_eq!(home, home_shard(&user, shards));
        }

        #[test]
        fn donors_visit_every_other_shard_once(home_seed in 0u32..1024, shards in 1u32..256, offset in any::<u32>()) {
            let home = home_seed % shards;
            let mut seen: Vec<u32> = donors(home, shards, offset).collect();
            seen.sort_unstable();
            let expected: Vec<u32> = (0..shards).filter(|&s| s != home).collect();
            prop_assert_eq!(seen, expected);
        }
    }
}
