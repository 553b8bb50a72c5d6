// flashgate proof of work, for browser frontends (no dependencies, plain script or module).
//
// A purchase needs a purchase token; a token needs the answer to a challenge:
//   POST /api/v1/sales/{sale_id}/challenge  -> {challenge, difficulty, expires_at}
//   find a decimal nonce such that sha256(challenge + ":" + nonce) starts with at least
//   `difficulty` zero bits (difficulty 0: any nonce passes)
//   POST /api/v1/sales/{sale_id}/tokens {challenge, nonce} -> 201 {purchase_token, expires_at}
//
// Usage:
//   <script src="pow.js"></script>
//   const nonce = await flashgatePow.solve(challenge, difficulty);
//   // or all three steps at once (the gateway's origin must be in http.cors_origins
//   // when the page is served from another origin):
//   const {purchase_token} = await flashgatePow.purchaseToken(gatewayUrl, saleId, buyerJwt);
//
// SHA-256 is computed here in JavaScript rather than with crypto.subtle: subtle is only
// available to secure contexts and costs a promise per hash, while a search hashes
// thousands of short strings. The search yields to the event loop every few milliseconds,
// so the page stays responsive.
(function (root) {
  "use strict";

  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);
  const W = new Uint32Array(64);

  /** SHA-256 of `bytes` (a Uint8Array), as 8 big-endian 32-bit words. */
  function sha256(bytes) {
    const length = bytes.length;
    const blocks = ((length + 8) >> 6) + 1;
    const padded = new Uint8Array(blocks * 64);
    padded.set(bytes);
    padded[length] = 0x80;
    const bits = length * 8;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(padded.length - 4, bits >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    for (let block = 0; block < blocks; block++) {
      for (let i = 0; i < 16; i++) W[i] = view.getUint32(block * 64 + i * 4);
      for (let i = 16; i < 64; i++) {
        const x = W[i - 15];
        const y = W[i - 2];
        const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
        const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
        W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        const ch = (e & f) ^ (~e & g);
        const t1 = (hh + S1 + ch + K[i] + W[i]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (S0 + maj) | 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) | 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d;
      h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    return h;
  }

  /** Leading zero bits of a hash given as 32-bit words. */
  function leadingZeroBits(words) {
    let bits = 0;
    for (const word of words) {
      if (word !== 0) return bits + Math.clz32(word);
      bits += 32;
    }
    return bits;
  }

  /** Whether `nonce` solves `challenge` at `difficulty`. */
  function check(challenge, nonce, difficulty) {
    if (difficulty === 0) return true;
    const input = new TextEncoder().encode(challenge + ":" + nonce);
    return leadingZeroBits(sha256(input)) >= difficulty;
  }

  /**
   * Finds a nonce (a decimal string) solving `challenge` at `difficulty`, trying 0, 1, 2, ...
   * Resolves with the nonce; `options.signal` (an AbortSignal) stops the search,
   * `options.onProgress(tried)` is told how many nonces were tried so far.
   */
  function solve(challenge, difficulty, options) {
    const signal = options && options.signal;
    const onProgress = options && options.onProgress;
    const prefix = new TextEncoder().encode(challenge + ":");
    const buffer = new Uint8Array(prefix.length + 20);
    buffer.set(prefix);
    let nonce = 0;
    return new Promise(function (resolve, reject) {
      function slice() {
        if (signal && signal.aborted) {
          reject(signal.reason || new Error("aborted"));
          return;
        }
        const until = Date.now() + 15;
        while (Date.now() < until) {
          for (let i = 0; i < 1000; i++, nonce++) {
            const digits = String(nonce);
            for (let j = 0; j < digits.length; j++) buffer[prefix.length + j] = digits.charCodeAt(j);
            const input = buffer.subarray(0, prefix.length + digits.length);
            if (difficulty === 0 || leadingZeroBits(sha256(input)) >= difficulty) {
              resolve(digits);
              return;
            }
          }
        }
        if (onProgress) onProgress(nonce);
        setTimeout(slice, 0);
      }
      slice();
    });
  }

  /** Reads a JSON answer; a problem+json answer becomes an Error with its fields. */
  async function answer(response) {
    const body = await response.json();
    if (!response.ok) {
      const error = new Error(body.detail || body.title || "HTTP " + response.status);
      error.problem = body;
      error.status = response.status;
      throw error;
    }
    return body;
  }

  /**
   * Asks `gateway` (e.g. "https://api.shop.example") for a challenge of `saleId`, solves
   * it and exchanges the answer: resolves with {purchase_token, expires_at}. Rejects with
   * an Error whose `problem` is the gateway's problem+json body when it refuses.
   */
  async function purchaseToken(gateway, saleId, jwt, options) {
    const base = gateway.replace(/\/$/, "") + "/api/v1/sales/" + encodeURIComponent(saleId);
    const headers = { Authorization: "Bearer " + jwt, "Content-Type": "application/json" };
    const puzzle = await answer(await fetch(base + "/challenge", { method: "POST", headers }));
    const nonce = await solve(puzzle.challenge, puzzle.difficulty, options);
    const body = JSON.stringify({ challenge: puzzle.challenge, nonce });
    return answer(await fetch(base + "/tokens", { method: "POST", headers, body }));
  }

  const api = { sha256, check, solve, purchaseToken };
  if (typeof module === "object" && module.exports) module.exports = api;
  root.flashgatePow = api;
})(typeof globalThis !== "undefined" ? globalThis : this);
