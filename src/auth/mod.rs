//! Authentication of buyers (JWT) and operators (admin token).

pub mod jwt;

pub use jwt::{JwtError, JwtKeys};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Compares an offered admin token with the configured one in constant time (both are
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
