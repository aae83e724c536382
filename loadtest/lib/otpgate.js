// Shared by the k6 scripts: the environment they read, the setup every script does through the
// API (an account of its own, its keys, a policy, numbers no earlier run used), reading codes from
// the message sink, metrics that count otpgate's requests only (not the reads from the sink), and
// the end-of-test summary.
//
// Environment (everything else the scripts create through the API):
//   OTPGATE_URL       the gateway (default http://localhost:8080)
//   OTPGATE_ROOT_KEY  its root key (required: the scripts create their own account with it)
//   OTPGATE_SINK_URL  the message sink the gateway's http provider delivers to (default
//                     http://localhost:8090); only the scripts that need codes read it
//   SUMMARY_JSON      where handleSummary writes the JSON summary (default
//                     loadtest/results/k6-<script>-summary.json)
import http from 'k6/http';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const trimmed = (url) => url.replace(/\/+$/, '');
export const OTPGATE_URL = trimmed(__ENV.OTPGATE_URL || 'http://localhost:8080');
export const ROOT_KEY = __ENV.OTPGATE_ROOT_KEY || '';
export const SINK_URL = trimmed(__ENV.OTPGATE_SINK_URL || 'http://localhost:8090');

// What to do when the sink gets no code: the exact commands of loadtest/README.md.
const SINK_HELP =
  'the scripts that need codes read them from the message sink (the gateway has no test mode, and ' +
  "the log provider only prints them): start the sink with 'cargo run --release --example baseline " +
  "-- --mode sink --listen 127.0.0.1:8090' and the gateway with " +
  "OTPGATE_HTTP_PROVIDER_URL=http://127.0.0.1:8090/messages (loadtest/README.md, 'Load testing with " +
  "k6'); set OTPGATE_SINK_URL if the sink listens elsewhere";

// ---------------------------------------------------------------------------------------------
// Metrics: otpgate's answers only. `ok` is whether the answer is the one the flow expects.
export const otpgateRequests = new Counter('otpgate_requests');
export const otpgateLatency = new Trend('otpgate_latency', true);
export const otpgateErrors = new Rate('otpgate_errors');

export function record(response, ok) {
  otpgateRequests.add(1);
  otpgateLatency.add(response.timings.duration);
  otpgateErrors.add(!ok);
}

const json = (response) => {
  try {
    return response.json();
  } catch (_) {
    return null;
  }
};
// The body of an answer with this status, else null.
export const bodyIf = (response, status) => (response.status === status ? json(response) : null);

export const keyParams = (key, name) => ({
  headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
  tags: { name },
});

// `body`: an object, or a string of JSON already encoded.
export const post = (path, key, body, name) =>
  http.post(`${OTPGATE_URL}${path}`, typeof body === 'string' ? body : JSON.stringify(body), keyParams(key, name));

// ---------------------------------------------------------------------------------------------
// Setup helpers: any answer but the expected one stops the test with what went wrong.
export function fail(message) {
  exec.test.abort(`setup: ${message}`);
}

function expectStatus(response, status, what) {
  if (response.status !== status) {
    const body = String(response.body || response.error || '').slice(0, 300);
    fail(`${what}: expected ${status}, got ${response.status} ${body}`);
  }
  return json(response);
}

// Requests in parallel batches of `width` (k6 runs a batch's requests concurrently).
export function batched(requests, width = 50) {
  const answers = [];
  for (let start = 0; start < requests.length; start += width) {
    answers.push(...http.batch(requests.slice(start, start + width)));
  }
  return answers;
}

export function batchedExpect(requests, status, what) {
  return batched(requests).map((response, i) => expectStatus(response, status, `${what} #${i}`));
}

export const request = (method, path, key, body) => ({
  method,
  url: `${OTPGATE_URL}${path}`,
  body: body === undefined ? null : JSON.stringify(body),
  params: keyParams(key, 'setup'),
});

// Pumping-guard thresholds that sends to fresh numbers never approved cannot trip (a load test
// sends far more to one prefix and one country than the guard allows unapproved): the figures
// still include the guard's counting. loadtest/run gives its own account the same.
const NEVER_TRIPS = {
  min_sends: 1000000000000,
  min_conversion_percent: 0,
  surge_factor: 1000000,
  surge_min_sends: 1000000000000,
  cooldown_seconds: 60,
};

