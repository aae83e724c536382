// Shared by the k6 scripts: the environment they read, metrics that count otpgate's requests only
// (not the reads from the sink), and a summary loadtest/run can parse.
//
// Environment: BASE_URL (otpgate), OTPGATE_KEY (a service key), IDS_FILE (seeded verification ids,
// one per line, for check.js), SINK_URL (the baseline sink, for send_check.js), TRUSTED_FILE
// ("user device-token" pairs, one per line, for trusted.js), SUMMARY_FILE (optional: where to
// write the key=value summary loadtest/run reads).
import { Counter, Rate, Trend } from 'k6/metrics';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const SINK_URL = __ENV.SINK_URL || 'http://127.0.0.1:8090';
export const KEY = __ENV.OTPGATE_KEY || '';

export const params = (name) => ({
  headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
  tags: { name },
});

export const otpgateRequests = new Counter('otpgate_requests');
export const otpgateLatency = new Trend('otpgate_latency', true);
export const otpgateErrors = new Rate('otpgate_errors');

// Records one otpgate answer; `ok` is whether it was the answer the flow expects.
export function record(response, ok) {
  otpgateRequests.add(1);
  otpgateLatency.add(response.timings.duration);
  otpgateErrors.add(!ok);
}

export const summaryTrendStats = ['avg', 'med', 'p(90)', 'p(99)', 'max'];

// The options every script runs with (loadtest/run overrides vus and duration), and its thresholds.
export const optionsWith = (thresholds) => ({
  vus: 50,
  duration: '10s',
  summaryTrendStats,
  thresholds,
});

// The non-empty lines of a file loadtest/run wrote (call it in the init context, as k6's open).
export const lines = (path) =>
  open(path)
    .split('\n')
    .filter((line) => line.length > 0);

export function summarise(data, scenario) {
  const metric = (name) => (data.metrics[name] ? data.metrics[name].values : {});
  const requests = metric('otpgate_requests').count || 0;
  const latency = metric('otpgate_latency');
  const errors = metric('otpgate_errors').passes || 0;
  const durationMs = data.state.testRunDurationMs;
  const line = [
    `requests=${requests}`,
    `duration_us=${Math.round(durationMs * 1000)}`,
    `p50_us=${Math.round((latency.med || 0) * 1000)}`,
    `p99_us=${Math.round((latency['p(99)'] || 0) * 1000)}`,
    `errors=${errors}`,
  ].join(' ');
  const crossed = Object.entries(data.metrics)
    .filter(([, m]) => m.thresholds && Object.values(m.thresholds).some((t) => !t.ok))
    .map(([name]) => name);
  const text =
    `${scenario}: ${(requests / (durationMs / 1000)).toFixed(0)} otpgate req/s, ` +
    `p50 ${(latency.med || 0).toFixed(2)} ms, p99 ${(latency['p(99)'] || 0).toFixed(2)} ms, ` +
    `errors ${errors}, thresholds ${crossed.length ? 'crossed: ' + crossed.join(', ') : 'held'}\n`;
  const out = { stdout: text };
  if (__ENV.SUMMARY_FILE) out[__ENV.SUMMARY_FILE] = line + '\n';
  return out;
}
