// Traffic after sell-out: every answer must be 409 sold-out, served from the gateway's memory
// (loadtest/run compares Redis's EVALSHA count before and after, INFO commandstats).
//
// Two runs of this script, chosen by MODE:
//   MODE=sellout  before the sell-out, HOLDERS buyers get a purchase token each and keep it
//                 (written to the file HOLDERS_OUT); then STOCK + 10 buyers buy one unit each
//                 until nothing is left (threshold: exactly STOCK units accepted)
//   MODE=after    (the default) RATE iterations/s for DURATION, alternately
//                 - a token holder (from the file HOLDERS_FILE) buying with its unspent token:
//                   POST purchase -> 409 sold-out
//                 - a new buyer: GET sale (state sold_out) -> POST challenge -> 409 sold-out
//                 Threshold: every answer as expected (sold_out_as_expected == 100%).
//
// Tokens expire (tokens.token_ttl_ms, 60 s by default): a holder whose token is about to
// expire is replaced by a new buyer, so a long DURATION ends up with new buyers only.
//
// Environment: BASE, SALE, JWT_SECRET (required), ADMIN_TOKEN; TOKENS (on|off), STOCK (20),
// HOLDERS (max(20, RATE / 4)), HOLDERS_OUT / HOLDERS_FILE (absolute paths: written by the
// sellout run, read by the after run), RATE (100), DURATION (10s), RUN_ID, TITLE, SUMMARY, FLAT.

import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';

import * as api from './lib/api.js';
import { mintJwt } from './lib/jwt.js';
import { TREND_STATS, figure, summaryHandler } from './lib/summary.js';

const MODE = __ENV.MODE || 'after';
const SALE = __ENV.SALE || 'soldout';
const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = (__ENV.TOKENS || 'on') !== 'off';
const STOCK = Number(__ENV.STOCK || 20);
const RATE = Number(__ENV.RATE || 100);
const RUN_ID = __ENV.RUN_ID || String(Date.now() % 100000000);
// Holders are reused every 2 * HOLDERS iterations: at RATE/s that is RATE / (2 * HOLDERS)
// purchases per holder and second, to stay under the per-buyer rate limit.
const HOLDERS = Number(__ENV.HOLDERS || Math.max(20, Math.ceil(RATE / 4)));

const holders = MODE === 'after' && __ENV.HOLDERS_FILE
    ? new SharedArray('holders', () => JSON.parse(open(__ENV.HOLDERS_FILE)))
    : [];

const asExpected = new Rate('sold_out_as_expected');
const acceptedUnits = new Counter('accepted_units');
const requests = new Counter('requests_after_sellout');
const holderPurchases = new Counter('holder_purchases');
const newBuyers = new Counter('new_buyers');

const scenarios = MODE === 'sellout'
    ? {
        sellout: {
            executor: 'shared-iterations',
            vus: 10,
            iterations: STOCK + 10,
            exec: 'sellout',
            maxDuration: '2m',
        },
    }
    : {
        after: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: __ENV.DURATION || '10s',
            preAllocatedVUs: Math.min(200, Math.max(10, Math.ceil(RATE / 10))),
            maxVUs: Math.min(1000, Math.max(50, RATE)),
            exec: 'after',
        },
    };

export const options = {
    scenarios,
    summaryTrendStats: TREND_STATS,
    systemTags: api.SYSTEM_TAGS,
    setupTimeout: '60s',
    thresholds: MODE === 'sellout'
        ? { accepted_units: [`count==${STOCK}`] }
        : {
            sold_out_as_expected: ['rate==1'],
            requests_after_sellout: ['count>0'],
            dropped_iterations: ['count==0'],
        },
};

const jwtOf = (who) => mintJwt(SECRET, `${RUN_ID}-${who}`);

export function setup() {
    if (!SECRET) throw new Error('JWT_SECRET is required');
    if (MODE !== 'sellout') return { holders: [] };
    // Tokens taken while stock is left, spent only after the sell-out.
    const out = [];
    if (TOKENS) {
        for (let i = 0; i < HOLDERS; i++) {
            const who = `holder-${i}`;
            const t = api.obtainToken(SALE, jwtOf(who));
            if (t.token === null) throw new Error(`no token for ${who}: ${t.answer.status} ${t.answer.res.body}`);
            // Spent no later than 5 s before it expires.
            out.push({ who, token: t.token, expires_ms: Date.parse(t.expiresAt) - 5000 });
        }
    }
    return { holders: out };
}

export function sellout() {
    const who = `seller-${exec.scenario.iterationInTest}`;
    const jwt = jwtOf(who);
    let token;
    if (TOKENS) {
        const t = api.obtainToken(SALE, jwt);
        if (t.token === null) return; // sold out already (409 at the challenge)
        token = t.token;
    }
    const p = api.purchase(SALE, jwt, `${who}-0`, 1, token);
    if (p.status === 202) acceptedUnits.add(1);
}

function judge(what, a, ok) {
    requests.add(1);
    asExpected.add(ok);
    if (!ok) api.logUnexpected(what, a);
}

export function after() {
    const i = exec.scenario.iterationInTest;
    const holder = holders.length > 0 && i % 2 === 0 ? holders[(i / 2) % holders.length] : null;
    if (holder && Date.now() < holder.expires_ms) {
        holderPurchases.add(1);
        const p = api.purchase(SALE, jwtOf(holder.who), `${holder.who}-${i}`, 1, holder.token);
        judge('purchase after sell-out', p, p.status === 409 && p.outcome === 'sold-out');
        return;
    }
    newBuyers.add(1);
    const jwt = jwtOf(`late-${i}`);
    const s = api.getSale(SALE);
    judge('sale after sell-out', s, s.status === 200 && s.json && s.json.state === 'sold_out' && s.json.remaining === 0);
    if (TOKENS) {
        const c = api.challenge(SALE, jwt);
        judge('challenge after sell-out', c, c.status === 409 && c.outcome === 'sold-out');
    } else {
        const p = api.purchase(SALE, jwt, `late-${i}`, 1, undefined);
        judge('purchase after sell-out', p, p.status === 409 && p.outcome === 'sold-out');
    }
}

function extra(data) {
    if (MODE === 'sellout') {
        return {
            lines: [`sold out: ${figure(data, 'accepted_units', 'count')} units accepted of ${STOCK}; ` +
                `${(data.setup_data && data.setup_data.holders.length) || 0} token holders waiting`],
            json: {},
        };
    }
    const rate = figure(data, 'sold_out_as_expected', 'rate');
    return {
        lines: [`after sell-out: ${figure(data, 'requests_after_sellout', 'count')} requests ` +
            `(${figure(data, 'holder_purchases', 'count')} purchases with unspent tokens, ` +
            `${figure(data, 'new_buyers', 'count')} new buyers: sale + ${TOKENS ? "challenge" : "purchase"}), ` +
            `${(100 * rate).toFixed(2)}% answered as expected (409 sold-out / state sold_out)`],
        json: { requests_after_sellout: figure(data, 'requests_after_sellout', 'count'), as_expected_rate: rate },
    };
}

const handler = summaryHandler(__ENV.TITLE || `sold-out ${SALE} (${MODE})`, extra);

export function handleSummary(data) {
    const out = handler(data);
    if (MODE === 'sellout' && __ENV.HOLDERS_OUT) {
        out[__ENV.HOLDERS_OUT] = JSON.stringify((data.setup_data && data.setup_data.holders) || []);
    }
    return out;
}
