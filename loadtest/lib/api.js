// The gateway's HTTP API as the load-test scripts use it: one function per endpoint, every
// answer classified (`ok`, a problem slug, `other` or `no_answer`) and counted per endpoint
// in `answers_<endpoint>_<outcome>` counters, and every latency in a `latency_<endpoint>`
// trend. lib/summary.js reads both back.

import http from 'k6/http';
import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';

import { solvePow } from './pow.js';

// The system tags the scripts keep on samples (options.systemTags): fewer tags, less work per
// sample for k6, which shares the machine's cores with the gateway.
export const SYSTEM_TAGS = ['status', 'method', 'name', 'scenario', 'expected_response'];

// Endpoints, as metric name parts.
export const ENDPOINTS = ['sale', 'challenge', 'tokens', 'purchase', 'order', 'cancel', 'paid', 'admin'];

// Problem slugs the gateway answers with (API.md and src/http/error.rs).
export const SLUGS = [
    'unauthorized', 'validation', 'payload-too-large', 'not-found', 'sale-not-started',
    'sale-ended', 'sale-paused', 'sold-out', 'insufficient-stock', 'limit-reached',
    'invalid-token', 'token-used', 'idempotency-conflict', 'sale-live', 'sale-has-orders',
    'rate-limited', 'overloaded', 'order-state', 'internal',
];

// `ok`: any 2xx; a slug: a problem+json answer of that type; `other`: any other answer;
// `no_answer`: no HTTP answer at all (timeout, connection refused or reset).
export const OUTCOMES = ['ok', ...SLUGS, 'other', 'no_answer'];

export const metricPart = (s) => s.replace(/-/g, '_');
export const answerMetric = (endpoint, outcome) => `answers_${endpoint}_${metricPart(outcome)}`;

// Metrics must exist before the test starts, so every (endpoint, outcome) pair gets its
// counter in the init context.
const answers = {};
const latency = {};
for (const endpoint of ENDPOINTS) {
    answers[endpoint] = {};
    for (const outcome of OUTCOMES) {
        answers[endpoint][outcome] = new Counter(answerMetric(endpoint, outcome));
    }
    latency[endpoint] = new Trend(`latency_${endpoint}`, true);
}

const BASE = (__ENV.BASE || 'http://127.0.0.1:8080').replace(/\/$/, '');
const TIMEOUT = __ENV.HTTP_TIMEOUT || '10s';
// At most this many unexpected answers are logged per VU, so a broken run stays readable.
const LOG_LIMIT = Number(__ENV.LOG_LIMIT || 3);
let logged = 0;

// Logs an unexpected answer (a few per VU at most).
export function logUnexpected(what, answer) {
    if (logged >= LOG_LIMIT) return;
    logged++;
    const body = answer.res && answer.res.body ? String(answer.res.body).slice(0, 300) : '';
    console.warn(`unexpected ${what}: ${answer.status} ${answer.outcome} ${body}`);
}

function classify(res) {
    if (res.status === 0) return { outcome: 'no_answer', json: null };
    let json = null;
    try {
        json = res.body ? JSON.parse(res.body) : null;
    } catch (_) {
        json = null;
    }
    if (res.status >= 200 && res.status < 300) return { outcome: 'ok', json };
    const type = json && typeof json.type === 'string' ? json.type : '';
    const slug = type.startsWith('/problems/') ? type.slice('/problems/'.length) : '';
    return { outcome: SLUGS.includes(slug) ? slug : 'other', json };
}

// An answer: { status, outcome, json, retryAfter (seconds, or null when absent), res }.
function answer(endpoint, res) {
    const { outcome, json } = classify(res);
    answers[endpoint][outcome].add(1);
    if (res.status !== 0) latency[endpoint].add(res.timings.duration);
    const ra = res.headers && res.headers['Retry-After'];
    const retryAfter = ra !== undefined && ra !== '' && !Number.isNaN(Number(ra)) ? Number(ra) : null;
    return { status: res.status, outcome, json, retryAfter, res };
}

// Whether an answer is load shedding done right: 429 rate-limited or 503 overloaded, with a
// Retry-After header.
export function isShed(a) {
    return (a.status === 429 || a.status === 503) && a.retryAfter !== null;
}

function buyerHeaders(jwt, extra) {
    const headers = { 'Content-Type': 'application/json' };
    if (jwt) headers.Authorization = `Bearer ${jwt}`;
    return Object.assign(headers, extra || {});
}

function params(endpoint, headers) {
    return { headers, timeout: TIMEOUT, tags: { name: endpoint }, responseType: 'text' };
}