// A fresh account for this run, named after the script and the time, with an owner key (for the
// policy and the users) and a service key (what a login service holds); `policy` is merged into
// the PUT /v1/policy that sets the guard out of reach.
export function newAccount(script, policy = {}) {
  if (!ROOT_KEY) {
    fail('OTPGATE_ROOT_KEY is not set: the scripts create their own account with the root key');
  }
  const health = http.get(`${OTPGATE_URL}/healthz`, { tags: { name: 'setup' } });
  if (health.status !== 200) {
    fail(`the gateway does not answer at ${OTPGATE_URL}/healthz (${health.status} ${health.error || ''}); set OTPGATE_URL`);
  }
  const name = `k6 ${script} ${new Date().toISOString()}`;
  const account = expectStatus(post('/v1/accounts', ROOT_KEY, { name }, 'setup'), 201, 'create the account (is OTPGATE_ROOT_KEY the gateway\'s?)');
  const mint = (role) =>
    expectStatus(post(`/v1/accounts/${account.id}/keys`, ROOT_KEY, { role }, 'setup'), 201, `mint a ${role} key`).key;
  const ownerKey = mint('owner');
  const serviceKey = mint('service');
  const body = Object.assign({ abuse: { guard: { prefix: NEVER_TRIPS, country: NEVER_TRIPS } } }, policy);
  const answer = http.put(`${OTPGATE_URL}/v1/policy`, JSON.stringify(body), keyParams(ownerKey, 'setup'));
  expectStatus(answer, 200, 'set the policy');
  return { id: account.id, ownerKey, serviceKey, numberBase: numberBase() };
}

// ---------------------------------------------------------------------------------------------
// Phone numbers: German mobile numbers +49151 and 8 digits. The sink keeps the last code per
// number for as long as it runs, so a number an earlier run used would hand back a stale code: a
// run starts its numbers at the clock in milliseconds (mod 10^8), so the next run starts past the
// last one as long as a run uses fewer numbers than milliseconds pass until the next one, and every
// number is looked up in the sink before its first send and skipped if it has a code already.
// The per-number quota does not carry over between runs: it counts per account, and each run has
// its own.
const numberBase = () => Date.now() % 100000000;
export const number = (base, n) => `+49151${String((base + n) % 100000000).padStart(8, '0')}`;

// The n-th number this VU may use after the `reserved` ones setup took: VUs interleave, so the
// run's numbers stay one contiguous range.
export function vuNumber(base, reserved, n) {
  const vus = Math.max(exec.instance.vusInitialized, 1);
  return number(base, reserved + n * vus + (exec.vu.idInTest - 1));
}

const sinkCodeUrl = (to) => `${SINK_URL}/codes/${encodeURIComponent(to)}`;
// The sink answers 404 for a number it has no code for: an expected answer, not a failed request
// in k6's http_req_failed.
const sinkParams = { tags: { name: 'sink' }, responseCallback: http.expectedStatuses(200, 404) };

// Whether the sink has a code for this number already (an earlier run's).
export function sinkKnows(to) {
  return http.get(sinkCodeUrl(to), sinkParams).status === 200;
}

// The code the sink received for this number: delivery is asynchronous (queue, then the
// provider's POST to the sink), so poll for up to `timeoutMs`. null when none came.
export function deliveredCode(to, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const response = http.get(sinkCodeUrl(to), sinkParams);
    if (response.status === 200) {
      const body = json(response);
      if (body && body.code) return body.code;
    }
    if (Date.now() > deadline) return null;
    sleep(0.01);
  }
}

// Setup of the scripts that read codes: one send to a fresh number whose code must reach the
// sink and approve, else the test stops and says how to start the sink.
export function requireSink(account, n) {
  const to = number(account.numberBase, n);
  const sink = http.get(`${SINK_URL}/stats`, { tags: { name: 'setup' } });
  if (sink.status !== 200) {
    fail(`no message sink at ${SINK_URL} (${sink.status} ${sink.error || ''}): ${SINK_HELP}`);
  }
  if (sinkKnows(to)) fail(`the sink already has a code for ${to}, a number this run was to use; restart the sink`);
  const sent = expectStatus(post('/v1/verifications', account.serviceKey, { to }, 'setup'), 201, 'send a first code');
  const code = deliveredCode(to);
  if (code === null) {
    fail(`the code sent to ${to} did not reach the sink at ${SINK_URL} within 5 s: ${SINK_HELP}`);
  }
  const checked = expectStatus(
    post('/v1/verifications/check', account.serviceKey, { id: sent.id, code }, 'setup'),
    200,
    'check the first code',
  );
  if (checked.status !== 'approved') fail(`the code the sink received for ${to} was not approved: ${JSON.stringify(checked)}`);
}

// ---------------------------------------------------------------------------------------------
// Options every script starts from (the command line's --vus and --duration override them).
const trendStats = ['avg', 'med', 'p(90)', 'p(99)', 'max'];
export const optionsWith = (thresholds) => ({
  vus: 20,
  duration: '10s',
  setupTimeout: '300s',
  summaryTrendStats: trendStats,
  thresholds,
});

// ---------------------------------------------------------------------------------------------
// The end-of-test summary. k6 1.1 prints its own text summary only when handleSummary returns
// nothing, and its textSummary() is a remote jslib module; so the text here follows k6's layout
// (every threshold with the value it was held against, then every metric), and the whole summary
// data goes to the JSON file beside it (loadtest/run reads it).
const fmt = (metric, value) => {
  if (value === undefined || value === null) return 'n/a';
  if (metric.type === 'rate') return `${(value * 100).toFixed(2)}%`;
  if (metric.type === 'trend' && metric.contains === 'time') return `${value.toFixed(2)}ms`;
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
};

