// The official twilio-node package against otpgate's Twilio Verify v2 facade: only the Verify
// domain's base URL changes. scripts/compat installs twilio into a cache folder outside the repo
// and runs this with NODE_PATH pointing at it, a gateway and a sink already up.
"use strict";

const twilio = require("twilio");

const GATEWAY = process.env.OTPGATE_URL;
const ROOT_KEY = process.env.OTPGATE_ROOT_KEY;
const SINK = process.env.SINK_URL;

function number() {
  let digits = "";
  for (let i = 0; i < 8; i++) digits += Math.floor(Math.random() * 10);
  return "+49151" + digits;
}

function client(username, password) {
  const c = twilio(username, password);
  c.verify.baseUrl = GATEWAY; // the one-line switch
  return c;
}

async function mintKey(accountSid) {
  const response = await fetch(`${GATEWAY}/v1/accounts/${accountSid}/keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ROOT_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ role: "service" }),
  });
  if (response.status !== 201) throw new Error(`mint: ${response.status}`);
  return (await response.json()).key;
}

async function codeSentTo(to) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const messages = (await (await fetch(`${SINK}/messages`)).json()).filter((m) => m.to === to);
    if (messages.length) return messages[messages.length - 1].body.match(/\d{4,10}/)[0];
    if (Date.now() > deadline) throw new Error(`no message reached ${to}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

async function expectError(promise, status, code) {
  try {
    await promise;
  } catch (error) {
    assert(error.status === status && error.code === code, `got ${error.status} ${error.code}: ${error.message}`);
    return;
  }
  throw new Error(`expected Twilio error ${code}`);
}

// Services are created with the root key: twilio-node wants an AC-shaped user name, any will do.
async function newService() {
  const admin = client("AC" + "0".repeat(32), ROOT_KEY);
  const service = await admin.verify.v2.services.create({ friendlyName: "Node compat" });
  const accountSid = "AC" + service.sid.slice(2);
  return { service, verify: client(accountSid, await mintKey(accountSid)).verify.v2.services(service.sid) };
}

const tests = {
  async sendCheckApprove() {
    const { service, verify } = await newService();
    const to = number();
    const verification = await verify.verifications.create({ to, channel: "sms" });
    assert(verification.sid.startsWith("VE") && verification.sid.length === 34, verification.sid);
    assert(verification.status === "pending", verification.status);
    assert(verification.serviceSid === service.sid, verification.serviceSid);
    const code = await codeSentTo(to);
    const check = await verify.verificationChecks.create({ to, code });
    assert(check.status === "approved" && check.valid === true, `${check.status} ${check.valid}`);
    const fetched = await verify.verifications(verification.sid).fetch();
    assert(fetched.status === "approved", fetched.status);
  },
  async wrongCodesRaise60202() {
    const { verify } = await newService();
    const to = number();
    await verify.verifications.create({ to, channel: "sms" });
    const code = await codeSentTo(to);
    const wrong = code.replace(/\d/g, (d) => String((Number(d) + 1) % 10));
    for (let i = 0; i < 4; i++) {
      const check = await verify.verificationChecks.create({ to, code: wrong });
      assert(check.status === "pending" && check.valid === false, check.status);
    }
    await expectError(verify.verificationChecks.create({ to, code: wrong }), 429, 60202);
  },
  async badChannelRaises60200() {
    const { verify } = await newService();
    await expectError(verify.verifications.create({ to: number(), channel: "fax" }), 400, 60200);
  },
};

(async () => {
  let passed = 0;
  let failed = 0;
  for (const [name, test] of Object.entries(tests)) {
    try {
      await test();
      passed++;
      console.log(`PASS ${name}`);
    } catch (error) {
      failed++;
      console.log(`FAIL ${name}: ${error.stack || error}`);
    }
  }
  console.log(`node twilio SDK: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
})();
