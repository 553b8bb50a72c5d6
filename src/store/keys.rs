//! Every Redis key flashgate uses is built here, so the slot layout is decided in one place.
//!
//! A sale's shard `i` owns the hash tag `{<sale>:<i>}`: all keys one script touches share it,
//! so they live in one cluster slot, while the shards of one sale spread over many slots.
//! Sale ids cannot contain `:`, `{` or `}`, so tags of different sales never collide.

use std::sync::Arc;

use crate::domain::{SaleId, TokenId};

/// Builds keys under a configurable prefix (tests isolate themselves with their own prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
}

/// The keys of one stock shard; all share one hash tag and so one cluster slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardKeys {
    /// Hash: `stock`, `lent`, `ver`, `allotted`, `received`, `given`, `acked`
    /// ([`super::shards::ShardCounters`] says what each means), and `returned`, the units
    /// cancelled and expired orders gave back to this shard (`lua/return_units.lua`).
    pub shard: String,
    /// Hash: the records of the buyers whose home is this shard: `<user>` -> the units the
    /// buyer holds, then one line `\n<idempotency key> <order id> <quantity> <fingerprint>`
    /// per accepted order (` #<token id>` after it when a purchase token paid for it, ` ~`
    /// at its end once its units were given back) ([`super::buyer_record`]); and markers
    /// that are no user ids: `*` ([`super::sales::TABLE_MARK`]), `!` and `?` (a reshard's,
    /// [`super::migration`]).
    pub buyers: String,
    /// Stream: durable records of the orders not yet persisted.
    pub orders: String,
    /// String: lock held by the instance recovering this shard's stale orders.
    pub recovering: String,
    /// Set: ids of loans credited to this shard.
    pub credited: String,
    /// Hash: loans this shard made to others and that are not settled yet.
    pub loans: String,
    /// Stream: the shard's dead letters, orders the database refused repeatedly (or whose
    /// record could not be read), moved here from `orders` by `dead_letter.lua`.
    pub dead: String,
}

impl ShardKeys {
    /// Every key of the shard, for deletion.
    pub fn all(&self) -> [&str; 7] {
        [
            &self.shard,
            &self.buyers,
            &self.orders,
            &self.recovering,
            &self.credited,
            &self.loans,
            &self.dead,
        ]
    }

    /// String: the reply of the borrow that made loan `loan_id` from this shard, kept for a
    /// while after the loan is settled so that a re-sent borrow finds it (`lua/borrow.lua`).
    /// It expires by itself, so it is not among [`Self::all`].
    pub fn loan_marker(&self, loan_id: &str) -> String {
        format!("{}:{loan_id}", self.loans)
    }
}

impl Keys {
    /// Keys under `prefix` (e.g. `fg`).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The keys of shard `shard` of `sale`. (Built by appending, not with `format!`: the
    /// order writer asks for a shard's keys with every batch it acknowledges, and seven
    /// `format!` calls cost several times the appends.)
    pub fn shard(&self, sale: &SaleId, shard: u32) -> ShardKeys {
        let mut base = String::with_capacity(self.prefix.len() + sale.as_str().len() + 16);
        base.push_str(&self.prefix);
        base.push_str(":{");
        base.push_str(sale.as_str());
        base.push(':');
        base.push_str(itoa::Buffer::new().format(shard));
        base.push('}');
        let key = |suffix: &str| {
            let mut key = String::with_capacity(base.len() + suffix.len());
            key.push_str(&base);
            key.push_str(suffix);
            key
        };
        ShardKeys {
            shard: key(":stock"),
            buyers: key(":buyers"),
            orders: key(":orders"),
            recovering: key(":recovering"),
            credited: key(":credited"),
            loans: key(":loans"),
            dead: key(":dead"),
        }
    }

    /// The cluster slot of shard `shard` of `sale`: the slot of its hash tag, which every
    /// key of [`Self::shard`] shares.
    pub fn shard_slot(sale: &SaleId, shard: u32) -> u16 {
        hash_slot(&format!("{{{sale}:{shard}}}"))
    }

