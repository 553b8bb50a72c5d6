// Bot traffic against a live sale (SALE), a sale that has not started (EARLY_SALE) and another
// live sale (OTHER_SALE). Everything must be refused and take nothing, except the one
// legitimate purchase of the replayed token:
//   replay        one valid token, many Idempotency-Keys (a concurrent burst, then paced; in
//                 the burst, requests beyond the buyer's in-flight slots may get 429):
//                 exactly one 202, every other answer 409 token-used
//   challenge     a challenge exchanged twice: 201, then 409 token-used; a wrong proof of
//                 work: 403 invalid-token
//   forged        random strings of every shape as purchase tokens: 403 invalid-token
//   flipped       a valid token with one bit flipped (all over it), and a challenge passed
//                 off as a purchase token: 403 invalid-token
//   stolen        another buyer's valid token: 403 invalid-token
//   other-sale    a valid token of another sale: 403 invalid-token
//   missing       no purchase token: 403 invalid-token
//   early         challenge, tokens and purchase before starts_at: 409 sale-not-started
//   hammer        one buyer sending purchases far over the per-buyer rate: 429 with
//                 Retry-After, at most burst + rate x elapsed answered otherwise (403)
// Every answer is judged in `bots_as_expected` (tagged by bot; threshold: all of them), and
// teardown checks that SALE sold exactly the replayed purchase (EARLY_SALE and OTHER_SALE
// nothing) and that its reconcile difference is 0.
//
// With TOKENS=off (a gateway without purchase tokens) only forged, early and hammer run.
//
// Environment: BASE, SALE, EARLY_SALE, OTHER_SALE, JWT_SECRET, ADMIN_TOKEN (required);
// TOKENS (on|off), USER_RATE (5), USER_BURST (10): the gateway's per-buyer limit, SCALE (1:
// multiplies the number of bots), RUN_ID, TITLE, SUMMARY, FLAT.

import { sleep } from 'k6';
import { Counter, Gauge, Rate } from 'k6/metrics';
import crypto from 'k6/crypto';

import * as api from './lib/api.js';
import { mintJwt } from './lib/jwt.js';
import { powValid } from './lib/pow.js';
import { TREND_STATS, figure, summaryHandler } from './lib/summary.js';

const SALE = __ENV.SALE || 'bots';
const EARLY_SALE = __ENV.EARLY_SALE || 'bots-early';
const OTHER_SALE = __ENV.OTHER_SALE || 'bots-other';
const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = (__ENV.TOKENS || 'on') !== 'off';
const USER_RATE = Number(__ENV.USER_RATE || 5);
const USER_BURST = Number(__ENV.USER_BURST || 10);
const SCALE = Math.max(1, Number(__ENV.SCALE || 1));
const RUN_ID = __ENV.RUN_ID || String(Date.now() % 100000000);
// Seconds between paced requests of one buyer: under its rate limit.
const PACE = 1.25 / USER_RATE;

const BOTS = TOKENS
    ? ['replay', 'challenge', 'forged', 'flipped', 'stolen', 'other-sale', 'missing', 'early', 'hammer']
    : ['forged', 'early', 'hammer'];

const asExpected = new Rate('bots_as_expected');
const accepted = new Counter('bots_accepted');
const hammerLimited = new Counter('hammer_limited');
const hammerExcess = new Counter('hammer_excess');
const teardownOk = new Rate('teardown_ok');
const soldMain = new Gauge('sold_main');
const soldEarly = new Gauge('sold_early');
const soldOther = new Gauge('sold_other');
const reconcileDifference = new Gauge('reconcile_difference');

const scenarios = {};
const thresholds = {
    bots_as_expected: ['rate==1'],
    bots_accepted: [`count==${TOKENS ? 1 : 0}`],
    teardown_ok: ['rate==1'],
};
for (const bot of BOTS) {
    scenarios[bot] = {
        executor: 'per-vu-iterations',
        vus: 1,
        iterations: 1,
        exec: bot.replace('-', '_'),
        maxDuration: '2m',
        tags: { bot },
    };
    // A threshold per bot makes its share show in the summary.
    thresholds[`bots_as_expected{bot:${bot}}`] = ['rate==1'];
}
thresholds.hammer_limited = ['count>0'];
thresholds.hammer_excess = ['count==0'];

