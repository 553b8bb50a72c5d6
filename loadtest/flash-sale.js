// The flash sale: thousands of distinct buyers arrive as a spike at the opening second and
// go through the whole buyer journey:
//   GET sale -> (wait for starts_at, by the server's clock) -> POST challenge -> solve the
//   proof of work -> POST tokens -> POST purchase (Idempotency-Key, purchase_token) -> poll
//   GET order until "confirmed" (bounded)
// and again, up to per_user_limit + 1 purchases per buyer (the last should be refused
// limit-reached), until sold out. Each VU iteration is a new buyer, so per-buyer holdings are
// tracked in the iteration itself.
//
// Thresholds (k6 exits non-zero when one fails):
//   latency_purchase p95 / p99                  < P95_MS / P99_MS
//   unexpected_answers (share of all answers)   <= MAX_UNEXPECTED: anything but 2xx, 409
//       sold-out / limit-reached / insufficient-stock, a 409 sale-not-started just at the
//       opening (retried), and 429/503 with Retry-After (retried after it, bounded)
//   shed_answers (429/503 with Retry-After)     < MAX_SHED
//   buyers_over_limit, wrong_refusals, orders_unconfirmed, pow_unsolved == 0
//   unit_balance == 0: units of 202 answers minus the sale's `sold` (teardown)
//   teardown_ok == 100%: after the orders are persisted, reconcile difference == 0 and, when
//       demand exceeds stock, sold == stock (else sold <= stock)
//
// Environment: BASE, SALE, JWT_SECRET, ADMIN_TOKEN (required); TOKENS (on|off, on),
// VUS (2000), ITERATIONS per VU (1: buyers = VUS * ITERATIONS), QUANTITY (1), RETRIES (3),
// POLLS (20), POLL_INTERVAL (0.25 s), MAX_WAIT (120 s before the opening), P95_MS (500),
// P99_MS (1000), MAX_UNEXPECTED (0), MAX_SHED (0.05), MAX_DURATION (5m), SALE_BODY (the
// sale's PUT body) and OPEN_LEAD (seconds: with both, setup moves the opening to that long
// after every VU is ready), RUN_ID, TITLE, SUMMARY, FLAT (files for lib/summary.js).
//
// Usage: loadtest/run flash-sale [--smoke]   (or k6 run -e BASE=... -e SALE=... flash-sale.js)

import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';

import * as api from './lib/api.js';
import { mintJwt } from './lib/jwt.js';
import { solvePow } from './lib/pow.js';
import { TREND_STATS, figure, summaryHandler } from './lib/summary.js';

const SALE = __ENV.SALE || 'flash';
const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = (__ENV.TOKENS || 'on') !== 'off';
const VUS = Number(__ENV.VUS || 2000);
const ITERATIONS = Number(__ENV.ITERATIONS || 1);
const QUANTITY = Number(__ENV.QUANTITY || 1);
const RETRIES = Number(__ENV.RETRIES || 3);
const POLLS = Number(__ENV.POLLS || 20);
const POLL_INTERVAL = Number(__ENV.POLL_INTERVAL || 0.25);
const MAX_WAIT = Number(__ENV.MAX_WAIT || 120);
const RUN_ID = __ENV.RUN_ID || String(Date.now() % 100000000);
// A 409 sale-not-started right at the opening is retried this often, 50 ms apart.
const EARLY_RETRIES = 40;

const unexpected = new Rate('unexpected_answers');
const shed = new Rate('shed_answers');
const acceptedUnits = new Counter('accepted_units');
const unitBalance = new Counter('unit_balance');
const overLimit = new Counter('buyers_over_limit');
const wrongRefusals = new Counter('wrong_refusals');
const unconfirmed = new Counter('orders_unconfirmed');
const powUnsolved = new Counter('pow_unsolved');
const confirmMs = new Trend('order_confirm_ms', true);
const waited = new Counter('buyers_waited');
const turnedAway = new Counter('buyers_turned_away');
const buyers = new Counter('buyers');
const teardownOk = new Rate('teardown_ok');
const saleSold = new Gauge('sale_sold');
const saleStock = new Gauge('sale_stock');
const saleDemand = new Gauge('sale_demand');
const reconcileDifference = new Gauge('reconcile_difference');
const reconcilePending = new Gauge('reconcile_pending');
const reconcileDeducted = new Gauge('reconcile_deducted');
const reconcileInDb = new Gauge('reconcile_orders_in_db');