    /// Hash holding a sale's definition (`def`, JSON), kill switch (`paused`) and `epoch`.
    pub fn sale_meta(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}", self.prefix, sale)
    }

    /// String marking challenge `id` of `sale` as answered (a token was issued for it).
    pub fn spent_challenge(&self, sale: &SaleId, id: TokenId) -> String {
        format!("{}:sale:{{{}}}:ch:{}", self.prefix, sale, id.to_hex())
    }

    /// Sorted set of the unexpired purchase tokens issued for `sale` (id scored by expiry),
    /// kept only while issuance is capped.
    pub fn issued_tokens(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}:issued", self.prefix, sale)
    }

    /// String holding the GCRA state of the per-sale limit shared by all instances.
    pub fn sale_quota(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}:quota", self.prefix, sale)
    }

    /// Sorted set of the requests the per-sale shared limit admitted recently (request id
    /// scored by the Redis time it was admitted), so that a re-sent request is not counted
    /// twice (`lua/gcra.lua`).
    pub fn sale_quota_admitted(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}:quota:admitted", self.prefix, sale)
    }

    /// String held by the instance driving a change of `sale` (a reshard, a change of stock)
    /// while it drives it (`SET NX PX`, renewed), so that others resume only an abandoned one.
    pub fn sale_change_lock(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}:change", self.prefix, sale)
    }

    /// List of the sale's audit entries (JSON), newest first, capped
    /// ([`super::audit::KEPT_ENTRIES`]).
    pub fn sale_audit(&self, sale: &SaleId) -> String {
        format!("{}:sale:{{{}}}:audit", self.prefix, sale)
    }

    /// Set of all sale ids.
    pub fn sale_index(&self) -> String {
        format!("{}:sales", self.prefix)
    }
}

/// The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag, modulo 16384).
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &bytes[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |c, _| {
            if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_slot_matches_redis_reference_values() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(hash_slot("123456789"), 0x31C3);
        assert_eq!(hash_slot("foo"), 12182);
        assert_eq!(hash_slot("{user1000}.following"), hash_slot("user1000"));
        assert_eq!(hash_slot("foo{}{bar}"), hash_slot("foo{}{bar}"));
        assert_ne!(hash_slot("foo{}{bar}"), hash_slot("bar"));
    }

    #[test]
    fn shard_keys_keep_their_names() {
        // The names are data: keys written by earlier versions must still be found.
        let keys = Keys::new("fg").shard(&SaleId::parse("hot-sale").unwrap(), 4_294_967_295);
        let base = "fg:{hot-sale:4294967295}";
        let suffixes = [
            "stock",
            "buyers",
            "orders",
            "recovering",
            "credited",
            "loans",
            "dead",
        ];
        assert_eq!(
            keys.all(),
            suffixes
                .map(|s| format!("{base}:{s}"))
                .each_ref()
                .map(String::as_str)
        );
        assert_eq!(keys.loan_marker("l1"), format!("{base}:loans:l1"));
    }

    #[test]
    fn a_shard_slot_is_the_slot_of_every_key_of_the_shard() {
        let keys = Keys::new("fg");
        let sale = SaleId::parse("hot-sale").unwrap();
        for shard in [0, 1, 17, 16_383] {
            let slot = Keys::shard_slot(&sale, shard);
            for key in keys.shard(&sale, shard).all() {
                assert_eq!(hash_slot(key), slot, "{key}");
            }
        }
    }

    #[test]
    fn sale_level_keys_share_the_sale_meta_slot() {
        let keys = Keys::new("fg");
        let sale = SaleId::parse("s").unwrap();
        let slot = hash_slot(&keys.sale_meta(&sale));
        let id = TokenId::random();
        assert_eq!(hash_slot(&keys.spent_challenge(&sale, id)), slot);
        assert_eq!(hash_slot(&keys.issued_tokens(&sale)), slot);
        assert_eq!(hash_slot(&keys.sale_quota(&sale)), slot);
        assert_eq!(hash_slot(&keys.sale_quota_admitted(&sale)), slot);
        assert_eq!(hash_slot(&keys.sale_audit(&sale)), slot);
    }

    #[test]
    fn shards_of_one_sale_spread_over_slots() {
        let keys = Keys::new("fg");
        let sale = SaleId::parse("s").unwrap();
        let slots: std::collections::HashSet<u16> = (0..64)
            .map(|i| hash_slot(&keys.shard(&sale, i).shard))
            .collect();
        assert!(slots.len() > 60, "only {} distinct slots", slots.len());
    }

    proptest! {
        #[test]
        fn all_keys_of_a_shard_share_one_slot(sale in "[A-Za-z0-9_-]{1,64}", shard in 0u32..1024, prefix in "[a-z]{1,8}") {
            let keys = Keys::new(&prefix);
            let sale = SaleId::parse(&sale).unwrap();
            let shard_keys = keys.shard(&sale, shard);
            let slot = hash_slot(&shard_keys.shard);
            for key in shard_keys.all() {
                prop_assert_eq!(hash_slot(key), slot);
            }
            prop_assert_eq!(hash_slot(&shard_keys.loan_marker("0190a1b2c3d4")), slot);
        }

        #[test]
        fn different_shards_never_share_a_tag(sale in "[A-Za-z0-9_-]{1,64}", a in 0u32..1024, b in 0u32..1024) {
            prop_assume!(a != b);
            let keys = Keys::new("fg");
            let sale = SaleId::parse(&sale).unwrap();
            prop_assert_ne!(keys.shard(&sale, a).shard, keys.shard(&sale, b).shard);
        }
    }
}
