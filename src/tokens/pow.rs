//! Proof of work: the buyer finds a decimal `nonce` such that
//! `sha256(challenge + ":" + nonce)` starts with at least `difficulty` zero bits. Each extra
//! bit doubles the expected work for the buyer; checking costs one hash.

use sha2::{Digest, Sha256};

/// Longest nonce accepted (a `u64` in decimal has at most 20 digits).
pub const MAX_NONCE_LEN: usize = 20;

/// Why a nonce is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    #[error("the nonce must be 1 to {MAX_NONCE_LEN} decimal digits")]
    Malformed,
    #[error("the proof of work does not meet difficulty {0}")]
    Insufficient(u8),
}

/// Checks that `nonce` solves `challenge` at `difficulty` (0 accepts any well-formed nonce).
pub fn check(challenge: &str, nonce: &str, difficulty: u8) -> Result<(), PowError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PowError::Malformed);
    }
    if difficulty == 0 || leading_zero_bits(&digest(challenge, nonce)) >= u32::from(difficulty) {
        Ok(())
    } else {
        Err(PowError::Insufficient(difficulty))
    }
}

/// Finds the smallest nonce solving `challenge` at `difficulty` (for tests, tools and
/// benchmarks; buyers' browsers do this in JavaScript).
pub fn solve(challenge: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| check(challenge, nonce, difficulty).is_ok())
        .expect("some nonce below 2^64 solves any difficulty up to 32")
}

fn digest(challenge: &str, nonce: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize()
        .into()
}

/// Zero bits before the first one bit.
fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for &byte in hash {
        if byte != 0 {
            return bits + byte.leading_zeros();
        }
        bits += 8;
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_leading_zero_bits() {
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0x00, 0x01]), 15);
        assert_eq!(leading_zero_bits(&[0x0f, 0xff]), 4);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }

    #[test]
    fn a_solution_passes_and_its_neighbours_mostly_do_not() {
        let nonce = solve("abc", 12);
        assert_eq!(check("abc", &nonce, 12), Ok(()));
        // The hash is sha256("abc:<nonce>"), as a browser would compute it.
        let hash = Sha256::digest(format!("abc:{nonce}").as_bytes());
        assert!(leading_zero_bits(&hash) >= 12);
        assert_eq!(
            check("abd", &nonce, 12).err().is_some(),
            leading_zero_bits(&digest("abd", &nonce)) < 12
        );
    }

    #[test]
    fn difficulty_zero_accepts_any_decimal_nonce_only() {
        assert_eq!(check("c", "0", 0), Ok(()));
        assert_eq!(check("c", "", 0), Err(PowError::Malformed));
        assert_eq!(check("c", "12a", 0), Err(PowError::Malformed));
        assert_eq!(check("c", "-1", 0), Err(PowError::Malformed));
        assert_eq!(check("c", &"9".repeat(21), 0), Err(PowError::Malformed));
    }

    #[test]
    fn a_wrong_nonce_is_refused() {
        let nonce = solve("xyz", 16);
        let wrong = (0u64..)
            .map(|n| n.to_string())
            .find(|n| leading_zero_bits(&digest("xyz", n)) < 16)
            .unwrap();
        assert_eq!(check("xyz", &wrong, 16), Err(PowError::Insufficient(16)));
        assert_eq!(check("xyz", &nonce, 16), Ok(()));
    }
}
