//! Buyer identity: HS256 JSON Web Tokens, verified in constant time. The site's login
//! service mints them; the gateway only verifies (and `flashgate token` mints test ones).

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
struct Header {
    alg: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
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

    /// The buyer named by a valid, unexpired token.
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<UserId, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let mut mac = self.mac.clone();
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| JwtError::Signature)?;
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(JwtError::Algorithm);
        }
        let claims: Claims = decode_json(payload)?;
        if claims.exp <= now_unix {
            return Err(JwtError::Expired);
        }
        UserId::parse(&claims.sub).map_err(|_| JwtError::Claims)
    }

    /// A token for `user` expiring at `exp` (unix seconds).
    pub fn mint(&self, user: &UserId, exp: i64) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            sub: user.as_str().to_owned(),
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

fn decode_json<T: for<'de> Deserialize<'de>>(segment: &str) -> Result<T, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Claims)
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

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice","exp":9999999999}"#);
        assert!(keys().verify(&format!("{header}.{payload}."), NOW).is_err());
    }
}
