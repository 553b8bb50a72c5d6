//! The public keys of a JWKS document, by `kid`, each bound to the one algorithm its kind
//! allows: an RSA key verifies RS256 only, a P-256 key ES256 only. Keys of other kinds
//! (symmetric `oct` keys above all: a published JWKS is public), keys meant for encryption,
//! keys without a `kid` and keys whose `alg` names another algorithm are left out. Each key
//! is decoded once, when the JWKS is read (RustCrypto's `rsa` and `p256`, which
//! `jsonwebtoken` itself verifies with), so a token pays for its signature check alone.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, EllipticCurveKeyParameters, Jwk, JwkSet, KeyAlgorithm,
    PublicKeyUse, RSAKeyParameters,
};
use p256::ecdsa::signature::Verifier as _;
use rsa::BoxedUint;

use crate::auth::JwtError;

/// The asymmetric algorithms buyer tokens may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

impl SigningAlg {
    /// The algorithm a JOSE header's `alg` names, if it is one of these.
    pub fn named(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// Why a JWKS document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("the JWKS is not a JSON key set")]
    Json(#[source] serde_json::Error),
    #[error("the JWKS has no RS256 or ES256 signing key with a kid")]
    NoUsableKey,
}

/// One public key, decoded once, and so the one algorithm it verifies.
pub enum PublicKey {
    Rs256(rsa::pkcs1v15::VerifyingKey<rsa::sha2::Sha256>),
    Es256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    /// Checks `signature` (base64url) over `signing_input` with this key, if the token's
    /// algorithm is this key's.
    pub fn check(
        &self,
        alg: SigningAlg,
        signing_input: &str,
        signature: &str,
    ) -> Result<(), JwtError> {
        if alg != self.alg() {
            return Err(JwtError::Algorithm);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwtError::Malformed)?;
        let message = signing_input.as_bytes();
        let verified = match self {
            Self::Rs256(key) => rsa::pkcs1v15::Signature::try_from(&signature[..])
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
            Self::Es256(key) => p256::ecdsa::Signature::from_slice(&signature)
                .is_ok_and(|signature| key.verify(message, &signature).is_ok()),
        };
        verified.then_some(()).ok_or(JwtError::Signature)
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> SigningAlg {
        match self {
            Self::Rs256(_) => SigningAlg::Rs256,
            Self::Es256(_) => SigningAlg::Es256,
        }
    }
}

/// Usable keys by `kid`.
#[derive(Default, Clone)]
pub struct KeySet {
    keys: HashMap<String, Arc<PublicKey>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("KeySet").field("kids", &kids).finish()
    }
}

impl KeySet {
    /// The usable keys of the JWKS document `json`; at least one.
    pub fn parse(json: &[u8]) -> Result<Self, KeySetError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(KeySetError::Json)?;
        let keys: HashMap<String, Arc<PublicKey>> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                let key = usable(jwk)?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self { keys })
    }

    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<PublicKey>> {
        self.keys.get(kid)
    }

    /// How many keys the set has.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys of every set in `sets`; where two name the same `kid`, the earlier wins.
    pub fn union<'a>(sets: impl IntoIterator<Item = &'a KeySet>) -> Self {
        let mut keys = HashMap::new();
        for set in sets {
            for (kid, key) in &set.keys {
                keys.entry(kid.clone()).or_insert_with(|| key.clone());
            }
        }
        Self { keys }
    }
}

/// The key `jwk` describes, if it is an RS256 or ES256 signing key.
fn usable(jwk: &Jwk) -> Option<PublicKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let (key, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => (rsa_key(rsa)?, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            (p256_key(ec)?, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|alg| alg != declared) {
        return None;
    }
    Some(key)
}

fn rsa_key(params: &RSAKeyParameters) -> Option<PublicKey> {
    let n = URL_SAFE_NO_PAD.decode(&params.n).ok()?;
    let e = URL_SAFE_NO_PAD.decode(&params.e).ok()?;
    let key = rsa::PublicKey::new(
        BoxedUint::from_be_slice_vartime(&n),
        BoxedUint::from_be_slice_vartime(&e),
    )
    .ok()?;
    Some(PublicKey::Rs256(rsa::pkcs1v15::VerifyingKey::new(key)))
}

fn p256_key(params: &EllipticCurveKeyParameters) -> Option<PublicKey> {
    let (x, y) = (
        URL_SAFE_NO_PAD.decode(&params.x).ok()?,
        URL_SAFE_NO_PAD.decode(&params.y).ok()?,
    );
    if x.len() != 32 || y.len() != 32 {
        return None;
    }
    let mut point = Vec::with_capacity(65);
    point.push(0x04); // SEC1 uncompressed: 0x04 || x || y
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?;
    Some(PublicKey::Es256(key))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::auth::test_keys::{SigningKey, jwks_json};

    fn jwk_of(key: &SigningKey) -> Value {
        let set: Value = serde_json::from_str(&jwks_json(&[key])).unwrap();
        set["keys"][0].clone()
    }

    #[test]
    fn only_rs256_and_es256_signing_keys_with_a_kid_are_kept() {
        let (rsa, ec) = (
            SigningKey::rsa("rsa-a", "rsa-a.pem"),
            SigningKey::ec("ec-a", "ec-a.pem"),
        );
        let mut for_encryption = jwk_of(&rsa);
        for_encryption["kid"] = json!("enc");
        for_encryption["use"] = json!("enc");
        let mut other_alg = jwk_of(&rsa);
        other_alg["kid"] = json!("ps");
        other_alg["alg"] = json!("PS256");
        let mut no_kid = jwk_of(&ec);
        no_kid.as_object_mut().unwrap().remove("kid");
        let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"});
        let set = json!({"keys": [
            jwk_of(&rsa), jwk_of(&ec), for_encryption, other_alg, no_kid, oct
        ]});
        let keys = KeySet::parse(set.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert_eq!(keys.get("rsa-a").unwrap().alg(), SigningAlg::Rs256);
        assert_eq!(keys.get("ec-a").unwrap().alg(), SigningAlg::Es256);
    }

    #[test]
    fn a_set_without_a_usable_key_or_not_json_is_refused() {
        let oct = json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]});
        assert!(matches!(
            KeySet::parse(oct.to_string().as_bytes()),
            Err(KeySetError::NoUsableKey)
        ));
        assert!(matches!(
            KeySet::parse(b"<html>"),
            Err(KeySetError::Json(_))
        ));
    }

    #[test]
    fn where_two_sets_name_one_kid_the_earlier_wins() {
        let ec = SigningKey::ec("same", "ec-a.pem");
        let rsa = SigningKey::rsa("same", "rsa-a.pem");
        let first = KeySet::parse(jwks_json(&[&ec]).as_bytes()).unwrap();
        let second = KeySet::parse(jwks_json(&[&rsa]).as_bytes()).unwrap();
        let union = KeySet::union([&first, &second]);
        assert_eq!(union.get("same").unwrap().alg(), SigningAlg::Es256);
    }
}
