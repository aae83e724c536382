// Send then check, the way a login goes: send a code to a fresh number, read the delivered code
// from the sink (GET /codes/{e164}, the baseline in sink mode), type a wrong code first in about
// 20 % of logins, then the right one, which must be approved.
//
//   k6 run --vus 50 --duration 10s -e BASE_URL=http://127.0.0.1:PORT -e OTPGATE_KEY=ogk_... \
//     -e SINK_URL=http://127.0.0.1:SINKPORT loadtest/send_check.js
import http from 'k6/http';
import { sleep } from 'k6';
import { Counter } from 'k6/metrics';
import { BASE_URL, SINK_URL, optionsWith, params, record, summarise } from './lib/otpgate.js';

const WRONG_FIRST = Number(__ENV.WRONG_SHARE || 0.2);
// Numbers +49151 and 8 digits, fresh every iteration: a block of 100 000 per VU from 85 000 000
// (up to 149 VUs), clear of the ranges the wrk scripts use (20 000 000 to 80 000 000).
const FIRST_NUMBER = Number(__ENV.NUMBER_BASE || 85000000);
const PER_VU = 100000;

export const options = optionsWith({
  otpgate_errors: ['rate==0'],
  approved: ['count>0'],
  code_not_delivered: ['count==0'],
});

const approved = new Counter('approved');
const codeNotDelivered = new Counter('code_not_delivered');
const sendParams = params('send');
const checkParams = params('check');

function deliveredCode(to) {
  // Delivery is asynchronous (queue, then the provider's POST to the sink): poll briefly.
  for (let attempt = 0; attempt < 100; attempt++) {
    const response = http.get(`${SINK_URL}/codes/${encodeURIComponent(to)}`, { tags: { name: 'sink' } });
    if (response.status === 200) return response.json().code;
    sleep(0.01);
  }
  return null;
}

function checkCode(to, code) {
  const response = http.post(
    `${BASE_URL}/v1/verifications/check`,
    JSON.stringify({ to, code }),
    checkParams,
  );
  const body = response.status === 200 ? response.json() : null;
  return { response, body };
}

export default function () {
  const to = `+49151${String(FIRST_NUMBER + __VU * PER_VU + (__ITER % PER_VU)).padStart(8, '0')}`;
  const sent = http.post(`${BASE_URL}/v1/verifications`, JSON.stringify({ to }), sendParams);
  record(sent, sent.status === 201);
  if (sent.status !== 201) return;

  const code = deliveredCode(to);
  if (code === null) {
    codeNotDelivered.add(1);
    return;
  }
  if (Math.random() < WRONG_FIRST) {
    // Same length, last digit changed: certainly wrong.
    const wrong = code.slice(0, -1) + String((Number(code.slice(-1)) + 1) % 10);
    const { response, body } = checkCode(to, wrong);
    record(response, body !== null && body.valid === false && body.status === 'pending');
  }
  const { response, body } = checkCode(to, code);
  const ok = body !== null && body.valid === true && body.status === 'approved';
  record(response, ok);
  if (ok) approved.add(1);
}

export function handleSummary(data) {
  return summarise(data, 'send+check');
}
