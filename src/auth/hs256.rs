//! HS256 buyer tokens: one secret shared with the site's login service, checked in constant
//! time. This is the purchase path's usual credential, so it stays lean: no allocation for
//! the signature, and the common header is recognised without decoding it.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use super::JwtError;
use crate::domain::UserId;

type HmacSha256 = Hmac<Sha256>;

/// The header every HS256 token minted by common libraries carries,
/// `{"alg":"HS256","typ":"JWT"}`, base64url: recognised without decoding it.
pub(super) const STANDARD_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
/// Bytes of an HMAC-SHA256 signature.
const SIGNATURE_LEN: usize = 32;

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: Cow<'a, str>,
    exp: i64,
}

/// Verifies (and mints) HS256 tokens with one secret.
#[derive(Clone)]
pub struct JwtKeys {
    mac: HmacSha256,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    /// Keys for `secret`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// Whether `signature` (base64url) is this secret's HMAC of `signing_input`
    /// (`header.payload`).
    pub(super) fn check(&self, signing_input: &str, signature: &str) -> Result<(), JwtError> {
        let mut tag = [0u8; SIGNATURE_LEN];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
            Ok(SIGNATURE_LEN) => {}
            _ => return Err(JwtError::Malformed),
        }
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&tag).map_err(|_| JwtError::Signature)
    }

    /// A token for `user` expiring at `exp` (unix seconds).
    pub fn mint(&self, user: &UserId, exp: i64) -> String {
        self.mint_subject(user.as_str(), exp)
    }

    /// A token whose `sub` is `subject`, whatever it is, expiring at `exp` (unix seconds).
    pub fn mint_subject(&self, subject: &str, exp: i64) -> String {
        let claims = MintedClaims {
            sub: Cow::Borrowed(subject),
            exp,
        };
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let signing_input = format!("{STANDARD_HEADER}.{payload}");
        let signature = self.sign(&signing_input);
        format!("{signing_input}.{signature}")
    }

    /// The base64url signature of `signing_input`.
    pub(super) fn sign(&self, signing_input: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(signing_input.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_header_constant_is_what_it_says() {
        let decoded = URL_SAFE_NO_PAD.decode(STANDARD_HEADER).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn a_signature_checks_only_under_its_secret() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let signature = keys.sign("a.b");
        assert_eq!(keys.check("a.b", &signature), Ok(()));
        assert_eq!(keys.check("a.c", &signature), Err(JwtError::Signature));
        let other = JwtKeys::new(b"another secret, another site....");
        assert_eq!(other.check("a.b", &signature), Err(JwtError::Signature));
    }

    #[test]
    fn a_signature_of_the_wrong_length_is_malformed() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let signature = keys.sign("a.b");
        assert_eq!(
            keys.check("a.b", &signature[..signature.len() - 4]),
            Err(JwtError::Malformed)
        );
        assert_eq!(
            keys.check("a.b", &format!("{signature}AAAA")),
            Err(JwtError::Malformed)
        );
    }
}