export const options = {
    scenarios: {
        buyers: {
            executor: 'per-vu-iterations',
            vus: VUS,
            iterations: ITERATIONS,
            maxDuration: __ENV.MAX_DURATION || '5m',
            gracefulStop: '30s',
        },
    },
    setupTimeout: '60s',
    teardownTimeout: '90s',
    summaryTrendStats: TREND_STATS,
    systemTags: api.SYSTEM_TAGS,
    thresholds: {
        latency_purchase: [`p(95)<${Number(__ENV.P95_MS || 500)}`, `p(99)<${Number(__ENV.P99_MS || 1000)}`],
        unexpected_answers: [`rate<=${Number(__ENV.MAX_UNEXPECTED || 0)}`],
        shed_answers: [`rate<${Number(__ENV.MAX_SHED || 0.05)}`],
        buyers_over_limit: ['count==0'],
        wrong_refusals: ['count==0'],
        orders_unconfirmed: ['count==0'],
        pow_unsolved: ['count==0'],
        unit_balance: ['count==0'],
        teardown_ok: ['rate==1'],
    },
};

// Counts one answer: whether it was expected, whether it was load shedding. Returns its kind:
// 'ok', 'early' (sale-not-started), 'shed', 'refused' (an expected refusal) or 'unexpected'.
function judge(what, a, refusals) {
    let kind;
    if (a.outcome === 'ok') kind = 'ok';
    else if (a.status === 409 && a.outcome === 'sale-not-started') kind = 'early';
    else if (api.isShed(a)) kind = 'shed';
    else if (a.status === 409 && refusals.includes(a.outcome)) kind = 'refused';
    else kind = 'unexpected';
    unexpected.add(kind === 'unexpected');
    shed.add(kind === 'shed');
    if (kind === 'unexpected') api.logUnexpected(what, a);
    return kind;
}

// Waits before a retry: Retry-After (at most 2 s) plus jitter for shed answers, 50 ms early.
function backoff(kind, a) {
    sleep(kind === 'early' ? 0.05 : Math.min(a.retryAfter || 1, 2) * (0.5 + Math.random()));
}

// Calls `call` until its answer is not early nor shed (bounded); returns [kind, answer].
function withRetries(what, refusals, call) {
    let early = 0;
    let shedTries = 0;
    for (;;) {
        const a = call();
        const kind = judge(what, a, refusals);
        if (kind === 'early' && early++ < EARLY_RETRIES) {
            backoff(kind, a);
        } else if (kind === 'shed' && shedTries++ < RETRIES) {
            backoff(kind, a);
        } else {
            return [kind, a];
        }
    }
}

const TOKEN_REFUSALS = ['sold-out', 'limit-reached'];
const PURCHASE_REFUSALS = ['sold-out', 'limit-reached', 'insufficient-stock'];

// A purchase token for this buyer, or null (with why) when the journey stops here.
function purchaseToken(jwt) {
    const [kind, c] = withRetries('challenge', TOKEN_REFUSALS, () => api.challenge(SALE, jwt));
    if (kind !== 'ok') return { token: null, stop: c.outcome };
    const solved = solvePow(c.json.challenge, Number(c.json.difficulty || 0));
    if (solved.nonce === null) {
        powUnsolved.add(1);
        return { token: null, stop: 'pow' };
    }
    const [tkind, t] = withRetries('tokens', TOKEN_REFUSALS,
        () => api.tokens(SALE, jwt, c.json.challenge, solved.nonce));
    if (tkind !== 'ok') return { token: null, stop: t.outcome };
    return { token: t.json.purchase_token, stop: null };
}

