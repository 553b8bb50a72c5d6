//! A "login service" for unit tests: the fixed keys under `tests/fixtures/jwt/`, tokens they
//! sign, and the JWKS that publishes them.

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::jwks::KeySet;

/// The fixture key file `name` (read at run time: the build itself reads no test file).
pub fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/");
    std::fs::read(format!("{dir}{name}")).unwrap()
}

/// A private key of the login service, with its `kid`.
pub struct SigningKey {
    pub kid: &'static str,
    pub alg: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// The RSA key of fixture file `name`.
    pub fn rsa(kid: &'static str, name: &str) -> Self {
        let key = EncodingKey::from_rsa_pem(&fixture(name)).unwrap();
        Self {
            kid,
            alg: Algorithm::RS256,
            key,
        }
    }

    /// The P-256 key of fixture file `name`.
    pub fn ec(kid: &'static str, name: &str) -> Self {
        let key = EncodingKey::from_ec_pem(&fixture(name)).unwrap();
        Self {
            kid,
            alg: Algorithm::ES256,
            key,
        }
    }

    /// A token of `claims` signed with this key, its header naming `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(self.kid), claims)
    }

    /// A token of `claims` signed with this key, its header naming `kid` (if any).
    pub fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// The public half as a JWK.
    pub fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }
}

/// The JWKS document publishing `keys`.
pub fn jwks_json(keys: &[&SigningKey]) -> String {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.jwk()).collect(),
    };
    serde_json::to_string(&set).unwrap()
}

/// The key set publishing `keys`.
pub fn key_set(keys: &[&SigningKey]) -> KeySet {
    KeySet::parse(jwks_json(keys).as_bytes()).unwrap()
}
