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
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::test_keys::{SigningKey, fixture, key_set};

    const NOW: i64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn rsa_a() -> SigningKey {
        SigningKey::rsa("rsa-a", "rsa-a.pem")
    }

    fn ec_a() -> SigningKey {
        SigningKey::ec("ec-a", "ec-a.pem")
    }

    /// Accepts HS256 under `SECRET` and the JWKS of `rsa-a` and `ec-a`.
    fn auth() -> BuyerAuth {
        let jwks = Jwks::fixed(key_set(&[&rsa_a(), &ec_a()]));
        let rules = ClaimRules {
            issuer: Some("https://login.shop.example/".into()),
            audience: Some("flashgate".into()),
            leeway_s: 30,
        };
        BuyerAuth::new(Some(JwtKeys::new(SECRET)), Some(Arc::new(jwks)), rules)
    }

    fn claims(sub: &str) -> serde_json::Value {
        json!({
            "sub": sub,
            "exp": NOW + 60,
            "iss": "https://login.shop.example/",
            "aud": ["account", "flashgate"],
        })
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    /// Signs `header.payload` (both JSON) with HMAC under `secret`, however unusual.
    fn hs_signed(secret: &[u8], header: &str, payload: &str) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        format!("{input}.{}", JwtKeys::new(secret).sign(&input))
    }

    #[test]
    fn rs256_and_es256_tokens_from_the_jwks_name_their_buyer() {
        for key in [rsa_a(), ec_a()] {
            let token = key.sign(&claims("alice"));
            assert_eq!(auth().verify(&token, NOW), Ok(user("alice")), "{}", key.kid);
        }
    }

    #[test]
    fn an_hs256_token_with_the_common_header_takes_the_fast_path_and_verifies() {
        let token = hs_signed(
            SECRET,
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims("alice").to_string(),
        );
        assert!(token.starts_with(STANDARD_HEADER));
        assert_eq!(auth().verify(&token, NOW), Ok(user("alice")));
        let other_header = hs_signed(
            SECRET,
            r#"{"typ":"JWT","alg":"HS256"}"#,
            &claims("bob").to_string(),
        );
        assert_eq!(auth().verify(&other_header, NOW), Ok(user("bob")));
    }

    #[test]
    fn minted_tokens_verify_and_expire_without_leeway_under_the_hs256_only_verifier() {
        let keys = JwtKeys::new(SECRET);
        let hs = BuyerAuth::hs256(SECRET);
        assert_eq!(
            hs.verify(&keys.mint(&user("alice"), NOW + 1), NOW),
            Ok(user("alice"))
        );
        assert_eq!(
            hs.verify(&keys.mint(&user("alice"), NOW), NOW),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn each_claim_rule_is_enforced_for_jwks_tokens() {
        let key = rsa_a();
        let with = |field: &str, value: serde_json::Value| {
            let mut claims = claims("alice");
            claims[field] = value;
            key.sign(&claims)
        };
        let cases = [
            (with("exp", json!(NOW - 31)), JwtError::Expired),
            (with("nbf", json!(NOW + 31)), JwtError::NotYetValid),
            (
                with("iss", json!("https://evil.example/")),
                JwtError::Issuer,
            ),
            (with("aud", json!("another-api")), JwtError::Audience),
        ];
        for (token, expected) in cases {
            assert_eq!(auth().verify(&token, NOW), Err(expected));
        }
    }

    #[test]
    fn a_kid_not_in_the_jwks_is_an_unknown_key_and_so_is_no_kid() {
        let stranger = SigningKey::rsa("rsa-b", "rsa-b.pem");
        assert_eq!(
            auth().verify(&stranger.sign(&claims("alice")), NOW),
            Err(JwtError::UnknownKey)
        );
        let no_kid = rsa_a().sign_as(None, &claims("alice"));
        assert_eq!(auth().verify(&no_kid, NOW), Err(JwtError::UnknownKey));
    }

    #[test]
    fn a_known_kid_on_a_token_signed_by_another_key_is_refused() {
        let impostor = SigningKey::rsa("rsa-b", "rsa-b.pem");
        let token = impostor.sign_as(Some("rsa-a"), &claims("alice"));
        assert_eq!(auth().verify(&token, NOW), Err(JwtError::Signature));
    }

    #[test]
    fn an_rsa_key_never_verifies_an_hs256_token_made_with_the_public_key_as_secret() {
        let header = r#"{"alg":"HS256","typ":"JWT","kid":"rsa-a"}"#;
        let token = hs_signed(
            &fixture("rsa-a.pub.pem"),
            header,
            &claims("alice").to_string(),
        );
        assert_eq!(auth().verify(&token, NOW), Err(JwtError::Signature));
        let jwks_only = BuyerAuth::new(
            None,
            Some(Arc::new(Jwks::fixed(key_set(&[&rsa_a()])))),
            ClaimRules::default(),
        );
        assert_eq!(jwks_only.verify(&token, NOW), Err(JwtError::Algorithm));
        let standard = hs_signed(
            &fixture("rsa-a.pub.pem"),
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims("alice").to_string(),
        );
        assert_eq!(jwks_only.verify(&standard, NOW), Err(JwtError::Algorithm));
    }

    #[test]
    fn a_key_verifies_only_the_algorithm_of_its_kind() {
        // An ES256 header naming the RSA key, and the reverse.
        let ec_signed_naming_rsa = ec_a().sign_as(Some("rsa-a"), &claims("alice"));
        assert_eq!(
            auth().verify(&ec_signed_naming_rsa, NOW),
            Err(JwtError::Algorithm)
        );
        let rsa_signed_naming_ec = rsa_a().sign_as(Some("ec-a"), &claims("alice"));
        assert_eq!(
            auth().verify(&rsa_signed_naming_ec, NOW),
            Err(JwtError::Algorithm)
        );
    }

    #[test]
    fn alg_none_and_unsupported_algorithms_are_refused() {
        let payload = URL_SAFE_NO_PAD.encode(claims("alice").to_string());
        for alg in ["none", "None", "HS512", "RS512", "PS256", "EdDSA"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","kid":"rsa-a"}}"#));
            for signature in ["", "c2lnbmF0dXJl"] {
                let token = format!("{header}.{payload}.{signature}");
                assert_eq!(
                    auth().verify(&token, NOW),
                    Err(JwtError::Algorithm),
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn a_header_with_critical_extensions_is_refused() {
        let header = r#"{"alg":"HS256","crit":["exp"],"exp":1}"#;
        let token = hs_signed(SECRET, header, &claims("alice").to_string());
        assert_eq!(auth().verify(&token, NOW), Err(JwtError::Algorithm));
    }

    #[test]
    fn providers_subjects_map_to_one_buyer_each() {
        let auth0 = rsa_a().sign(&claims("auth0|5f1e9a7c3b2d4e0012345678"));
        let email = ec_a().sign(&claims("alice@example.com"));
        let a = auth().verify(&auth0, NOW).unwrap();
        let b = auth().verify(&email, NOW).unwrap();
        assert_ne!(a, b);
        assert_eq!(b.as_str(), "h_42YGfwOEr8NJIkuRZh-JJoo3Og2qFytYOKOqqjG2XY");
    }

    #[test]
    fn every_single_character_change_is_refused() {
        for token in [
            JwtKeys::new(SECRET).mint(&user("alice"), 9_999_999_999),
            ec_a().sign(&claims("alice")),
        ] {
            for i in 0..token.len() {
                let mut bytes = token.clone().into_bytes();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let forged = String::from_utf8(bytes).unwrap();
                if forged != token {
                    assert!(
                        auth().verify(&forged, NOW).is_err(),
                        "accepted change at {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn tokens_that_are_not_three_segments_are_malformed() {
        for token in ["", "a", "a.b", "a.b.c.d", "..", "!!.??.**"] {
            assert!(auth().verify(token, NOW).is_err(), "{token}");
        }
        assert_eq!(auth().verify("a.b.c.d", NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn long_claims_verify_from_the_heap() {
        let mut long = claims("alice");
        long["roles"] = json!("r".repeat(2 * STACK_CLAIMS));
        assert_eq!(auth().verify(&rsa_a().sign(&long), NOW), Ok(user("alice")));
        let hs = hs_signed(SECRET, r#"{"alg":"HS256","typ":"JWT"}"#, &long.to_string());
        assert_eq!(auth().verify(&hs, NOW), Ok(user("alice")));
    }
}