// GET /api/v1/sales/{id} (no auth).
export function getSale(sale) {
    return answer('sale', http.get(`${BASE}/api/v1/sales/${sale}`, params('sale', {})));
}

// POST /api/v1/sales/{id}/challenge.
export function challenge(sale, jwt) {
    return answer('challenge', http.post(`${BASE}/api/v1/sales/${sale}/challenge`, null,
        params('challenge', buyerHeaders(jwt))));
}

// POST /api/v1/sales/{id}/tokens with {challenge, nonce}.
export function tokens(sale, jwt, challengeText, nonce) {
    return answer('tokens', http.post(`${BASE}/api/v1/sales/${sale}/tokens`,
        JSON.stringify({ challenge: challengeText, nonce }), params('tokens', buyerHeaders(jwt))));
}

// The request of a purchase (for http.batch), with `token` left out of the body when it is
// undefined (a purchase without a purchase token).
export function purchaseRequest(sale, jwt, key, quantity, token) {
    const body = { quantity };
    if (token !== undefined) body.purchase_token = token;
    const headers = buyerHeaders(jwt, key === undefined ? {} : { 'Idempotency-Key': key });
    return {
        method: 'POST',
        url: `${BASE}/api/v1/sales/${sale}/purchase`,
        body: JSON.stringify(body),
        params: params('purchase', headers),
    };
}

// POST /api/v1/sales/{id}/purchase.
export function purchase(sale, jwt, key, quantity, token) {
    const r = purchaseRequest(sale, jwt, key, quantity, token);
    return answer('purchase', http.post(r.url, r.body, r.params));
}

// Several purchases at once (http.batch: concurrent requests from one VU).
export function purchaseBatch(requests) {
    return http.batch(requests).map((res) => answer('purchase', res));
}

// GET /api/v1/orders/{id}.
export function getOrder(orderId, jwt) {
    return answer('order', http.get(`${BASE}/api/v1/orders/${orderId}`, params('order', buyerHeaders(jwt))));
}

// POST /api/v1/orders/{id}/cancel: the buyer cancels their unpaid order.
export function cancelOrder(orderId, jwt) {
    return answer('cancel', http.post(`${BASE}/api/v1/orders/${orderId}/cancel`, null,
        params('cancel', buyerHeaders(jwt))));
}

// POST /admin/v1/orders/{id}/paid: the shop's payment service reports the payment.
export function payOrder(orderId) {
    const headers = { Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` };
    return answer('paid', http.post(`${BASE}/admin/v1/orders/${orderId}/paid`, null, params('paid', headers)));
}

// An operator call: METHOD /admin/v1/... with the admin token.
export function admin(method, path, body) {
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${__ENV.ADMIN_TOKEN}` };
    const res = http.request(method, `${BASE}${path}`, body === undefined ? null : JSON.stringify(body),
        params('admin', headers));
    return answer('admin', res);
}

// Challenge, proof of work and token, for `jwt` on `sale`. Returns
// { token, expiresAt, step: 'done', attempts } on success, or { token: null, step, answer } with the
// step that failed ('challenge', 'pow' or 'tokens') and its answer.
export function obtainToken(sale, jwt) {
    const c = challenge(sale, jwt);
    if (c.status !== 200 || !c.json || typeof c.json.challenge !== 'string') {
        return { token: null, step: 'challenge', answer: c };
    }
    const difficulty = Number(c.json.difficulty || 0);
    const solved = solvePow(c.json.challenge, difficulty);
    if (solved.nonce === null) {
        return { token: null, step: 'pow', answer: c, attempts: solved.attempts };
    }
    const t = tokens(sale, jwt, c.json.challenge, solved.nonce);
    if (t.status !== 201 || !t.json || typeof t.json.purchase_token !== 'string') {
        return { token: null, step: 'tokens', answer: t };
    }
    return { token: t.json.purchase_token, expiresAt: t.json.expires_at, step: 'done', attempts: solved.attempts };
}

// Waits (bounded: `timeoutSecs`) until the admin view of `sale` has nothing pending; returns
// the last admin view (or null).
export function waitPersisted(sale, timeoutSecs) {
    const deadline = Date.now() + timeoutSecs * 1000;
    let view = null;
    for (let i = 0; i < 10000 && Date.now() < deadline; i++) {
        const a = admin('GET', `/admin/v1/sales/${sale}`);
        view = a.status === 200 ? a.json : null;
        if (view && view.pending === 0) return view;
        sleep(0.2);
    }
    return view;
}
