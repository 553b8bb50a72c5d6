//! A buyer's bearer token, whichever way it was signed: the token is split once, its
//! header read once, and the header's `alg` picks the check. HS256 with the common header
//! is recognised by comparing strings, so the purchase path's usual token costs no header
//! decoding; RS256 and ES256 are checked with the key the header's `kid` names in the
//! configured JWKS. Then the claims: `exp`, `nbf`, `iss`, `aud` and the `sub`, mapped to
//! the buyer id.
//!
//! An algorithm is never taken from the key alone or the key from the algorithm alone:
//! HS256 tokens are only ever checked with the HS256 secret, and a JWKS key only with the
//! algorithm of its kind (RSA: RS256, P-256: ES256). So a token "signed" with HMAC under a
//! published public key, or with `alg: none`, is refused.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::claims::{ClaimRules, Text};
use super::hs256::{JwtKeys, STANDARD_HEADER};
use super::jwks::{Jwks, SigningAlg};
use crate::domain::UserId;

/// Why a bearer token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is not three base64url segments")]
    Malformed,
    #[error("token algorithm is not one this gateway accepts")]
    Algorithm,
    #[error("token names no key of the configured JWKS")]
    UnknownKey,
    #[error("token signature does not verify")]
    Signature,
    #[error("token claims are invalid")]
    Claims,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued by another issuer")]
    Issuer,
    #[error("token is meant for another audience")]
    Audience,
    #[error("token subject is empty or too long")]
    Subject,
}

/// Claims this long or shorter are decoded on the stack.
const STACK_CLAIMS: usize = 512;

/// The fields of a JOSE header the gateway reads.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Text<'a>>,
    /// Extensions the signer says must be understood: none are, so their presence refuses.
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// A token split into its segments.
struct Segments<'t> {
    /// `header.payload`, what the signature covers.
    signing_input: &'t str,
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
}

impl<'t> Segments<'t> {
    fn split(token: &'t str) -> Result<Self, JwtError> {
        let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = signing_input.split_once('.').ok_or(JwtError::Malformed)?;
        if payload.contains('.') {
            return Err(JwtError::Malformed);
        }
        Ok(Self {
            signing_input,
            header,
            payload,
            signature,
        })
    }
}

/// Verifies buyers' tokens: HS256 with a shared secret and/or RS256/ES256 with a JWKS, under
/// the configured claim rules.
#[derive(Debug, Clone)]
pub struct BuyerAuth {
    hs256: Option<JwtKeys>,
    jwks: Option<Arc<Jwks>>,
    rules: ClaimRules,
}

impl BuyerAuth {
    /// A verifier accepting HS256 tokens under `hs256` (if any) and RS256/ES256 tokens
    /// under the keys of `jwks` (if any).
    pub fn new(hs256: Option<JwtKeys>, jwks: Option<Arc<Jwks>>, rules: ClaimRules) -> Self {
        Self { hs256, jwks, rules }
    }

    /// A verifier of HS256 tokens under `secret` alone, checking `exp` without leeway.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::new(Some(JwtKeys::new(secret)), None, ClaimRules::default())
    }

    /// The JWKS this verifier reads, if any (to refresh it).
    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// The buyer named by a valid token, checked with the keys at hand: a `kid` not in the
    /// JWKS is [`JwtError::UnknownKey`] (see [`Self::verify_refreshing`]).
    pub fn verify(&self, token: &str, now_unix: i64) -> Result<UserId, JwtError> {
        let token = Segments::split(token)?;
        if token.header == STANDARD_HEADER {
            self.check_hs256(&token)?;
        } else {
            self.check_signature(&token)?;
        }
        with_claims(token.payload, |claims| self.rules.buyer(claims, now_unix))
    }

    /// As [`Self::verify`], but a `kid` the JWKS does not have triggers a refresh of the
    /// JWKS (at most one per `auth.jwks_min_refresh_s`, shared by every request waiting for
    /// it) before the token is refused: a key the login service has just started using
    /// works from its first token.
    pub async fn verify_refreshing(&self, token: &str, now_unix: i64) -> Result<UserId, JwtError> {
        match (self.verify(token, now_unix), &self.jwks) {
            (Err(JwtError::UnknownKey), Some(jwks)) => {
                jwks.refresh_early(now_unix).await;
                self.verify(token, now_unix)
            }
            (verdict, _) => verdict,
        }
    }

    fn check_hs256(&self, token: &Segments) -> Result<(), JwtError> {
        let keys = self.hs256.as_ref().ok_or(JwtError::Algorithm)?;
        keys.check(token.signing_input, token.signature)
    }

    /// Reads the header and checks the signature with the algorithm it names.
    fn check_signature(&self, token: &Segments) -> Result<(), JwtError> {
        let header = URL_SAFE_NO_PAD
            .decode(token.header)
            .map_err(|_| JwtError::Malformed)?;
        let header: Header = serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::Algorithm);
        }
        if header.alg == "HS256" {
            return self.check_hs256(token);
        }
        let alg = SigningAlg::named(&header.alg).ok_or(JwtError::Algorithm)?;
        let jwks = self.jwks.as_ref().ok_or(JwtError::Algorithm)?;
        let kid = header.kid.ok_or(JwtError::UnknownKey)?;
        let key = jwks.key(kid.as_str()).ok_or(JwtError::UnknownKey)?;
        key.check(alg, token.signing_input, token.signature)
    }
}

/// `check` of the payload's JSON, decoded on the stack when short.
fn with_claims<T>(
    payload: &str,
    check: impl FnOnce(&[u8]) -> Result<T, JwtError>,
) -> Result<T, JwtError> {
    let mut stack = [0u8; STACK_CLAIMS];
    match URL_SAFE_NO_PAD.decode_slice(payload, &mut stack) {
        Ok(len) => check(&stack[..len]),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            let heap = URL_SAFE_NO_PAD
                .decode(payload)
                .map_err(|_| JwtError::Malformed)?;
            check(&heap)
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(JwtError::Malformed),
    }
}

#[cfg(test)]
mod tests;
