//! Signed, fixed-size, stateless credentials: challenges and purchase tokens.
//!
//! Wire form: base64url (no padding) of `payload || tag`, 88 characters, where
//!
//! ```text
//! payload = version (1) | kind (1) | expires_ms (8, big endian) | id (16) | extra (8)
//! tag     = HMAC-SHA256(key, payload | len(sale) | sale | len(user) | user)
//! ```
//!
//! The buyer and sale are not carried, only signed over: a credential presented by another
//! buyer or for another sale fails the tag check exactly like a forged one. `extra` is the
//! generation of the sale's definition for a purchase token (replacing the definition voids
//! its tokens; pauses, top-ups and reshards do not) and the
//! proof-of-work difficulty for a challenge. The tag is checked first, in constant time;
//! nothing in the payload is trusted before it verifies.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::{Challenge, PurchaseToken, SaleId, TokenId, UserId};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 1 + 8 + 16 + 8;
const TAG_LEN: usize = 32;
const RAW_LEN: usize = PAYLOAD_LEN + TAG_LEN;
/// Length of every challenge and purchase token, in characters.
pub const ENCODED_LEN: usize = RAW_LEN.div_ceil(3) * 4;

/// Why a challenge or purchase token is refused (all answer 403 invalid-token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the {0} is not well formed")]
    Malformed(Kind),
    #[error("the {0} was not issued by this gateway to this buyer for this sale")]
    Forged(Kind),
    #[error("the {0} has expired")]
    Expired(Kind),
    #[error("the purchase token was issued before the sale was last changed; get a new one")]
    Stale,
}

/// Which credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Challenge,
    PurchaseToken,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Self::Challenge => b'C',
            Self::PurchaseToken => b'T',
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Challenge => "challenge",
            Self::PurchaseToken => "purchase token",
        })
    }
}

/// Whom a credential is for.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub sale: &'a SaleId,
    pub user: &'a UserId,
}

struct Payload {
    kind: Kind,
    expires_ms: i64,
    id: TokenId,
    extra: u64,
}

impl Payload {
    fn to_bytes(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0; PAYLOAD_LEN];
        out[0] = VERSION;
        out[1] = self.kind.tag();
        out[2..10].copy_from_slice(&self.expires_ms.to_be_bytes());
        out[10..26].copy_from_slice(self.id.as_bytes());
        out[26..34].copy_from_slice(&self.extra.to_be_bytes());
        out
    }

    fn from_bytes(bytes: &[u8; PAYLOAD_LEN], kind: Kind) -> Option<Self> {
        if bytes[0] != VERSION || bytes[1] != kind.tag() {
            return None;
        }
        Some(Self {
            kind,
            expires_ms: i64::from_be_bytes(bytes[2..10].try_into().ok()?),
            id: TokenId::from_bytes(bytes[10..26].try_into().ok()?),
            extra: u64::from_be_bytes(bytes[26..34].try_into().ok()?),
        })
    }
}

