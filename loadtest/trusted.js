// Trusted-device check: POST /v1/trusted-devices/check {user, device_token}, rotating through the
// pairs loadtest/run set up through the API (a user with a phone, a code sent, read from the sink
// and checked to approval, a device trusted on that approval). Every answer must be 200 with
// "trusted":true. The policy, the users and the devices come from otpgate's in-process cache, so
// a check makes no Redis round trip once warm.
//
//   k6 run --vus 50 --duration 10s -e BASE_URL=http://127.0.0.1:PORT -e OTPGATE_KEY=ogk_... \
//     -e TRUSTED_FILE=/abs/path/trusted.txt loadtest/trusted.js
import http from 'k6/http';
import { SharedArray } from 'k6/data';
import { BASE_URL, lines, optionsWith, params, record, summarise } from './lib/otpgate.js';

// "user token" per line.
const bodies = new SharedArray('trusted devices', () =>
  lines(__ENV.TRUSTED_FILE).map((line) => {
    const [user, token] = line.trim().split(/\s+/);
    return JSON.stringify({ user, device_token: token });
  }),
);

export const options = optionsWith({
  // Zero errors: every answer 200 and trusted. The throughput target (≥ 0.7 × the bare
  // server) is wrk's to measure; k6 itself takes more than a core here.
  otpgate_errors: ['rate==0'],
});

const checkParams = params('trusted_device_check');

export default function () {
  const body = bodies[(__VU * 7919 + __ITER) % bodies.length];
  const response = http.post(`${BASE_URL}/v1/trusted-devices/check`, body, checkParams);
  let ok = response.status === 200;
  if (ok) {
    ok = response.json().trusted === true;
  }
  record(response, ok);
}

export function handleSummary(data) {
  return summarise(data, 'trusted-device check');
}