const metricLine = (name, metric) => {
  const v = metric.values;
  let text;
  if (metric.type === 'counter') text = `${v.count} (${v.rate.toFixed(1)}/s)`;
  else if (metric.type === 'rate') text = `${fmt(metric, v.rate)} (${v.passes} of ${v.passes + v.fails})`;
  else if (metric.type === 'gauge') text = `${v.value} (min ${v.min}, max ${v.max})`;
  else text = trendStats.filter((stat) => stat in v).map((stat) => `${stat}=${fmt(metric, v[stat])}`).join(' ');
  return `    ${(name + ' ').padEnd(40, '.')} ${text}`;
};

// `extra`: a line of the script's own figures under the headline.
export function summarise(data, script, extra = '') {
  const metrics = data.metrics;
  const lines = [`\n  k6 ${script}: ${OTPGATE_URL}`, `  ${headline(data)}`];
  if (extra) lines.push(`  ${extra}`);
  lines.push('', '  THRESHOLDS', '');
  const crossed = [];
  for (const name of Object.keys(metrics).sort()) {
    const metric = metrics[name];
    if (!metric.thresholds) continue;
    lines.push(`    ${name}`);
    for (const [expression, result] of Object.entries(metric.thresholds)) {
      const stat = expression.split(/[<>=!]/)[0].trim();
      if (!result.ok) crossed.push(name);
      lines.push(`    ${result.ok ? '✓' : '✗'} '${expression}' ${stat}=${fmt(metric, metric.values[stat])}`);
    }
  }
  lines.push('', '  METRICS', '');
  for (const name of Object.keys(metrics).sort()) lines.push(metricLine(name, metrics[name]));
  const seconds = data.state.testRunDurationMs / 1000;
  // A test stopped in setup has held its thresholds over no samples: say so instead.
  const verdict =
    data.otpgate.requests === 0
      ? 'no otpgate request after setup: the test stopped before its load (the error is above)'
      : crossed.length === 0
        ? 'every threshold held'
        : `thresholds crossed: ${crossed.join(', ')}`;
  lines.push(
    '',
    `  ${verdict}; ` +
      `${seconds.toFixed(1)} s with setup; JSON summary: ${summaryPath(script)}`,
    '',
  );
  const out = { stdout: lines.join('\n') + '\n' };
  out[summaryPath(script)] = JSON.stringify(data, null, 2);
  // loadtest/run's line: otpgate's figures after setup.
  if (__ENV.SUMMARY_FILE) {
    const o = data.otpgate;
    out[__ENV.SUMMARY_FILE] =
      [
        `requests=${o.requests}`,
        `duration_us=${Math.round(o.seconds * 1e6)}`,
        `p50_us=${Math.round(o.p50_ms * 1000)}`,
        `p99_us=${Math.round(o.p99_ms * 1000)}`,
        `errors=${o.errors}`,
        `crossed=${[...new Set(crossed)].join(',')}`,
      ].join(' ') + '\n';
  }
  return out;
}

// loadtest/results/ (gitignored, and present in every checkout), found from this file's own
// place so that the default does not depend on the working directory.
const RESULTS_DIR = decodeURIComponent(import.meta.resolve('../results/').replace(/^file:\/\//, ''));
const summaryPath = (script) => __ENV.SUMMARY_JSON || `${RESULTS_DIR}k6-${script}-summary.json`;

// The seconds from the end of setup (every setup returns `readyAt`) to the summary: k6's own
// rates divide by the whole run, setup included, which for trusted.js is most of it.
export const measuredSeconds = (data) =>
  data.setup_data && data.setup_data.readyAt
    ? (Date.now() - data.setup_data.readyAt) / 1000
    : data.state.testRunDurationMs / 1000;

// otpgate's answers per second after setup, and the figures loadtest/run reads from the JSON.
export function headline(data) {
  const metric = (name) => (data.metrics[name] ? data.metrics[name].values : {});
  const requests = metric('otpgate_requests').count || 0;
  const latency = metric('otpgate_latency');
  const seconds = measuredSeconds(data);
  data.otpgate = {
    requests,
    seconds,
    per_second: requests / seconds,
    p50_ms: latency.med || 0,
    p99_ms: latency['p(99)'] || 0,
    errors: metric('otpgate_errors').passes || 0,
  };
  return (
    `otpgate: ${requests} requests in ${seconds.toFixed(1)} s after setup (${data.otpgate.per_second.toFixed(0)}/s), ` +
    `p50 ${data.otpgate.p50_ms.toFixed(2)} ms, p99 ${data.otpgate.p99_ms.toFixed(2)} ms, ${data.otpgate.errors} unexpected answers`
  );
}
