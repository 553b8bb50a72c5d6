//! Authentication of buyers (JWT: HS256 with a shared secret, RS256/ES256 with a JWKS) and
//! operators (named admin tokens).

mod claims;
mod hs256;
pub mod jwks;
mod jwt;
mod setup;
pub mod subject;
#[cfg(test)]
mod test_keys;

pub use claims::ClaimRules;
pub use hs256::JwtKeys;
pub use jwks::{Jwks, JwksError, JwksSource};
pub use jwt::{BuyerAuth, JwtError};
pub use setup::buyer_auth;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The name of the credential `offered` is, among `configured` (name, token) pairs.
/// Every credential is compared, in constant time, whichever matches: neither which one
/// matched nor how much of one did leaks through timing. Configured tokens differ from each
/// other (`Settings::validate`), so at most one matches.
pub fn admin_operator<'a>(
    offered: &str,
    configured: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<&'a str> {
    configured.into_iter().fold(None, |found, (name, token)| {
        let matches = admin_token_matches(offered, token);
        found.or(matches.then_some(name))
    })
}

/// Compares an offered admin token with a configured one in constant time (both are
/// MACed under a fixed key first, so neither length nor content leaks through timing).
pub fn admin_token_matches(offered: &str, configured: &str) -> bool {
    let mac = |s: &str| {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(b"flashgate-admin-token").expect("any key length");
        mac.update(s.as_bytes());
        mac
    };
    let expected = mac(configured).finalize().into_bytes();
    mac(offered).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matching_credential_names_the_operator() {
        let configured = [
            ("admin", "admin-token-0123456789"),
            ("alice", "alice-token-0123456789"),
        ];
        assert_eq!(
            admin_operator("alice-token-0123456789", configured),
            Some("alice")
        );
        assert_eq!(
            admin_operator("admin-token-0123456789", configured),
            Some("admin")
        );
        assert_eq!(admin_operator("alice-token-012345678", configured), None);
        assert_eq!(admin_operator("", configured), None);
    }
}
