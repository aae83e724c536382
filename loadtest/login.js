// The whole login flow, as a login service runs it for a new user on a new device, then for the
// same user back on that device. One iteration:
//   1. POST /v1/users {phone}                     the user signs up (a phone no earlier run used)
//   2. POST /v1/logins {user}                     "challenge", SMS first (2FA required, no device)
//   3. POST /v1/verifications {to}                the code is sent ...
//   4. GET  {sink}/codes/{e164}                   ... and read from the message sink
//   5. POST /v1/verifications/check {id, code}    a wrong code first in WRONG_SHARE of logins
//                                                 (default 0.2), then the right one: "approved"
//   6. POST /v1/users/{user}/trusted-devices      the device trusted on that approval: a token
//   7. POST /v1/logins {user, device_token}       back on that device: "allow", trusted_device
//   8. POST /v1/trusted-devices/check             the device check alone: trusted
//
// setup() creates an account of its own (2FA required, devices trusted for 30 days) and proves
// that a code reaches the sink (else it stops and says how to start one). Thresholds: every answer
// the expected one, every send approved, every login on a trusted device allowed.
//
//   OTPGATE_ROOT_KEY=... k6 run --vus 20 --duration 10s loadtest/login.js
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
  // Every login back on the device trusted in the same iteration is allowed without a code.
  allowed_on_trusted_device: ['rate==1'],
});

const approvedPerSend = new Rate('approved_per_send');
const allowedOnTrusted = new Rate('allowed_on_trusted_device');
const numbersSkipped = new Counter('numbers_skipped');
const logins = new Counter('logins');

export function setup() {
  const account = newAccount('login', { require_2fa: true, trusted_device: '30d' });
  requireSink(account, 0);
  return {
    key: account.serviceKey,
    ownerKey: account.ownerKey,
    numberBase: account.numberBase,
    readyAt: Date.now(),
  };
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

// One step: the request, whether its answer is the expected one (`accept` gets the JSON body of
// an answer with `status`), and that body or null.
function step(path, key, body, name, status, accept) {
  const response = post(path, key, body, name);
  const answer = bodyIf(response, status);
  const ok = answer !== null && accept(answer);
  record(response, ok);
  return ok ? answer : null;
}

export default function (data) {
  logins.add(1);
  const phone = freshNumber(data);
  // 1. The login service's backend adds the user (an owner key: service keys do not manage people).
  const user = step('/v1/users', data.ownerKey, { phone }, 'create_user', 201, (u) => typeof u.id === 'string');
  if (user === null) return approvedPerSend.add(false);
  const who = encodeURIComponent(user.id);
  // 2. New device: the decision asks for a second factor, SMS first.
  const challenge = step('/v1/logins', data.key, { user: user.id }, 'login', 200, (d) =>
    d.decision === 'challenge' && Array.isArray(d.factors) && d.factors.length > 0 && d.factors[0].type === 'sms',
  );
  if (challenge === null) return approvedPerSend.add(false);
  // 3-4. The code, sent and delivered.
  const sent = step('/v1/verifications', data.key, { to: phone }, 'send', 201, (v) => v.status === 'pending');
  if (sent === null) return approvedPerSend.add(false);
  const code = deliveredCode(phone);
  if (code === null) return approvedPerSend.add(false);
  // 5. A mistyped code now and then, then the right one.
  if (Math.random() < WRONG_SHARE) {
    const wrong = code.slice(0, -1) + String((Number(code.slice(-1)) + 1) % 10);
    step('/v1/verifications/check', data.key, { id: sent.id, code: wrong }, 'check', 200, (v) =>
      v.valid === false && v.status === 'pending',
    );
  }
  const approved = step('/v1/verifications/check', data.key, { id: sent.id, code }, 'check', 200, (v) =>
    v.valid === true && v.status === 'approved',
  );
  approvedPerSend.add(approved !== null);
  if (approved === null) return undefined;
  // 6. The device trusted on that approval.
  const device = step(`/v1/users/${who}/trusted-devices`, data.key, { verification_id: sent.id }, 'trust_device', 201, (d) =>
    typeof d.token === 'string' && d.token.startsWith('ogd_'),
  );
  if (device === null) return allowedOnTrusted.add(false);
  // 7. Back on that device: allowed without a code.
  const allowed = step('/v1/logins', data.key, { user: user.id, device_token: device.token }, 'login', 200, (d) =>
    d.decision === 'allow' && d.reason === 'trusted_device',
  );
  allowedOnTrusted.add(allowed !== null);
  // 8. The device check alone.
  step('/v1/trusted-devices/check', data.key, { user: user.id, device_token: device.token }, 'trusted_device_check', 200, (d) =>
    d.trusted === true,
  );
  return undefined;
}

export function handleSummary(data) {
  const count = (name) => (data.metrics[name] ? data.metrics[name].values.count : 0);
  return summarise(data, 'login', `logins (new user, new device, then back on it): ${count('logins')}`);
}
