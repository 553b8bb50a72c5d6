// Proof of work for purchase tokens: find a decimal `nonce` such that
// sha256(challenge + ":" + nonce) has at least `difficulty` leading zero bits.

import crypto from 'k6/crypto';

// Leading zero bits of a byte array.
export function leadingZeroBits(bytes) {
    let bits = 0;
    for (let i = 0; i < bytes.length; i++) {
        const b = bytes[i];
        if (b === 0) {
            bits += 8;
            continue;
        }
        // Math.clz32 counts in 32 bits; a byte has 24 of them above it.
        return bits + Math.clz32(b) - 24;
    }
    return bits;
}

// Whether `nonce` solves `challenge` at `difficulty`.
export function powValid(challenge, nonce, difficulty) {
    if (difficulty <= 0) return true;
    const digest = new Uint8Array(crypto.sha256(`${challenge}:${nonce}`, 'binary'));
    return leadingZeroBits(digest) >= difficulty;
}

// Solves the puzzle with at most `maxAttempts` hashes (default: 64 times the expected work,
// at least 1,000). Returns { nonce, attempts } (nonce a decimal string), or
// { nonce: null, attempts } when no solution was found within the bound.
export function solvePow(challenge, difficulty, maxAttempts) {
    if (difficulty <= 0) return { nonce: '0', attempts: 0 };
    const bound = maxAttempts || Math.max(1000, 64 * Math.pow(2, difficulty));
    // Start from a random point so concurrent solvers of one challenge do not all agree.
    const start = Math.floor(Math.random() * 1e9);
    for (let i = 0; i < bound; i++) {
        const nonce = String(start + i);
        if (powValid(challenge, nonce, difficulty)) {
            return { nonce, attempts: i + 1 };
        }
    }
    return { nonce: null, attempts: bound };
}
