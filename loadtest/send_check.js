// Send then check, the way a login's second factor goes: send a code to a number no earlier run
// used, read the delivered code from the message sink (GET /codes/{e164}), type a wrong code
// first in about WRONG_SHARE of the logins (default 0.2), then the right one, which must be
// approved.
//
// setup() creates an account of its own and proves that a code reaches the sink (else it stops
// and says how to start one). Thresholds: every answer the expected one, every send approved.
//
//   OTPGATE_ROOT_KEY=... k6 run --vus 20 --duration 10s loadtest/send_check.js
//   (OTPGATE_URL, default http://localhost:8080; OTPGATE_SINK_URL, default http://localhost:8090)
import { Counter, Rate } from 'k6/metrics';
import {
  bodyIf,
  deliveredCode,
  newAccount,
  optionsWith,
  post,
  record,
  requireSink,
  sinkKnows,
  summarise,
  vuNumber,
} from './lib/otpgate.js';

const WRONG_SHARE = Number(__ENV.WRONG_SHARE || 0.2);
// Numbers setup takes for itself before the VUs' own.
const RESERVED = 1;

export const options = optionsWith({
  otpgate_errors: ['rate==0'],
  // Approvals per send: every code sent is delivered, and approved by the right code.
  approved_per_send: ['rate==1'],
});

const approvedPerSend = new Rate('approved_per_send');
const numbersSkipped = new Counter('numbers_skipped');

export function setup() {
  const account = newAccount('send_check');
  requireSink(account, 0);
  return { key: account.serviceKey, numberBase: account.numberBase, readyAt: Date.now() };
}

// The next number of this VU that the sink has no code for.
let slot = 0;
function freshNumber(data) {
  for (;;) {
    const to = vuNumber(data.numberBase, RESERVED, slot++);
    if (!sinkKnows(to)) return to;
    numbersSkipped.add(1);
  }
}

const checkCode = (key, to, code) => post('/v1/verifications/check', key, { to, code }, 'check');

export default function (data) {
  const to = freshNumber(data);
  const sent = post('/v1/verifications', data.key, { to }, 'send');
  record(sent, bodyIf(sent, 201) !== null);
  if (sent.status !== 201) {
    approvedPerSend.add(false);
    return;
  }
  const code = deliveredCode(to);
  if (code === null) {
    approvedPerSend.add(false);
    return;
  }
  if (Math.random() < WRONG_SHARE) {
    // Same length, last digit changed: certainly wrong.
    const wrong = code.slice(0, -1) + String((Number(code.slice(-1)) + 1) % 10);
    const response = checkCode(data.key, to, wrong);
    const body = bodyIf(response, 200);
    record(response, body !== null && body.valid === false && body.status === 'pending');
  }
  const response = checkCode(data.key, to, code);
  const body = bodyIf(response, 200);
  const approved = body !== null && body.valid === true && body.status === 'approved';
  record(response, approved);
  approvedPerSend.add(approved);
}

export function handleSummary(data) {
  return summarise(data, 'send_check');
}
