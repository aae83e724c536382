// Check-heavy (the login hot path): POST /v1/verifications/check with a wrong code, rotating
// through the seeded ids. Run against an otpgate whose max_check_attempts is very high, so every
// check runs the whole store script and the verifications stay pending (loadtest/run does this).
//
//   k6 run --vus 50 --duration 10s -e BASE_URL=http://127.0.0.1:PORT -e OTPGATE_KEY=ogk_... \
//     -e IDS_FILE=/abs/path/ids.txt loadtest/check.js
import http from 'k6/http';
import { SharedArray } from 'k6/data';
import { BASE_URL, lines, optionsWith, params, record, summarise } from './lib/otpgate.js';

const ids = new SharedArray('ids', () => lines(__ENV.IDS_FILE));

export const options = optionsWith({
  // The targets: zero errors, p99 within 2 ms (k6 itself adds latency on 2 cores).
  otpgate_errors: ['rate==0'],
  otpgate_latency: ['p(99)<2'],
});

const checkParams = params('check');

export default function () {
  const id = ids[(__VU * 7919 + __ITER) % ids.length];
  const response = http.post(
    `${BASE_URL}/v1/verifications/check`,
    JSON.stringify({ id, code: '000000' }),
    checkParams,
  );
  let ok = response.status === 200;
  if (ok) {
    const body = response.json();
    ok = body.valid === false && body.status === 'pending';
  }
  record(response, ok);
}

export function handleSummary(data) {
  return summarise(data, 'check-heavy');
}
