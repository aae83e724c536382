// Trusted-device check: POST /v1/trusted-devices/check {user, device_token}, rotating over
// devices trusted the way a login service trusts them. Every answer must be 200 with
// "trusted":true. The policy, the users and the devices come from otpgate's in-process cache, so
// a check makes no store round trip once warm.
//
// setup() creates an account of its own whose policy trusts devices for 30 days, then
// TRUSTED_USERS users (default 200), each with a phone no earlier run used: a code sent, read
// from the message sink, checked to approval, and a device trusted on that approval.
//
//   OTPGATE_ROOT_KEY=... k6 run --vus 20 --duration 10s loadtest/trusted.js
//   (OTPGATE_URL, default http://localhost:8080; OTPGATE_SINK_URL, default http://localhost:8090)
import exec from 'k6/execution';
import {
  batchedExpect,
  bodyIf,
  deliveredCode,
  fail,
  newAccount,
  number,
  optionsWith,
  post,
  record,
  request,
  requireSink,
  sinkKnows,
  summarise,
} from './lib/otpgate.js';

const USERS = Number(__ENV.TRUSTED_USERS || 200);

export const options = optionsWith({
  // Every answer 200 and trusted.
  otpgate_errors: ['rate==0'],
});

export function setup() {
  if (!(USERS >= 1 && USERS <= 100000)) fail(`TRUSTED_USERS must be 1 to 100000, not ${__ENV.TRUSTED_USERS}`);
  const account = newAccount('trusted', { trusted_device: '30d' });
  requireSink(account, 0);
  const key = account.serviceKey;
  const phones = [];
  for (let n = 1; n <= USERS; n++) {
    const phone = number(account.numberBase, n);
    if (sinkKnows(phone)) fail(`the sink already has a code for ${phone}, a number this run was to use; restart the sink`);
    phones.push(phone);
  }
  const users = batchedExpect(
    phones.map((phone) => request('POST', '/v1/users', account.ownerKey, { phone })),
    201,
    'add a user',
  );
  const sent = batchedExpect(
    phones.map((to) => request('POST', '/v1/verifications', key, { to })),
    201,
    'send a code',
  );
  const codes = phones.map((to) => {
    const code = deliveredCode(to);
    if (code === null) fail(`the code sent to ${to} did not reach the sink`);
    return code;
  });
  const checked = batchedExpect(
    sent.map((v, i) => request('POST', '/v1/verifications/check', key, { id: v.id, code: codes[i] })),
    200,
    'check a code',
  );
  checked.forEach((v) => v.status === 'approved' || fail(`a right code was not approved: ${JSON.stringify(v)}`));
  const devices = batchedExpect(
    users.map((user, i) =>
      request('POST', `/v1/users/${encodeURIComponent(user.id)}/trusted-devices`, key, { verification_id: sent[i].id }),
    ),
    201,
    'trust a device',
  );
  return {
    key,
    bodies: users.map((user, i) => JSON.stringify({ user: user.id, device_token: devices[i].token })),
    readyAt: Date.now(),
  };
}

export default function (data) {
  const body = data.bodies[(exec.vu.idInTest * 7919 + exec.vu.iterationInScenario) % data.bodies.length];
  const response = post('/v1/trusted-devices/check', data.key, body, 'trusted_device_check');
  const answer = bodyIf(response, 200);
  record(response, answer !== null && answer.trusted === true);
}

export function handleSummary(data) {
  return summarise(data, 'trusted');
}