// Polls the order until it is confirmed (bounded); counts it unconfirmed otherwise.
function awaitConfirmed(orderId, jwt, acceptedAt) {
    for (let i = 0; i < POLLS; i++) {
        const [kind, o] = withRetries('order', [], () => api.getOrder(orderId, jwt));
        if (kind === 'ok' && o.json && o.json.status === 'confirmed') {
            confirmMs.add(Date.now() - acceptedAt);
            return;
        }
        if (kind !== 'ok') break;
        sleep(POLL_INTERVAL);
    }
    unconfirmed.add(1);
}

// The opening, OPEN_LEAD seconds from now: the sale's definition (SALE_BODY, as it was
// created) PUT again with starts_at moved, so that the spike comes once every VU is ready
// however long k6 took to start them. Only while the sale has not opened.
function retimeOpening() {
    const lead = Number(__ENV.OPEN_LEAD || 0);
    if (!__ENV.SALE_BODY || lead <= 0) return;
    const info = api.getSale(SALE);
    if (info.status !== 200 || info.json.state !== 'upcoming') {
        console.warn(`cannot move the opening of sale ${SALE}: it is ${info.json ? info.json.state : info.status}`);
        return;
    }
    const skewMs = Date.parse(info.json.server_time) - Date.now();
    const body = JSON.parse(__ENV.SALE_BODY);
    body.starts_at = new Date(Date.now() + skewMs + lead * 1000).toISOString();
    const put = api.admin('PUT', `/admin/v1/sales/${SALE}`, body);
    if (put.status !== 200 && put.status !== 201) {
        throw new Error(`PUT sale ${SALE} (opening in ${lead} s) answered ${put.status}: ${put.res.body}`);
    }
}

export function setup() {
    if (!SECRET) throw new Error('JWT_SECRET is required');
    retimeOpening();
    const info = api.getSale(SALE);
    if (info.status !== 200) throw new Error(`GET sale ${SALE} answered ${info.status}: ${info.res.body}`);
    const s = info.json;
    const opensIn = (Date.parse(s.starts_at) - Date.parse(s.server_time)) / 1000;
    const demand = VUS * ITERATIONS * s.per_user_limit;
    console.log(`sale ${SALE}: ${s.stock_total} units, ${s.per_user_limit} per buyer, PoW ${s.pow_difficulty} bits, ` +
        `state ${s.state}, opens in ${opensIn.toFixed(1)} s; ${VUS * ITERATIONS} buyers want up to ${demand} units`);
    if (opensIn <= 0) {
        console.warn('the sale opened before the buyers were ready: no spike at the opening (raise OPEN_IN)');
    }
    // Counters that may see no sample still show up (as 0) in the summary.
    unitBalance.add(0);
    return { stock: s.stock_total, perUser: s.per_user_limit, demand, opensIn };
}

