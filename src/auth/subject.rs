//! From a token's `sub` to the internal buyer id.
//!
//! Shops' login services name their users in many ways: `auth0|5f1e…`, e-mail addresses,
//! UUIDs, opaque base64. The gateway's buyer id ([`UserId`]) is `[A-Za-z0-9_-]{1,64}`,
//! because it goes into Redis keys, buyer records and order rows. The mapping:
//!
//! - a `sub` of 1..=40 characters of `[A-Za-z0-9_-]` is the buyer id as it is;
//! - any other `sub` of at most [`MAX_SUBJECT_BYTES`] bytes becomes `h` followed by the
//!   unpadded base64url SHA-256 of its bytes: always exactly 44 characters.
//!
//! Two distinct subjects never share a buyer id: two kept as they are differ because they
//! are themselves; a kept one (at most 40 characters) and a digested one (44) differ in
//! length; two digested ones would need a SHA-256 collision. The mapping is unkeyed, so a
//! shop can compute the buyer id of any of its users to find their orders.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::domain::UserId;

/// Longest `sub` accepted, in bytes (UTF-8).
pub const MAX_SUBJECT_BYTES: usize = 256;
/// Longest `sub` used as the buyer id unchanged.
pub const VERBATIM_MAX: usize = 40;
/// What starts a digested buyer id.
const DIGEST_PREFIX: u8 = b'h';
/// Characters of an unpadded base64url SHA-256.
const DIGEST_CHARS: usize = 43;

/// Why a `sub` names no buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("the token's subject is empty")]
    Empty,
    #[error("the token's subject is longer than {MAX_SUBJECT_BYTES} bytes")]
    TooLong,
}

/// The buyer id of subject `sub`.
pub fn buyer_id(sub: &str) -> Result<UserId, SubjectError> {
    if sub.is_empty() {
        return Err(SubjectError::Empty);
    }
    if sub.len() > MAX_SUBJECT_BYTES {
        return Err(SubjectError::TooLong);
    }
    if sub.len() <= VERBATIM_MAX && sub.bytes().all(is_id_byte) {
        return Ok(UserId::parse(sub).expect("1..=40 id characters are a user id"));
    }
    let mut id = [0u8; 1 + DIGEST_CHARS];
    id[0] = DIGEST_PREFIX;
    let written = URL_SAFE_NO_PAD
        .encode_slice(Sha256::digest(sub.as_bytes()), &mut id[1..])
        .expect("a SHA-256 is 43 base64url characters");
    debug_assert_eq!(written, DIGEST_CHARS);
    let id = std::str::from_utf8(&id).expect("base64url is ASCII");
    Ok(UserId::parse(id).expect("a digest is 44 id characters"))
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_plain_subject_is_the_buyer_id() {
        for sub in ["alice", "5f1e2d3c", "a", &"x".repeat(VERBATIM_MAX)] {
            assert_eq!(buyer_id(sub).unwrap().as_str(), sub);
        }
    }

    #[test]
    fn providers_subjects_become_digests_of_44_characters() {
        for sub in [
            "auth0|5f1e9a7c3b2d4e0012345678",
            "alice@example.com",
            "google-oauth2|103547991597142817347",
            &"x".repeat(VERBATIM_MAX + 1),
            "élodie",
        ] {
            let id = buyer_id(sub).unwrap();
            assert_eq!(id.as_str().len(), 44, "{sub}");
            assert!(id.as_str().starts_with('h'), "{sub}");
            assert_eq!(buyer_id(sub).unwrap(), id, "stable: {sub}");
        }
    }

    #[test]
    fn the_digest_is_the_documented_one() {
        // python3: "h" + urlsafe_b64encode(sha256(b"alice@example.com").digest()).rstrip("=")
        assert_eq!(
            buyer_id("alice@example.com").unwrap().as_str(),
            "h_42YGfwOEr8NJIkuRZh-JJoo3Og2qFytYOKOqqjG2XY"
        );
    }

    #[test]
    fn empty_and_overlong_subjects_name_nobody() {
        assert_eq!(buyer_id(""), Err(SubjectError::Empty));
        assert!(buyer_id(&"x".repeat(MAX_SUBJECT_BYTES)).is_ok());
        assert_eq!(
            buyer_id(&"x".repeat(MAX_SUBJECT_BYTES + 1)),
            Err(SubjectError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn distinct_subjects_get_distinct_buyer_ids(
            a in "[A-Za-z0-9_|@.+-]{1,60}|\\PC{1,80}",
            b in "[A-Za-z0-9_|@.+-]{1,60}|\\PC{1,80}",
        ) {
            prop_assume!(a != b && a.len() <= MAX_SUBJECT_BYTES && b.len() <= MAX_SUBJECT_BYTES);
            prop_assert_ne!(buyer_id(&a).unwrap(), buyer_id(&b).unwrap());
        }

        #[test]
        fn every_accepted_subject_gets_a_valid_buyer_id_of_a_telling_length(
            sub in "[A-Za-z0-9_-]{1,64}|\\PC{1,100}",
        ) {
            prop_assume!(sub.len() <= MAX_SUBJECT_BYTES);
            let id = buyer_id(&sub).unwrap();
            prop_assert!(UserId::parse(id.as_str()).is_ok());
            if sub.len() <= VERBATIM_MAX && sub.bytes().all(is_id_byte) {
                prop_assert_eq!(id.as_str(), sub.as_str());
            } else {
                prop_assert_eq!(id.as_str().len(), 1 + DIGEST_CHARS);
            }
        }

        #[test]
        fn a_subject_that_looks_like_a_digest_is_still_not_one(
            tail in "[A-Za-z0-9_-]{39}",
        ) {
            // The longest verbatim id is 40 characters: `h` + 39 stays as it is, and can
            // never equal a 44-character digest.
            let sub = format!("h{tail}");
            let id = buyer_id(&sub).unwrap();
            prop_assert_eq!(id.as_str(), sub.as_str());
        }
    }
}
