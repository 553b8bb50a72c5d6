// HS256 JSON Web Tokens for buyers, minted inside k6 with k6/crypto (the gateway only
// verifies them: claims `sub`, the buyer id of 1..64 `[A-Za-z0-9_-]`, and `exp`, unix seconds).

import crypto from 'k6/crypto';
import encoding from 'k6/encoding';

const HEADER = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');
const SUB = /^[A-Za-z0-9_-]{1,64}$/;

// A token for buyer `sub`, signed with `secret`, valid for `ttlSecs` seconds (default 1 h).
export function mintJwt(secret, sub, ttlSecs = 3600) {
    if (!SUB.test(sub)) {
        throw new Error(`buyer id '${sub}' is not 1..64 characters of [A-Za-z0-9_-]`);
    }
    const exp = Math.floor(Date.now() / 1000) + ttlSecs;
    const payload = encoding.b64encode(JSON.stringify({ sub, exp }), 'rawurl');
    const signingInput = `${HEADER}.${payload}`;
    // 'base64rawurl': base64url without padding, as JWS wants.
    const signature = crypto.hmac('sha256', secret, signingInput, 'base64rawurl');
    return `${signingInput}.${signature}`;
}
