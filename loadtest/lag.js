// Purchases at a constant arrival rate, for the persistence-lag figure of
// scripts/bench-persist.sh: exactly RATE purchases per second for DURATION, each by a distinct
// buyer (pre-minted JWTs, one per line in TOKENS: examples/mint_tokens.rs) with its own
// Idempotency-Key. k6 starts iterations on schedule whatever the gateway's latency (open
// model); iterations it could not start for want of VUs are counted as dropped_iterations.
//
// Environment: BASE (http://127.0.0.1:PORT), SALE, TOKENS (absolute path), RATE (5000),
// DURATION (20s), VUS (200 pre-allocated), MAX_VUS (1000), SUMMARY (where to write the
// figures as `name value` lines for the shell script).
//
// Usage: k6 run -e BASE=... -e SALE=... -e TOKENS=... -e SUMMARY=... loadtest/lag.js

import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';
import { Counter } from 'k6/metrics';

const tokens = new SharedArray('tokens', () =>
    open(__ENV.TOKENS).split('\n').filter((line) => line.length > 0));

const url = `${__ENV.BASE}/api/v1/sales/${__ENV.SALE}/purchase`;
const body = JSON.stringify({ quantity: 1 });

// Answers by status class; `status_0` are requests that got no answer (timeouts, resets).
const answers = {
    202: new Counter('status_202'),
    '4xx': new Counter('status_4xx'),
    503: new Counter('status_503'),
    '5xx': new Counter('status_5xx_other'),
    0: new Counter('status_0'),
    other: new Counter('status_other'),
};
const tokensExhausted = new Counter('tokens_exhausted');

export const options = {
    discardResponseBodies: true,
    summaryTrendStats: ['avg', 'med', 'p(99)', 'max'],
    scenarios: {
        lag: {
            executor: 'constant-arrival-rate',
            rate: Number(__ENV.RATE || 5000),
            timeUnit: '1s',
            duration: __ENV.DURATION || '20s',
            preAllocatedVUs: Number(__ENV.VUS || 200),
            maxVUs: Number(__ENV.MAX_VUS || 1000),
            gracefulStop: '10s',
        },
    },
};

function classify(status) {
    if (status === 202 || status === 503 || status === 0) return status;
    if (status >= 400 && status < 500) return '4xx';
    if (status >= 500) return '5xx';
    return 'other';
}

export default function () {
    const i = exec.scenario.iterationInTest;
    if (i >= tokens.length) {
        tokensExhausted.add(1);
        return;
    }
    const res = http.post(url, body, {
        headers: {
            Authorization: `Bearer ${tokens[i]}`,
            'Idempotency-Key': `lag-${i}`,
            'Content-Type': 'application/json',
        },
        timeout: '10s',
    });
    answers[classify(res.status)].add(1);
}

// The figures the shell script reads, one `name value` per line (absent metrics are 0).
export function handleSummary(data) {
    const m = data.metrics;
    const value = (name, field) => (m[name] && m[name].values[field]) || 0;
    const lines = [
        ['http_reqs', value('http_reqs', 'count')],
        ['http_reqs_rate', value('http_reqs', 'rate')],
        ['iterations', value('iterations', 'count')],
        ['dropped_iterations', value('dropped_iterations', 'count')],
        ['vus_max', value('vus_max', 'max')],
        ['duration_med_ms', value('http_req_duration', 'med')],
        ['duration_p99_ms', value('http_req_duration', 'p(99)')],
        ['duration_max_ms', value('http_req_duration', 'max')],
        ['status_202', value('status_202', 'count')],
        ['status_4xx', value('status_4xx', 'count')],
        ['status_503', value('status_503', 'count')],
        ['status_5xx_other', value('status_5xx_other', 'count')],
        ['status_0', value('status_0', 'count')],
        ['status_other', value('status_other', 'count')],
        ['tokens_exhausted', value('tokens_exhausted', 'count')],
    ];
    const text = lines.map(([k, v]) => `${k} ${v}`).join('\n') + '\n';
    return { [__ENV.SUMMARY || 'lag-summary.txt']: text, stdout: text };
}