export default function (data) {
    const buyer = `b${RUN_ID}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
    const jwt = mintJwt(SECRET, buyer);
    buyers.add(1);

    const info = api.getSale(SALE);
    if (judge('sale', info, []) !== 'ok') return;
    const sale = info.json;
    if (sale.state === 'upcoming') {
        const wait = (Date.parse(sale.starts_at) - Date.parse(sale.server_time)) / 1000;
        if (wait > MAX_WAIT) {
            unexpected.add(true);
            console.warn(`sale opens in ${wait} s, more than MAX_WAIT ${MAX_WAIT} s`);
            return;
        }
        if (wait > 0) {
            waited.add(1);
            sleep(wait);
        }
    } else if (sale.state !== 'live') {
        // Sold out (or ended): a buyer who sees that goes away.
        turnedAway.add(1);
        return;
    }

    let held = 0;
    for (let attempt = 0; attempt <= data.perUser; attempt++) {
        let token;
        if (TOKENS) {
            const t = purchaseToken(jwt);
            if (t.token === null) break;
            token = t.token;
        }
        const key = `${buyer}-${attempt}`;
        const [kind, p] = withRetries('purchase', PURCHASE_REFUSALS,
            () => api.purchase(SALE, jwt, key, QUANTITY, token));
        if (kind === 'ok') {
            const q = (p.json && p.json.quantity) || QUANTITY;
            held += q;
            acceptedUnits.add(q);
            unitBalance.add(q);
            awaitConfirmed(p.json.order_id, jwt, Date.now());
            continue;
        }
        if (kind === 'refused' && p.outcome === 'limit-reached' && held + QUANTITY <= data.perUser) {
            wrongRefusals.add(1);
            console.warn(`${buyer} refused limit-reached while holding ${held} of ${data.perUser}`);
        }
        break;
    }
    if (held > data.perUser) {
        overLimit.add(1);
        console.warn(`${buyer} holds ${held} units, over the per-buyer limit ${data.perUser}`);
    }
}

export function teardown(data) {
    const check = (ok, what) => {
        teardownOk.add(!!ok);
        if (!ok) console.error(`teardown: ${what}`);
        return ok;
    };
    const view = api.waitPersisted(SALE, 60);
    check(view !== null && view.pending === 0, `orders still pending after 60 s: ${JSON.stringify(view)}`);
    const r = api.admin('POST', `/admin/v1/sales/${SALE}/reconcile`);
    if (check(r.status === 200 && r.json, `reconcile answered ${r.status}: ${r.res.body}`)) {
        reconcileDifference.add(r.json.difference);
        reconcilePending.add(r.json.pending);
        reconcileDeducted.add(r.json.deducted);
        reconcileInDb.add(r.json.orders_in_db);
        check(r.json.difference === 0, `reconcile difference ${r.json.difference}: ${r.res.body}`);
    }
    const a = api.admin('GET', `/admin/v1/sales/${SALE}`);
    if (check(a.status === 200 && a.json, `GET admin sale answered ${a.status}`)) {
        const sold = a.json.sold;
        saleSold.add(sold);
        saleStock.add(data.stock);
        saleDemand.add(data.demand);
        unitBalance.add(-sold);
        if (data.demand > data.stock) {
            check(sold === data.stock, `demand ${data.demand} > stock ${data.stock}, but sold ${sold}`);
        } else {
            check(sold <= data.stock, `sold ${sold} > stock ${data.stock}`);
        }
    }
}

function extra(data) {
    const g = (name) => figure(data, name, 'value');
    const c = (name) => figure(data, name, 'count');
    const sold = g('sale_sold');
    const lines = [
        `buyers ${c('buyers')}: ${c('buyers_waited')} waited for the opening, ${c('buyers_turned_away')} saw it ` +
            `sold out and left; over per_user_limit ${c('buyers_over_limit')}; wrong limit refusals ${c('wrong_refusals')}`,
        `sale ${SALE}: stock ${g('sale_stock')}, sold ${sold}, demand ${g('sale_demand')} units; ` +
            `202 units counted by k6 ${c('accepted_units')} (balance ${c('unit_balance')})`,
        `reconcile: deducted ${g('reconcile_deducted')}, orders_in_db ${g('reconcile_orders_in_db')}, ` +
            `pending ${g('reconcile_pending')}, difference ${g('reconcile_difference')}` +
            ` -> ${figure(data, 'teardown_ok', 'rate') === 1 ? 'exact' : 'NOT EXACT'}`,
        `orders confirmed: p50 ${figure(data, 'order_confirm_ms', 'med').toFixed(0)} ms, ` +
            `p95 ${figure(data, 'order_confirm_ms', 'p(95)').toFixed(0)} ms after the 202; ` +
            `unconfirmed ${c('orders_unconfirmed')}; unexpected answers ` +
            `${(100 * figure(data, 'unexpected_answers', 'rate')).toFixed(2)}%, shed ` +
            `${(100 * figure(data, 'shed_answers', 'rate')).toFixed(2)}%`,
    ];
    return {
        lines,
        json: {
            sale: SALE,
            stock: g('sale_stock'),
            sold,
            demand: g('sale_demand'),
            buyers: c('buyers'),
            buyers_waited: c('buyers_waited'),
            buyers_over_limit: c('buyers_over_limit'),
            reconcile_difference: g('reconcile_difference'),
            teardown_ok: figure(data, 'teardown_ok', 'rate') === 1,
        },
    };
}

export const handleSummary = summaryHandler(__ENV.TITLE || `flash-sale ${SALE}`, extra);
