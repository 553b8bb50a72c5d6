// Soak: steady, bounded load against a sale with (practically) endless stock, for the
// gateway's memory over time (loadtest/run samples its RSS while this runs).
//
// RATE buyer journeys per second (constant-arrival-rate, open model) for DURATION: a buyer
// from a pool of POOL (so the gateway's per-buyer state stops growing after the first
// POOL / RATE seconds) asks for a challenge, solves it, gets a token and buys one unit
// (Idempotency-Key unique per journey); every 10th journey also reads its order back.
// Thresholds: unexpected answers (anything but 2xx, or 429/503 with Retry-After within
// MAX_SHED) <= MAX_UNEXPECTED, purchase p99 < P99_MS, no dropped iterations beyond 1%.
//
// Environment: BASE, SALE, JWT_SECRET (required); TOKENS (on|off), RATE (100),
// DURATION (10m), POOL (2000), MAX_UNEXPECTED (0), MAX_SHED (0.01), P99_MS (500),
// RUN_ID, TITLE, SUMMARY, FLAT.

import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';

import * as api from './lib/api.js';
import { mintJwt } from './lib/jwt.js';
import { solvePow } from './lib/pow.js';
import { TREND_STATS, figure, summaryHandler } from './lib/summary.js';

const SALE = __ENV.SALE || 'soak';
const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = (__ENV.TOKENS || 'on') !== 'off';
const RATE = Number(__ENV.RATE || 100);
const POOL = Number(__ENV.POOL || 2000);
const RUN_ID = __ENV.RUN_ID || String(Date.now() % 100000000);
const DURATION = __ENV.DURATION || '10m';

// Seconds in a k6 duration such as 45s, 10m, 1h or 1m30s.
function seconds(d) {
    const units = { h: 3600, m: 60, s: 1 };
    let total = 0;
    for (const [, n, u] of String(d).matchAll(/(\d+(?:\.\d+)?)([hms])/g)) total += Number(n) * units[u];
    return total || Number(d) || 0;
}

const unexpected = new Rate('unexpected_answers');
const shed = new Rate('shed_answers');
const acceptedUnits = new Counter('accepted_units');
const powUnsolved = new Counter('pow_unsolved');

export const options = {
    scenarios: {
        soak: {
            executor: 'constant-arrival-rate',
            rate: RATE,
            timeUnit: '1s',
            duration: DURATION,
            preAllocatedVUs: Math.max(10, Math.ceil(RATE / 5)),
            maxVUs: Math.max(50, RATE * 2),
            gracefulStop: '10s',
        },
    },
    summaryTrendStats: TREND_STATS,
    systemTags: api.SYSTEM_TAGS,
    thresholds: {
        unexpected_answers: [`rate<=${Number(__ENV.MAX_UNEXPECTED || 0)}`],
        shed_answers: [`rate<${Number(__ENV.MAX_SHED || 0.01)}`],
        latency_purchase: [`p(99)<${Number(__ENV.P99_MS || 500)}`],
        pow_unsolved: ['count==0'],
        // Iterations k6 could not start on time: the load was not what it says.
        dropped_iterations: [`count<=${Math.ceil(RATE * seconds(DURATION) * 0.01)}`],
    },
};

// Counts an answer; true when it is a success.
function judge(what, a) {
    const isShed = api.isShed(a);
    const ok = a.outcome === 'ok';
    unexpected.add(!ok && !isShed);
    shed.add(isShed);
    if (!ok && !isShed) api.logUnexpected(what, a);
    return ok;
}

export function setup() {
    if (!SECRET) throw new Error('JWT_SECRET is required');
    const s = api.getSale(SALE);
    if (s.status !== 200 || s.json.state !== 'live') throw new Error(`sale ${SALE}: ${s.status} ${s.res.body}`);
    powUnsolved.add(0);
    return {};
}

export default function () {
    const i = exec.scenario.iterationInTest;
    const who = `soak${RUN_ID}-${i % POOL}`;
    const jwt = mintJwt(SECRET, who);
    let token;
    if (TOKENS) {
        const c = api.challenge(SALE, jwt);
        if (!judge('challenge', c)) return;
        const solved = solvePow(c.json.challenge, Number(c.json.difficulty || 0));
        if (solved.nonce === null) {
            powUnsolved.add(1);
            return;
        }
        const t = api.tokens(SALE, jwt, c.json.challenge, solved.nonce);
        if (!judge('tokens', t)) return;
        token = t.json.purchase_token;
    }
    const p = api.purchase(SALE, jwt, `soak${RUN_ID}-${i}`, 1, token);
    if (!judge('purchase', p)) return;
    acceptedUnits.add(1);
    if (i % 10 === 0) judge('order', api.getOrder(p.json.order_id, jwt));
}

function extra(data) {
    return {
        lines: [`${figure(data, 'iterations', 'count')} journeys at ${figure(data, 'iterations', 'rate').toFixed(1)}/s ` +
            `(target ${RATE}/s), ${figure(data, 'dropped_iterations', 'count')} dropped; unexpected answers ` +
            `${(100 * figure(data, 'unexpected_answers', 'rate')).toFixed(3)}%, shed ` +
            `${(100 * figure(data, 'shed_answers', 'rate')).toFixed(3)}%`],
        json: { iterations: figure(data, 'iterations', 'count'), dropped: figure(data, 'dropped_iterations', 'count') },
    };
}

export const handleSummary = summaryHandler(__ENV.TITLE || `soak ${SALE}`, extra);