export const options = {
    scenarios,
    thresholds,
    summaryTrendStats: TREND_STATS,
    systemTags: api.SYSTEM_TAGS,
    setupTimeout: '60s',
    teardownTimeout: '90s',
};

const jwtOf = (who) => mintJwt(SECRET, `bot${RUN_ID}-${who}`);
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function randomString(length, alphabet = B64) {
    let s = '';
    for (let i = 0; i < length; i++) s += alphabet[Math.floor(Math.random() * alphabet.length)];
    return s;
}

// `token` with bit `bit` (0..5) of the base64url character at `pos` flipped.
function flipBit(token, pos, bit) {
    const value = B64.indexOf(token[pos]);
    return token.slice(0, pos) + B64[value ^ (1 << bit)] + token.slice(pos + 1);
}

// Judges one answer: `status` and `slug` expected (slug null: any 2xx).
function expect(what, a, status, slug) {
    const ok = a.status === status && (slug === null ? a.outcome === 'ok' : a.outcome === slug);
    asExpected.add(ok);
    if (a.outcome === 'ok' && a.status === 202) accepted.add(1);
    if (!ok) {
        api.logUnexpected(`${what} (expected ${status} ${slug || ''})`, a);
    }
    return ok;
}

// A valid purchase token of buyer `who` on `sale`; throws when the gateway gives none.
function validToken(sale, who) {
    const t = api.obtainToken(sale, jwtOf(who));
    if (t.token === null) {
        throw new Error(`no purchase token for ${who} on ${sale}: ${t.step} answered ` +
            `${t.answer.status} ${t.answer.res.body}`);
    }
    return t.token;
}

export function setup() {
    if (!SECRET) throw new Error('JWT_SECRET is required');
    accepted.add(0);
    hammerExcess.add(0);
    for (const sale of [SALE, EARLY_SALE, OTHER_SALE]) {
        const a = api.getSale(sale);
        if (a.status !== 200) throw new Error(`GET sale ${sale} answered ${a.status}`);
    }
    console.log(`bots: ${BOTS.join(', ')} (scale ${SCALE}); per-buyer limit ${USER_RATE}/s burst ${USER_BURST}`);
    return {};
}

// One token, many Idempotency-Keys: a concurrent burst, then paced requests.
export function replay() {
    const who = 'replay';
    const jwt = jwtOf(who);
    const token = validToken(SALE, who);
    const burst = Math.max(2, Math.min(8, USER_BURST - 2));
    const requests = [];
    for (let i = 0; i < burst; i++) requests.push(api.purchaseRequest(SALE, jwt, `replay-${RUN_ID}-${i}`, 1, token));
    const burstAnswers = api.purchaseBatch(requests);
    sleep(2);
    const paced = [];
    for (let i = 0; i < 4 * SCALE; i++) {
        paced.push(api.purchase(SALE, jwt, `replay-${RUN_ID}-seq-${i}`, 1, token));
        sleep(PACE);
    }
    const answers = burstAnswers.concat(paced);
    const wins = answers.filter((a) => a.status === 202).length;
    for (const a of answers) {
        if (a.status === 202) {
            // The one purchase the token is good for (more than one fails bots_accepted).
            asExpected.add(wins === 1);
            accepted.add(1);
        } else if (burstAnswers.includes(a) && a.status === 429) {
            // Beyond the buyer's in-flight slots (http.max_in_flight_per_buyer) a concurrent
            // request is refused before its body is read.
            expect('replayed token in a burst', a, 429, 'rate-limited');
        } else {
            expect('replayed token', a, 409, 'token-used');
        }
    }
    if (wins !== 1) console.warn(`replayed token: ${wins} purchases accepted, not 1`);
}

// A challenge exchanged twice, and a wrong proof of work.
export function challenge() {
    for (let i = 0; i < 2 * SCALE; i++) {
        const jwt = jwtOf(`challenge-${i}`);
        const c = api.challenge(SALE, jwt);
        if (!expect('challenge', c, 200, null)) continue;
        const text = c.json.challenge;
        const difficulty = Number(c.json.difficulty || 0);
        if (difficulty > 0) {
            // The first nonce that does not solve it.
            let wrong = 0;
            while (powValid(text, String(wrong), difficulty) && wrong < 1000) wrong++;
            expect('wrong proof of work', api.tokens(SALE, jwt, text, String(wrong)), 403, 'invalid-token');
        }
        let nonce = 0;
        while (!powValid(text, String(nonce), difficulty) && nonce < 1 << 24) nonce++;
        expect('first exchange of a challenge', api.tokens(SALE, jwt, text, String(nonce)), 201, null);
        expect('second exchange of a challenge', api.tokens(SALE, jwt, text, String(nonce)), 409, 'token-used');
    }
}