/// Issues and verifies challenges and purchase tokens with one secret key.
#[derive(Clone)]
pub struct TokenSigner {
    mac: HmacSha256,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer keyed with `secret` (any length).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// A signer whose key is derived from another secret (the JWT secret), so that the two
    /// keys are independent although operators configure one.
    pub fn derived_from(secret: &[u8]) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(b"flashgate purchase tokens v1");
        Self::new(&mac.finalize().into_bytes())
    }

    /// A new challenge for `to`, and its wire form.
    pub fn issue_challenge(
        &self,
        to: Audience<'_>,
        difficulty: u8,
        expires_ms: i64,
    ) -> (Challenge, String) {
        let (id, text) = self.issue(Kind::Challenge, u64::from(difficulty), to, expires_ms);
        let challenge = Challenge {
            id,
            expires_ms,
            difficulty,
        };
        (challenge, text)
    }

    /// A new purchase token for `to` under the sale's `generation`, and its wire form.
    pub fn issue_token(
        &self,
        to: Audience<'_>,
        generation: u64,
        expires_ms: i64,
    ) -> (PurchaseToken, String) {
        let (id, text) = self.issue(Kind::PurchaseToken, generation, to, expires_ms);
        let token = PurchaseToken {
            id,
            expires_ms,
            generation,
        };
        (token, text)
    }

    /// A fresh id and the sealed credential of `kind` carrying it.
    fn issue(
        &self,
        kind: Kind,
        extra: u64,
        to: Audience<'_>,
        expires_ms: i64,
    ) -> (TokenId, String) {
        let payload = Payload {
            kind,
            expires_ms,
            id: TokenId::random(),
            extra,
        };
        (payload.id, self.seal(&payload, to))
    }

    /// The challenge `text`, if this gateway issued it to `to` and it has not expired.
    pub fn verify_challenge(
        &self,
        text: &str,
        to: Audience<'_>,
        now_ms: i64,
    ) -> Result<Challenge, TokenError> {
        let payload = self.open(text, Kind::Challenge, to, now_ms)?;
        let difficulty =
            u8::try_from(payload.extra).map_err(|_| TokenError::Malformed(Kind::Challenge))?;
        Ok(Challenge {
            id: payload.id,
            expires_ms: payload.expires_ms,
            difficulty,
        })
    }

    /// The purchase token `text`, if this gateway issued it to `to` under the sale's current
    /// `generation` and it has not expired. (Whether it was used is Redis's to say.)
    pub fn verify_token(
        &self,
        text: &str,
        to: Audience<'_>,
        generation: u64,
        now_ms: i64,
    ) -> Result<PurchaseToken, TokenError> {
        let payload = self.open(text, Kind::PurchaseToken, to, now_ms)?;
        if payload.extra != generation {
            return Err(TokenError::Stale);
        }
        Ok(PurchaseToken {
            id: payload.id,
            expires_ms: payload.expires_ms,
            generation,
        })
    }

    fn tagger(&self, payload: &[u8; PAYLOAD_LEN], to: Audience<'_>) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(payload);
        for part in [to.sale.as_str(), to.user.as_str()] {
            // Ids are at most 64 bytes, so one length byte frames each unambiguously.
            mac.update(&[part.len() as u8]);
            mac.update(part.as_bytes());
        }
        mac
    }

    fn seal(&self, payload: &Payload, to: Audience<'_>) -> String {
        let bytes = payload.to_bytes();
        let tag = self.tagger(&bytes, to).finalize().into_bytes();
        let mut raw = [0; RAW_LEN];
        raw[..PAYLOAD_LEN].copy_from_slice(&bytes);
        raw[PAYLOAD_LEN..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn open(
        &self,
        text: &str,
        kind: Kind,
        to: Audience<'_>,
        now_ms: i64,
    ) -> Result<Payload, TokenError> {
        if text.len() != ENCODED_LEN {
            return Err(TokenError::Malformed(kind));
        }
        let mut raw = [0; RAW_LEN];
        // Strict decoding: a character outside the alphabet, or non-zero trailing bits,
        // is refused, so every distinct text is a distinct byte string.
        match URL_SAFE_NO_PAD.decode_slice(text, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(TokenError::Malformed(kind)),
        }
        let (bytes, tag) = raw.split_at(PAYLOAD_LEN);
        let bytes: &[u8; PAYLOAD_LEN] = bytes.try_into().expect("split at PAYLOAD_LEN");
        self.tagger(bytes, to)
            .verify_slice(tag)
            .map_err(|_| TokenError::Forged(kind))?;
        let payload = Payload::from_bytes(bytes, kind).ok_or(TokenError::Malformed(kind))?;
        if now_ms >= payload.expires_ms {
            return Err(TokenError::Expired(kind));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (SaleId, UserId) {
        (
            SaleId::parse("s1").unwrap(),
            UserId::parse("alice").unwrap(),
        )
    }

    #[test]
    fn a_token_verifies_for_its_audience_until_it_expires() {
        let signer = TokenSigner::new(b"secret");
        let (sale, user) = ids();
        let to = Audience {
            sale: &sale,
            user: &user,
        };
        let (token, text) = signer.issue_token(to, 7, 1_000);
        assert_eq!(text.len(), ENCODED_LEN);
        assert_eq!(signer.verify_token(&text, to, 7, 999), Ok(token));
        assert_eq!(
            signer.verify_token(&text, to, 7, 1_000),
            Err(TokenError::Expired(Kind::PurchaseToken))
        );
        assert_eq!(signer.verify_token(&text, to, 8, 0), Err(TokenError::Stale));
    }

    #[test]
    fn another_buyer_sale_key_or_kind_is_refused() {
        let signer = TokenSigner::new(b"secret");
        let (sale, user) = ids();
        let bob = UserId::parse("bob").unwrap();
        let other_sale = SaleId::parse("s2").unwrap();
        let to = Audience {
            sale: &sale,
            user: &user,
        };
        let (_, text) = signer.issue_token(to, 1, i64::MAX);
        let forged = Err(TokenError::Forged(Kind::PurchaseToken));
        let to_bob = Audience {
            sale: &sale,
            user: &bob,
        };
        assert_eq!(signer.verify_token(&text, to_bob, 1, 0), forged);
        let to_other = Audience {
            sale: &other_sale,
            user: &user,
        };
        assert_eq!(signer.verify_token(&text, to_other, 1, 0), forged);
        assert_eq!(
            TokenSigner::new(b"other").verify_token(&text, to, 1, 0),
            forged
        );
        let (_, challenge) = signer.issue_challenge(to, 0, i64::MAX);
        assert_eq!(
            signer.verify_token(&challenge, to, 0, 0),
            Err(TokenError::Malformed(Kind::PurchaseToken))
        );
    }

    #[test]
    fn framing_keeps_sale_and_user_apart() {
        // ("ab", "c") and ("a", "bc") must not sign the same bytes.
        let signer = TokenSigner::new(b"secret");
        let (s1, u1) = (SaleId::parse("ab").unwrap(), UserId::parse("c").unwrap());
        let (s2, u2) = (SaleId::parse("a").unwrap(), UserId::parse("bc").unwrap());
        let (_, text) = signer.issue_challenge(
            Audience {
                sale: &s1,
                user: &u1,
            },
            3,
            i64::MAX,
        );
        let other = Audience {
            sale: &s2,
            user: &u2,
        };
        assert!(signer.verify_challenge(&text, other, 0).is_err());
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let signer = TokenSigner::new(b"secret");
        let (sale, user) = ids();
        let to = Audience {
            sale: &sale,
            user: &user,
        };
        let (_, text) = signer.issue_token(to, 1, i64::MAX);
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut bytes = text.clone().into_bytes();
                bytes[i] ^= 1 << bit;
                let flipped = String::from_utf8_lossy(&bytes);
                assert!(
                    signer.verify_token(&flipped, to, 1, 0).is_err(),
                    "flip of bit {bit} of char {i} verified"
                );
            }
        }
    }

    #[test]
    fn derived_keys_differ_from_their_source() {
        let (sale, user) = ids();
        let to = Audience {
            sale: &sale,
            user: &user,
        };
        let (_, text) = TokenSigner::derived_from(b"jwt").issue_token(to, 1, i64::MAX);
        assert!(
            TokenSigner::new(b"jwt")
                .verify_token(&text, to, 1, 0)
                .is_err()
        );
        assert!(
            TokenSigner::derived_from(b"jwt")
                .verify_token(&text, to, 1, 0)
                .is_ok()
        );
    }
}
