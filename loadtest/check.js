// Check-heavy (the login hot path): POST /v1/verifications/check by id with a wrong code.
//
// setup() creates an account of its own, sends CHECK_VERIFICATIONS codes (default 2000) to
// numbers no earlier run used, and hands each VU its own slice of the verifications. Every answer
// must be exactly the one the gateway's attempt counting promises: while attempts remain, 200
// "pending" with one attempt less; the check that uses the last attempt, 200
// "max_attempts_reached"; every check after it, 409 verification-max-attempts-reached (counting
// nothing). So the error threshold holds with the gateway's defaults (5 attempts), where most
// checks soon find a final verification; to keep every check on the whole check path, start the
// gateway with OTPGATE_VERIFICATION__MAX_CHECK_ATTEMPTS=1000000000 (loadtest/run does). The
// summary says how many checks counted an attempt and how many found the verification final.
//
//   OTPGATE_ROOT_KEY=... k6 run --vus 20 --duration 10s loadtest/check.js
//   (OTPGATE_URL, default http://localhost:8080; no message sink needed)
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import {
  batchedExpect,
  bodyIf,
  fail,
  newAccount,
  number,
  optionsWith,
  post,
  record,
  request,
  summarise,
} from './lib/otpgate.js';

const VERIFICATIONS = Number(__ENV.CHECK_VERIFICATIONS || 2000);
const WRONG = '0000000000';

export const options = optionsWith({
  // Every answer exactly as promised: attempts counted one by one, never an approval.
  otpgate_errors: ['rate==0'],
});

// 409 (the verification final) is an expected answer here, not a failed request for k6's
// http_req_failed; otpgate_errors says whether each answer was the right one.
http.setResponseCallback(http.expectedStatuses(200, 201, 409));

const counted = new Counter('checks_counted');
const onFinal = new Counter('checks_on_final');

export function setup() {
  const vus = exec.instance.vusInitialized;
  if (!(VERIFICATIONS >= vus)) fail(`CHECK_VERIFICATIONS (${VERIFICATIONS}) must be at least the VUs (${vus})`);
  const account = newAccount('check');
  const sends = [];
  for (let n = 0; n < VERIFICATIONS; n++) {
    // Ten digits, so that the wrong code below is the right one with odds of 10^-10, not 10^-6.
    const to = number(account.numberBase, n);
    sends.push(request('POST', '/v1/verifications', account.serviceKey, { to, code_length: 10 }));
  }
  const started = batchedExpect(sends, 201, 'send a code');
  return {
    key: account.serviceKey,
    ids: started.map((v) => v.id),
    // A new verification's attempts_left is the gateway's max_check_attempts.
    attempts: started[0].attempts_left,
    // From then on an "expired" answer is right too (runs longer than the codes' TTL).
    expiresAt: Math.min(...started.map((v) => Date.parse(v.expires_at))),
    readyAt: Date.now(),
  };
}

// This VU's verifications (every vus-th from its own index) and the checks it made on each.
let mine = null;
let position = 0;

function expected(data, made, response) {
  if (Date.now() >= data.expiresAt - 1000) {
    const body = bodyIf(response, 200) || bodyIf(response, 409) || {};
    if (body.status === 'expired' || String(body.type || '').endsWith('verification-expired')) return true;
  }
  if (made >= data.attempts) {
    const problem = bodyIf(response, 409);
    return problem !== null && String(problem.type).endsWith('verification-max-attempts-reached');
  }
  const body = bodyIf(response, 200);
  if (body === null || body.valid !== false) return false;
  const left = data.attempts - made - 1;
  return body.attempts_left === left && body.status === (left > 0 ? 'pending' : 'max_attempts_reached');
}

export default function (data) {
  if (mine === null) {
    // Read once: k6's execution getters are slow enough to matter in a loop over every id.
    const vus = exec.instance.vusInitialized;
    const me = exec.vu.idInTest - 1;
    mine = [];
    for (let i = me; i < data.ids.length; i += vus) mine.push({ id: data.ids[i], made: 0 });
  }
  const entry = mine[position];
  position = (position + 1) % mine.length;
  const response = post('/v1/verifications/check', data.key, { id: entry.id, code: WRONG }, 'check');
  record(response, expected(data, entry.made, response));
  if (response.status === 200) counted.add(1);
  else if (response.status === 409) onFinal.add(1);
  entry.made += 1;
}

export function handleSummary(data) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  const extra =
    `checks that counted an attempt: ${count('checks_counted')}, that found the verification final ` +
    `(409, nothing counted): ${count('checks_on_final')}; ${data.setup_data ? data.setup_data.attempts : '?'} attempts per verification`;
  return summarise(data, 'check', extra);
}