// Random strings of every shape.
export function forged() {
    const shapes = [
        () => randomString(88), // the length of a real token
        () => randomString(1 + Math.floor(Math.random() * 200)),
        () => `${randomString(36)}.${randomString(50)}.${randomString(43)}`, // JWT-like
        () => crypto.sha256(randomString(16), 'hex'),
        () => '',
        () => randomString(88, '!"#$%&()*+,/:;<=>?@[]^`{|}~'),
    ];
    for (let i = 0; i < 10 * SCALE; i++) {
        const jwt = jwtOf(`forged-${i}`);
        const token = shapes[i % shapes.length]();
        expect('forged token', api.purchase(SALE, jwt, `forged-${RUN_ID}-${i}`, 1, token), 403, 'invalid-token');
    }
}

// One valid token with one bit flipped, at positions all over it; a challenge as a token.
export function flipped() {
    const who = 'flipped';
    const jwt = jwtOf(who);
    const token = validToken(SALE, who);
    const flips = 6 * SCALE;
    for (let i = 0; i < flips; i++) {
        const pos = Math.floor((i * (token.length - 1)) / Math.max(1, flips - 1));
        const bad = flipBit(token, pos, i % 6);
        expect(`token with a bit flipped at ${pos}`, api.purchase(SALE, jwt, `flipped-${RUN_ID}-${i}`, 1, bad),
            403, 'invalid-token');
        sleep(PACE);
    }
    const c = api.challenge(SALE, jwt);
    if (expect('challenge', c, 200, null)) {
        expect('challenge passed off as a purchase token',
            api.purchase(SALE, jwt, `flipped-${RUN_ID}-challenge`, 1, c.json.challenge), 403, 'invalid-token');
    }
}

// Another buyer's valid token.
export function stolen() {
    const token = validToken(SALE, 'victim');
    for (let i = 0; i < 3 * SCALE; i++) {
        const jwt = jwtOf(`thief-${i}`);
        expect("another buyer's token", api.purchase(SALE, jwt, `stolen-${RUN_ID}-${i}`, 1, token), 403, 'invalid-token');
    }
}

// A valid token of another sale.
export function other_sale() {
    const who = 'other-sale';
    const jwt = jwtOf(who);
    const token = validToken(OTHER_SALE, who);
    for (let i = 0; i < 2 * SCALE; i++) {
        expect("another sale's token", api.purchase(SALE, jwt, `other-${RUN_ID}-${i}`, 1, token), 403, 'invalid-token');
        sleep(PACE);
    }
}

// No purchase token at all.
export function missing() {
    for (let i = 0; i < 5 * SCALE; i++) {
        const jwt = jwtOf(`missing-${i}`);
        expect('no token', api.purchase(SALE, jwt, `missing-${RUN_ID}-${i}`, 1, undefined), 403, 'invalid-token');
    }
}

// Before starts_at: every step refused sale-not-started.
export function early() {
    for (let i = 0; i < 5 * SCALE; i++) {
        const jwt = jwtOf(`early-${i}`);
        expect('early challenge', api.challenge(EARLY_SALE, jwt), 409, 'sale-not-started');
        expect('early tokens', api.tokens(EARLY_SALE, jwt, randomString(88), '0'), 409, 'sale-not-started');
        expect('early purchase', api.purchase(EARLY_SALE, jwt, `early-${RUN_ID}-${i}`, 1, randomString(88)),
            409, 'sale-not-started');
        if (!TOKENS) continue;
        expect('early purchase without a token', api.purchase(EARLY_SALE, jwt, `early-${RUN_ID}-${i}-none`, 1, undefined),
            409, 'sale-not-started');
    }
}

