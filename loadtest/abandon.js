// Abandoned orders: BUYERS buyers on STOCK units of a sale with a payment window. A buyer's
// fate is fixed by its number: 30% never pay (their orders expire and the units go back),
// 10% cancel right after buying, the rest pay through the admin paid endpoint. Every buyer
// without an order keeps trying for the whole run, so the units that come back are sold
// again, until every unit is sold to a paying buyer.
//
// Each VU owns BUYERS / VUS buyers and takes one step for one of them per iteration: try to
// buy (purchase token first when TOKENS is on); with an order, act on its fate; a payer whose
// order expired before the payment reached it (409 order-state) tries again. Thresholds: the
// units paid reach STOCK exactly, and no purchase, cancel or payment answers anything
// unexpected. loadtest/run then checks the gateway's own figures (reconcile).
//
// Environment: BASE, SALE, JWT_SECRET (required), ADMIN_TOKEN; TOKENS (on|off), STOCK (1000),
// BUYERS (5000), VUS (250), DURATION (90s), NEVER_PAY_PCT (30), CANCEL_PCT (10), PAUSE_S
// (0.05, between a VU's steps), RUN_ID, TITLE, SUMMARY, FLAT.

import { sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

import * as api from './lib/api.js';
import { mintJwt } from './lib/jwt.js';
import { TREND_STATS, figure, summaryHandler } from './lib/summary.js';

const SALE = __ENV.SALE || 'abandon';
const SECRET = __ENV.JWT_SECRET || '';
const TOKENS = (__ENV.TOKENS || 'on') !== 'off';
const STOCK = Number(__ENV.STOCK || 1000);
const BUYERS = Number(__ENV.BUYERS || 5000);
const VUS = Number(__ENV.VUS || 250);
const NEVER_PAY_PCT = Number(__ENV.NEVER_PAY_PCT || 30);
const CANCEL_PCT = Number(__ENV.CANCEL_PCT || 10);
const PAUSE_S = Number(__ENV.PAUSE_S || 0.05);
const RUN_ID = __ENV.RUN_ID || String(Date.now() % 100000000);

const paidUnits = new Counter('paid_units');
const cancelledUnits = new Counter('cancelled_units');
const abandonedUnits = new Counter('abandoned_units');
const expiredBeforePayment = new Counter('expired_before_payment');
const unexpected = new Counter('unexpected_answers');

export const options = {
    scenarios: {
        abandon: {
            executor: 'constant-vus',
            vus: VUS,
            duration: __ENV.DURATION || '90s',
        },
    },
    summaryTrendStats: TREND_STATS,
    systemTags: api.SYSTEM_TAGS,
    thresholds: {
        paid_units: [`count==${STOCK}`],
        unexpected_answers: ['count==0'],
    },
};

// A buyer's fate, by its number: the first NEVER_PAY_PCT of every hundred never pay, the
// next CANCEL_PCT cancel, the rest pay.
function fateOf(buyer) {
    const slot = buyer % 100;
    if (slot < NEVER_PAY_PCT) return 'never-pay';
    if (slot < NEVER_PAY_PCT + CANCEL_PCT) return 'cancel';
    return 'pay';
}

// This VU's buyers and where each stands: `trying` (no order), or done.
let mine = null;
let turn = 0;

function myBuyers() {
    if (mine !== null) return mine;
    const vu = exec.vu.idInTest - 1;
    mine = [];
    for (let b = vu; b < BUYERS; b += VUS) {
        mine.push({ n: b, who: `${RUN_ID}-ab${b}`, attempt: 0, done: false });
    }
    return mine;
}

function note(what, a, ok) {
    if (ok) return;
    unexpected.add(1);
    api.logUnexpected(what, a);
}

// One try to buy; returns the order id, or null (sold out, shed, no token).
function tryToBuy(buyer, jwt) {
    let token;
    if (TOKENS) {
        const t = api.obtainToken(SALE, jwt);
        if (t.token === null) {
            const a = t.answer;
            note(`${t.step} while trying`, a, a.outcome === 'sold-out' || api.isShed(a));
            return null;
        }
        token = t.token;
    }
    const p = api.purchase(SALE, jwt, `${buyer.who}-${buyer.attempt}`, 1, token);
    if (p.status === 202 && p.json) {
        buyer.attempt++;
        return p.json.order_id;
    }
    note('purchase', p, p.outcome === 'sold-out' || api.isShed(p));
    return null;
}

// Cancel and paid are idempotent: a client told 429/503 (shed, with Retry-After) sends the
// same call again after that pause, as a shop's payment service and a buyer's page do, at
// most SETTLE_TRIES times in all. Only an answer that is still shed after that counts as
// unexpected.
const SETTLE_TRIES = 5;

function settle(call) {
    let a = call();
    for (let tries = 1; tries < SETTLE_TRIES && api.isShed(a); tries++) {
        sleep(Math.min(Math.max(a.retryAfter, 0.2), 5));
        a = call();
    }
    return a;
}

function act(buyer, jwt, order) {
    const fate = fateOf(buyer.n);
    if (fate === 'never-pay') {
        abandonedUnits.add(1);
        buyer.done = true;
    } else if (fate === 'cancel') {
        const c = settle(() => api.cancelOrder(order, jwt));
        note('cancel', c, c.status === 200 && c.json && c.json.status === 'cancelled');
        cancelledUnits.add(1);
        buyer.done = true;
    } else {
        const p = settle(() => api.payOrder(order));
        if (p.status === 200 && p.json && p.json.status === 'paid') {
            paidUnits.add(1);
            buyer.done = true;
        } else if (p.outcome === 'order-state') {
            // The window passed before the payment reached the gateway: buy again.
            expiredBeforePayment.add(1);
        } else {
            note('paid', p, false);
        }
    }
}

export default function () {
    if (!SECRET) throw new Error('JWT_SECRET is required');
    const buyers = myBuyers().filter((b) => !b.done);
    if (buyers.length === 0) {
        sleep(1);
        return;
    }
    const buyer = buyers[turn++ % buyers.length];
    const jwt = mintJwt(SECRET, buyer.who);
    const order = tryToBuy(buyer, jwt);
    if (order !== null) act(buyer, jwt, order);
    sleep(PAUSE_S);
}

function extra(data) {
    const count = (m) => figure(data, m, 'count');
    return {
        lines: [`abandon: ${count('paid_units')} units paid of ${STOCK}; ${count('abandoned_units')} orders ` +
            `left unpaid, ${count('cancelled_units')} cancelled, ${count('expired_before_payment')} payments ` +
            `too late (bought again); ${count('unexpected_answers')} unexpected answers; ` +
            `${BUYERS} buyers over ${VUS} VUs`],
        json: {
            paid_units: count('paid_units'),
            abandoned_units: count('abandoned_units'),
            cancelled_units: count('cancelled_units'),
        },
    };
}

export const handleSummary = summaryHandler(__ENV.TITLE || `abandon ${SALE}`, extra);
