// The ceilings measured with k6 (loadtest/run --k6): the same POST a check sends, with a static
// body, to the bare server or the EVALSHA server of examples/baseline.rs at CEILING_URL. k6 takes
// more CPU per request than wrk, so loadtest/run divides the k6 scripts' figures by these, never
// by wrk's ceilings.
//
//   k6 run --vus 20 --duration 10s -e CEILING_URL=http://127.0.0.1:PORT loadtest/ceiling.js
import http from 'k6/http';
import { optionsWith, record, summarise } from './lib/otpgate.js';

const URL = `${(__ENV.CEILING_URL || 'http://127.0.0.1:8090').replace(/\/+$/, '')}/v1/verifications/check`;
const BODY = '{"id":"VE00000000000000000000000000000000","code":"000000"}';
const PARAMS = {
  headers: {
    Authorization: 'Bearer ogk_ceiling_runs_ignore_this_key_0000000000000',
    'Content-Type': 'application/json',
  },
  tags: { name: 'ceiling' },
};

export const options = optionsWith({ otpgate_errors: ['rate==0'] });

export function setup() {
  return { readyAt: Date.now() };
}

export default function () {
  const response = http.post(URL, BODY, PARAMS);
  record(response, response.status === 200);
}

export function handleSummary(data) {
  return summarise(data, 'ceiling');
}
