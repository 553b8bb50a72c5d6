// The end-of-test summary every scenario uses (no remote jslib: these machines are offline):
// one screen of text on stdout (accepted, refusals by problem slug, latency percentiles per
// endpoint, request rate, scenario-specific lines, failed thresholds), the same figures as
// JSON in the file named by env SUMMARY, and flattened as `key value` lines in the file named
// by env FLAT (for the shell runner, which has no JSON parser to rely on).

import { ENDPOINTS, OUTCOMES, answerMetric } from './api.js';

// Trend statistics the scripts ask k6 for (options.summaryTrendStats).
export const TREND_STATS = ['avg', 'min', 'med', 'p(95)', 'p(99)', 'max', 'count'];

// A figure of a metric (0 when the metric or the figure is absent).
export function figure(data, name, field) {
    const m = data.metrics[name];
    return (m && m.values && m.values[field]) || 0;
}

function fmt(n, decimals = 1) {
    return Number(n).toFixed(decimals);
}

function pad(s, width, left) {
    s = String(s);
    if (s.length >= width) return s;
    const fill = ' '.repeat(width - s.length);
    return left ? s + fill : fill + s;
}

// Every threshold with its verdict: [{ metric, expr, ok }].
export function thresholds(data) {
    const out = [];
    for (const [metric, m] of Object.entries(data.metrics)) {
        for (const [expr, t] of Object.entries(m.thresholds || {})) {
            out.push({ metric, expr, ok: t.ok });
        }
    }
    return out;
}

function flatten(value, prefix, lines) {
    if (value !== null && typeof value === 'object') {
        for (const [k, v] of Object.entries(value)) {
            flatten(v, prefix ? `${prefix}.${k}` : k, lines);
        }
    } else if (prefix) {
        lines.push(`${prefix} ${value === null ? '' : String(value).replace(/\s+/g, '_')}`);
    }
    return lines;
}

// The summary as { text, json }. `extra(data)` may add { lines: [...], json: {...} }.
export function summarize(data, title, extra) {
    const more = extra ? extra(data) : { lines: [], json: {} };
    const checks = thresholds(data);
    const failed = checks.filter((t) => !t.ok);
    const durationS = (data.state && data.state.testRunDurationMs ? data.state.testRunDurationMs : 0) / 1000;
    const requests = figure(data, 'http_reqs', 'count');
    const rate = figure(data, 'http_reqs', 'rate');

    const answers = {};
    const latency = {};
    let noAnswer = 0;
    for (const endpoint of ENDPOINTS) {
        const counts = {};
        for (const outcome of OUTCOMES) {
            const n = figure(data, answerMetric(endpoint, outcome), 'count');
            if (n > 0) counts[outcome] = n;
        }
        noAnswer += counts.no_answer || 0;
        const n = Object.values(counts).reduce((a, b) => a + b, 0);
        if (n === 0) continue;
        answers[endpoint] = counts;
        const t = `latency_${endpoint}`;
        latency[endpoint] = {
            count: figure(data, t, 'count'),
            p50: figure(data, t, 'med'),
            p95: figure(data, t, 'p(95)'),
            p99: figure(data, t, 'p(99)'),
            max: figure(data, t, 'max'),
        };
    }
    const purchases = answers.purchase || {};
    const accepted = purchases.ok || 0;
    const rejected = Object.fromEntries(Object.entries(purchases).filter(([k]) => k !== 'ok'));

    const lines = [];
    const verdict = failed.length === 0 ? 'PASS' : 'FAIL';
    lines.push(`${title}: thresholds ${verdict} (${checks.length - failed.length} of ${checks.length} hold)`);
    // vus_max is sampled once a second: a shorter run may have no sample.
    const vus = Math.max(figure(data, 'vus_max', 'max'), figure(data, 'vus_max', 'value'));
    lines.push(`  ${fmt(durationS)} s, ${requests} requests at ${fmt(rate)}/s, ${noAnswer} without an answer` +
        (vus ? `, VUs max ${vus}` : ''));
    const units = figure(data, 'accepted_units', 'count');
    lines.push(`  purchases accepted (202): ${accepted}${units ? ` (${units} units)` : ''}; refused: ` +
        (Object.keys(rejected).length
            ? Object.entries(rejected).map(([k, v]) => `${k} ${v}`).join(', ')
            : 'none'));
    lines.push(`  ${pad('endpoint', 10, true)}${pad('answers', 8)}${pad('p50 ms', 9)}${pad('p95 ms', 9)}` +
        `${pad('p99 ms', 9)}${pad('max ms', 9)}  outcomes`);
    for (const [endpoint, counts] of Object.entries(answers)) {
        const l = latency[endpoint];
        const total = Object.values(counts).reduce((a, b) => a + b, 0);
        const outcomes = Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ');
        lines.push(`  ${pad(endpoint, 10, true)}${pad(total, 8)}${pad(fmt(l.p50), 9)}${pad(fmt(l.p95), 9)}` +
            `${pad(fmt(l.p99), 9)}${pad(fmt(l.max), 9)}  ${outcomes}`);
    }
    for (const line of more.lines || []) lines.push(`  ${line}`);
    for (const t of failed) lines.push(`  FAILED threshold: ${t.metric} ${t.expr}`);

    const json = {
        title,
        thresholds_ok: failed.length === 0,
        thresholds: checks,
        duration_s: durationS,
        requests,
        req_per_s: rate,
        no_answer: noAnswer,
        accepted_purchases: accepted,
        accepted_units: units,
        rejected_purchases: rejected,
        answers,
        latency_ms: latency,
        extra: more.json || {},
    };
    return { text: lines.join('\n') + '\n', json };
}

// A handleSummary for `title` (see summarize). Writes SUMMARY (JSON) and FLAT (key value)
// when those env vars name files.
export function summaryHandler(title, extra) {
    return function (data) {
        const { text, json } = summarize(data, title, extra);
        const out = { stdout: text };
        if (__ENV.SUMMARY) {
            json.metrics = Object.fromEntries(Object.entries(data.metrics).map(([k, m]) => [k, m.values]));
            out[__ENV.SUMMARY] = JSON.stringify(json, null, 2) + '\n';
            delete json.metrics;
        }
        if (__ENV.FLAT) {
            const flat = Object.assign({}, json);
            delete flat.thresholds;
            out[__ENV.FLAT] = flatten(flat, '', []).join('\n') + '\n';
        }
        return out;
    };
}
