//! Verified credentials: a challenge and a purchase token, and the id Redis records their
//! single use under. (How they are signed and verified is `tokens`' business.)

/// The random id of a challenge or token; single use is recorded under it in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId([u8; 16]);

impl TokenId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The id carried in a credential's payload.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The id's bytes, as a credential's payload carries them.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lower-case hex, for Redis key names.
    pub fn to_hex(self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.0
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            .map(char::from)
            .collect()
    }
}

/// A verified challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Challenge {
    pub id: TokenId,
    pub expires_ms: i64,
    /// Leading zero bits the proof of work must have.
    pub difficulty: u8,
}

/// A verified purchase token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseToken {
    pub id: TokenId,
    pub expires_ms: i64,
    /// The generation of the sale's definition it was issued under.
    pub generation: u64,
}