// One buyer, purchases as fast as it can (with a forged token, so that none could succeed
// even without token checks).
export function hammer() {
    const jwt = jwtOf('hammer');
    const total = 60 * SCALE;
    const start = Date.now();
    let passed = 0;
    let limited = 0;
    for (let sent = 0; sent < total; sent += 20) {
        const requests = [];
        for (let i = sent; i < Math.min(total, sent + 20); i++) {
            requests.push(api.purchaseRequest(SALE, jwt, `hammer-${RUN_ID}-${i}`, 1, randomString(88)));
        }
        for (const a of api.purchaseBatch(requests)) {
            if (a.status === 429) {
                limited++;
                expect('hammer (limited)', a, 429, 'rate-limited');
                if (a.retryAfter === null) {
                    asExpected.add(false);
                    api.logUnexpected('hammer 429 without Retry-After', a);
                }
            } else {
                passed++;
                expect('hammer (past the limiter)', a, 403, 'invalid-token');
            }
        }
    }
    const elapsed = (Date.now() - start) / 1000;
    const allowed = USER_BURST + Math.ceil(USER_RATE * elapsed) + 2;
    hammerLimited.add(limited);
    hammerExcess.add(Math.max(0, passed - allowed));
    console.log(`hammer: ${total} purchases in ${elapsed.toFixed(2)} s: ${limited} answered 429, ` +
        `${passed} got past the limiter (allowed ${allowed})`);
}

export function teardown() {
    const check = (ok, what) => {
        teardownOk.add(!!ok);
        if (!ok) console.error(`teardown: ${what}`);
        return ok;
    };
    const view = api.waitPersisted(SALE, 60);
    check(view !== null && view.pending === 0, `orders still pending: ${JSON.stringify(view)}`);
    const expected = TOKENS ? 1 : 0;
    const sold = (sale) => {
        const a = api.admin('GET', `/admin/v1/sales/${sale}`);
        check(a.status === 200, `GET admin sale ${sale} answered ${a.status}`);
        return a.json ? a.json.sold : -1;
    };
    const main = sold(SALE);
    soldMain.add(main);
    check(main === expected, `${SALE} sold ${main} units, expected ${expected} (the replayed purchase)`);
    const e = sold(EARLY_SALE);
    soldEarly.add(e);
    check(e === 0, `${EARLY_SALE} sold ${e} units before it started`);
    const o = sold(OTHER_SALE);
    soldOther.add(o);
    check(o === 0, `${OTHER_SALE} sold ${o} units`);
    const r = api.admin('POST', `/admin/v1/sales/${SALE}/reconcile`);
    if (check(r.status === 200 && r.json, `reconcile answered ${r.status}`)) {
        reconcileDifference.add(r.json.difference);
        check(r.json.difference === 0, `reconcile difference ${r.json.difference}: ${r.res.body}`);
    }
}

function extra(data) {
    const lines = [];
    const perBot = {};
    for (const bot of BOTS) {
        const m = data.metrics[`bots_as_expected{bot:${bot}}`];
        const v = m ? m.values : { passes: 0, fails: 0 };
        perBot[bot] = { as_expected: v.passes, not: v.fails };
    }
    lines.push('bots (answers as expected / not): ' +
        BOTS.map((b) => `${b} ${perBot[b].as_expected}/${perBot[b].not}`).join(', '));
    if (!TOKENS) lines.push('purchase tokens off: replay, challenge, flipped, stolen, other-sale, missing SKIPPED');
    lines.push(`hammer: ${figure(data, 'hammer_limited', 'count')} answered 429, ` +
        `${figure(data, 'hammer_excess', 'count')} past the limiter beyond burst + rate x elapsed`);
    lines.push(`units taken: ${SALE} ${figure(data, 'sold_main', 'value')} (expected ${TOKENS ? 1 : 0}), ` +
        `${EARLY_SALE} ${figure(data, 'sold_early', 'value')}, ${OTHER_SALE} ${figure(data, 'sold_other', 'value')}; ` +
        `202 answers ${figure(data, 'bots_accepted', 'count')}; reconcile difference ` +
        `${figure(data, 'reconcile_difference', 'value')} -> ${figure(data, 'teardown_ok', 'rate') === 1 ? 'exact' : 'NOT EXACT'}`);
    return { lines, json: { bots: perBot, tokens: TOKENS, sold: figure(data, 'sold_main', 'value') } };
}

export const handleSummary = summaryHandler(__ENV.TITLE || `bots ${SALE}`, extra);
