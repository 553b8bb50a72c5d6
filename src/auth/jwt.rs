//! Buyer identity: HS256 JSON Web Tokens, verified in constant time. The site's login
//! service mints them; the gateway only verifies (and `flashgate token` mints test ones).

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::UserId;

type HmacSha256 = Hmac<Sha256>;

/// Why a bearer token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not three base64url segments")]
    Malformed,
    #[error("token algorithm is not HS256")]
    Algorithm,
    #[error("token signature does not verify")]
    Signature,
    #[error("token claims are invalid")]
    Claims,
    #[error("token has expired")]
    Expired,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    sub: Cow<'a, str>,
    exp: i64,
}

/// The header every HS256 token minted by common libraries carries,
/// `{"alg":"HS256","typ":"JWT"}`, base64url: recognised without decoding it.
const STANDARD_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
/// Bytes of an HMAC-SHA256 signature.
const SIGNATURE_LEN: usize = 32;
/// Claims this long or shorter are decoded on the stack.
const STACK_CLAIMS: usize = 384;

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

    /// The buyer named by a valid, unexpired token.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<UserId, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let mut tag = [0u8; SIGNATURE_LEN];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
            Ok(SIGNATURE_LEN) => {}
            _ => return Err(JwtError::Malformed),
        }
        let mut mac = self.mac.clone();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).map_err(|_| JwtError::Signature)?;
        if header != STANDARD_HEADER {
            let bytes = decode_segment(header)?;
            let header: Header = serde_json::from_slice(&bytes).map_err(|_| JwtError::Claims)?;
            if header.alg != "HS256" {
                return Err(JwtError::Algorithm);
            }
        }
        let mut stack = [0u8; STACK_CLAIMS];
        let heap;
        let claims = match URL_SAFE_NO_PAD.decode_slice(payload, &mut stack) {
            Ok(len) => &stack[..len],
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                heap = decode_segment(payload)?;
                &heap[..]
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => return Err(JwtError::Malformed),
        };
        let claims: Claims = serde_json::from_slice(claims).map_err(|_| JwtError::Claims)?;
        if claims.exp <= now_unix {
            return Err(JwtError::Expired);
        }
        UserId::parse(&claims.sub).map_err(|_| JwtError::Claims)
    }

    /// A token for `user` expiring at `exp` (unix seconds).
    pub fn mint(&self, user: &UserId, exp: i64) -> String {
        let header = STANDARD_HEADER;
        let claims = Claims {
            sub: Cow::Borrowed(user.as_str()),
            exp,
        };
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let mut mac = self.mac.clone();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{signature}")
    }
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef")
    }

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    #[test]
    fn minted_token_verifies_to_its_user() {
        let token = keys().mint(&alice(), NOW + 60);
        assert_eq!(keys().verify(&token, NOW), Ok(alice()));
    }

    #[test]
    fn expired_token_is_refused() {
        let token = keys().mint(&alice(), NOW);
        assert_eq!(keys().verify(&token, NOW), Err(JwtError::Expired));
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = JwtKeys::new(b"another secret, another site....").mint(&alice(), NOW + 60);
        assert_eq!(keys().verify(&token, NOW), Err(JwtError::Signature));
    }

    #[test]
    fn every_single_character_change_is_refused() {
        let token = keys().mint(&alice(), NOW + 60);
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(bytes).unwrap();
            if forged != token {
                assert!(
                    keys().verify(&forged, NOW).is_err(),
                    "accepted change at {i}"
                );
            }
        }
    }

    /// Signs `header.payload` (both JSON) with `keys`, however unusual they are.
    fn signed(keys: &JwtKeys, header: &str, payload: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(header);
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mut mac = keys.mac.clone();
        mac.update(format!("{header}.{payload}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{signature}")
    }

    #[test]
    fn the_standard_header_constant_is_what_it_says() {
        let decoded = URL_SAFE_NO_PAD.decode(STANDARD_HEADER).unwrap();
        assert_eq!(decoded, br#"{"alg":"HS256","typ":"JWT"}"#);
    }

    #[test]
    fn any_hs256_header_is_accepted_not_only_the_standard_one() {
        for header in [r#"{"typ":"JWT","alg":"HS256"}"#, r#"{"alg":"HS256"}"#] {
            let token = signed(&keys(), header, r#"{"sub":"alice","exp":9999999999}"#);
            assert_eq!(keys().verify(&token, NOW), Ok(alice()), "{header}");
        }
    }

    #[test]
    fn a_signed_header_naming_another_algorithm_is_refused() {
        let token = signed(
            &keys(),
            r#"{"alg":"HS512","typ":"JWT"}"#,
            r#"{"sub":"alice","exp":9999999999}"#,
        );
        assert_eq!(keys().verify(&token, NOW), Err(JwtError::Algorithm));
    }

    #[test]
    fn long_claims_and_escaped_subjects_verify() {
        let roles = "r".repeat(2 * STACK_CLAIMS);
        let long = format!(r#"{{"sub":"alice","exp":9999999999,"roles":"{roles}"}}"#);
        let token = signed(&keys(), r#"{"alg":"HS256","typ":"JWT"}"#, &long);
        assert_eq!(keys().verify(&token, NOW), Ok(alice()));
        let escaped = signed(
            &keys(),
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"\u0061lice","exp":9999999999}"#,
        );
        assert_eq!(keys().verify(&escaped, NOW), Ok(alice()));
    }

    #[test]
    fn a_signature_of_the_wrong_length_is_malformed() {
        let token = keys().mint(&alice(), NOW + 60);
        let short = &token[..token.len() - 4];
        assert_eq!(keys().verify(short, NOW), Err(JwtError::Malformed));
        assert_eq!(
            keys().verify(&format!("{token}AAAA"), NOW),
            Err(JwtError::Malformed)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":9999999999}"#);
        assert!(keys().verify(&format!("{header}.{payload}."), NOW).is_err());
    }
}
