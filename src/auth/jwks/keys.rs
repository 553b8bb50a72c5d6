//! The public keys of a JWKS document, by `kid`, each bound to the one algorithm its kind
//! allows: an RSA key verifies RS256 only, a P-256 key ES256 only. Keys of other kinds
//! (symmetric `oct` keys above all: a published JWKS is public), keys meant for encryption,
//! keys without a `kid` and keys whose `alg` names another algorithm are left out.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

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

    fn jose(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
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

/// One public key and the algorithm it verifies.
pub struct PublicKey {
    alg: SigningAlg,
    key: DecodingKey,
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
        if alg != self.alg {
            return Err(JwtError::Algorithm);
        }
        match jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &self.key,
            alg.jose(),
        ) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => Err(JwtError::Signature),
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
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => SigningAlg::Rs256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            SigningAlg::Es256
        }
        _ => return None,
    };
    let declared = jwk.common.key_algorithm;
    let expected = match alg {
        SigningAlg::Rs256 => KeyAlgorithm::RS256,
        SigningAlg::Es256 => KeyAlgorithm::ES256,
    };
    if declared.is_some_and(|declared| declared != expected) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(PublicKey { alg, key })
}
