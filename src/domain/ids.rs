//! Identifier newtypes: parsed once at the edge, valid by construction afterwards.

use std::fmt;
use std::num::NonZeroU32;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a piece of input is not a valid identifier or quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{what} must be 1..={max} characters of [A-Za-z0-9_-], got {len} characters")]
    BadToken {
        what: &'static str,
        max: usize,
        len: usize,
    },
    #[error("Idempotency-Key must be 1..=64 visible ASCII characters")]
    BadIdempotencyKey,
    #[error("order id is malformed")]
    BadOrderId,
    #[error("quantity must be at least 1")]
    ZeroQuantity,
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn parse_token(what: &'static str, s: &str) -> Result<(), IdError> {
    const MAX: usize = 64;
    if (1..=MAX).contains(&s.len()) && s.chars().all(is_token_char) {
        Ok(())
    } else {
        Err(IdError::BadToken {
            what,
            max: MAX,
            len: s.len(),
        })
    }
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses `s`: 1..=64 characters of `[A-Za-z0-9_-]`.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_token($what, s).map(|()| Self(s.to_owned()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

token_id!(
    /// A sale's identifier, chosen by the operator.
    SaleId,
    "sale id"
);
token_id!(
    /// A buyer's identifier: the `sub` claim of their JWT.
    UserId,
    "user id"
);

/// The client's `Idempotency-Key`: 1..=64 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Parses a header value.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let visible = s.bytes().all(|b| b.is_ascii_graphic());
        if (1..=64).contains(&s.len()) && visible {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadIdempotencyKey)
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A number of units in one order; never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Quantity(NonZeroU32);

impl Quantity {
    /// One unit.
    pub const ONE: Quantity = Quantity(NonZeroU32::MIN);

    /// A non-zero quantity.
    pub fn new(n: u32) -> Result<Self, IdError> {
        NonZeroU32::new(n).map(Self).ok_or(IdError::ZeroQuantity)
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

/// A Redis Stream entry id, `<ms>-<seq>`: unique and increasing within one stream. Each
/// part is at most `i64::MAX`: what Redis generates (a unix time in ms and a counter within
/// it) always is, and so each part fits a SQL integer column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// Parses `<ms>-<seq>`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let (ms, seq) = s.split_once('-').ok_or(IdError::BadOrderId)?;
        let number = |part: &str| -> Result<u64, IdError> {
            let digits =
                !part.is_empty() && part.len() <= 19 && part.bytes().all(|b| b.is_ascii_digit());
            digits
                .then(|| part.parse::<i64>().ok())
                .flatten()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or(IdError::BadOrderId)
        };
        Ok(Self {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }

    /// The millisecond part (the Redis server time of the XADD).
    pub fn millis(self) -> u64 {
        self.ms
    }

    /// The two parts as SQL integers, `(ms, seq)`.
    pub fn sql_parts(self) -> (i64, i64) {
        let part = |n: u64| i64::try_from(n).expect("parse bounds each part to i64::MAX");
        (part(self.ms), part(self.seq))
    }

    /// Appends the text form, `<ms>-<seq>`, to `out`: what `Display` writes, without the
    /// formatting machinery (every accepted order's id is written several times on its way
    /// to the database).
    pub fn push_to(self, out: &mut String) {
        self.write_to(out).expect("writing to a String cannot fail");
    }

    /// Writes the text form piece by piece, numbers by `itoa`: for `Display` and
    /// [`Self::push_to`] alike.
    fn write_to(self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        out.write_str(digits.format(self.ms))?;
        out.write_str("-")?;
        out.write_str(digits.format(self.seq))
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// An order's identifier: the sale, the shard whose stream recorded it, and its entry id in
/// that stream — `<sale_id>.<shard>.<ms>-<seq>`. Unique because entry ids are unique within
/// a stream; the order can be found from its id alone (in its stream while pending, in the
/// database once persisted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId {
    sale: SaleId,
    shard: u32,
    entry: EntryId,
}

impl OrderId {
    /// The order recorded as `entry` in the stream of `shard` of `sale`.
    pub fn new(sale: SaleId, shard: u32, entry: EntryId) -> Self {
        Self { sale, shard, entry }
    }

    /// Parses the text form produced by `Display`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let mut parts = s.split('.');
        let (Some(sale), Some(shard), Some(entry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdError::BadOrderId);
        };
        let sale = SaleId::parse(sale).map_err(|_| IdError::BadOrderId)?;
        let shard_ok =
            !shard.is_empty() && shard.len() <= 5 && shard.bytes().all(|b| b.is_ascii_digit());
        let shard = shard_ok
            .then(|| shard.parse::<u32>().ok())
            .flatten()
            .ok_or(IdError::BadOrderId)?;
        let entry = EntryId::parse(entry)?;
        Ok(Self { sale, shard, entry })
    }

    /// The sale this order belongs to.
    pub fn sale(&self) -> &SaleId {
        &self.sale
    }

    /// The shard whose stream holds this order while it is pending.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// The order's entry in its shard's stream.
    pub fn entry(&self) -> EntryId {
        self.entry
    }

    /// Appends the text form, `<sale_id>.<shard>.<ms>-<seq>`, to `out`: what `Display`
    /// writes, without the formatting machinery.
    pub fn push_to(&self, out: &mut String) {
        self.write_to(out).expect("writing to a String cannot fail");
    }

    /// Writes the text form piece by piece, numbers by `itoa`: for `Display` and
    /// [`Self::push_to`] alike.
    fn write_to(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(self.sale.as_str())?;
        out.write_str(".")?;
        out.write_str(itoa::Buffer::new().format(self.shard))?;
        out.write_str(".")?;
        self.entry.write_to(out)
    }

    /// The text form in a new string.
    pub fn text(&self) -> String {
        /// A sale id's longest, a shard's and an entry id's: no reallocation.
        const MOST: usize = 64 + 1 + 10 + 1 + 39;
        let mut out = String::with_capacity(MOST);
        self.push_to(&mut out);
        out
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Serialize for OrderId {
    /// One string, written whole (`collect_str` would escape each piece `Display` writes).
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sale_id_rejects_empty_long_and_odd_characters() {
        assert!(SaleId::parse("").is_err());
        assert!(SaleId::parse(&"a".repeat(65)).is_err());
        assert!(SaleId::parse("a.b").is_err());
        assert!(SaleId::parse("a{b}").is_err());
        assert!(SaleId::parse("Sale_2026-11").is_ok());
    }

    #[test]
    fn idempotency_key_accepts_visible_ascii_only() {
        assert!(IdempotencyKey::parse("k-1:2/3").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(65)).is_err());
        assert!(IdempotencyKey::parse("ключ").is_err());
    }

    #[test]
    fn quantity_zero_is_unrepresentable() {
        assert_eq!(Quantity::new(0), Err(IdError::ZeroQuantity));
        assert_eq!(Quantity::new(3).map(Quantity::get), Ok(3));
    }

    #[test]
    fn order_id_rejects_garbage() {
        for bad in [
            "",
            "a.b",
            "a.1.xyz",
            "a..0190",
            "a.1.2.3",
            "a.-1.0123456789abcdef0123456789abcdef",
            "a.0.9223372036854775808-0",
            "a.0.0-9223372036854775808",
        ] {
            assert!(OrderId::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn order_id_round_trips(sale in "[A-Za-z0-9_-]{1,64}", shard in 0u32..1024, ms in 0..=i64::MAX as u64, seq in 0..=i64::MAX as u64) {
            let sale = SaleId::parse(&sale).unwrap();
            let entry = EntryId::parse(&format!("{ms}-{seq}")).unwrap();
            prop_assert_eq!(entry.to_string(), format!("{ms}-{seq}"));
            let id = OrderId::new(sale.clone(), shard, entry);
            let text = format!("{sale}.{shard}.{ms}-{seq}");
            prop_assert_eq!(id.to_string(), text.clone());
            prop_assert!(id.text().len() <= 64 + 1 + 10 + 1 + 39);
            prop_assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{text}\""));
            let parsed = OrderId::parse(&id.to_string()).unwrap();
            prop_assert_eq!(parsed.entry().sql_parts(), (ms as i64, seq as i64));
            prop_assert_eq!(parsed, id);
        }

        #[test]
        fn user_id_parse_accepts_exactly_the_alphabet(s in "\\PC{0,70}") {
            let ok = (1..=64).contains(&s.len()) && s.chars().all(is_token_char);
            prop_assert_eq!(UserId::parse(&s).is_ok(), ok);
        }
    }
}
