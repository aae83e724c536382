// The official twilio-node package against otpgate's Twilio Verify v2 facade: only the Verify
// domain's base URL changes. scripts/compat installs twilio into a cache folder outside the repo
// and runs this with NODE_PATH pointing at it, a gateway and a sink already up.
"use strict";

const crypto = require("crypto");
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

async function mintKey(accountSid, role = "service") {
  const response = await fetch(`${GATEWAY}/v1/accounts/${accountSid}/keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ROOT_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ role }),
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

async function v1(method, path, key, body) {
  const response = await fetch(`${GATEWAY}${path}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

// The CBOR an attestation needs (RFC 8949): integers, byte and text strings, and maps given as
// [key, value] pairs (COSE keys are integers).
function cbor(value) {
  const head = (major, length) =>
    length < 24
      ? Buffer.from([(major << 5) | length])
      : length < 256
        ? Buffer.from([(major << 5) | 24, length])
        : Buffer.from([(major << 5) | 25, length >> 8, length & 0xff]);
  if (typeof value === "number") return value >= 0 ? head(0, value) : head(1, -1 - value);
  if (Buffer.isBuffer(value)) return Buffer.concat([head(2, value.length), value]);
  if (typeof value === "string") return Buffer.concat([head(3, Buffer.byteLength(value)), Buffer.from(value)]);
  return Buffer.concat([head(5, value.length), ...value.flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

const sha256 = (data) => crypto.createHash("sha256").update(data).digest();

// A P-256 passkey as a platform authenticator holds it (UP, UV, BE, BS), and the browser around
// it: it answers the gateway's options in PublicKeyCredential.toJSON() shape.
class SoftPasskey {
  constructor() {
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
    this.privateKey = privateKey;
    this.jwk = publicKey.export({ format: "jwk" });
    this.credentialId = crypto.randomBytes(32);
    this.counter = 0;
    this.userHandle = null;
    this.flags = 0x01 | 0x04 | 0x08 | 0x10;
  }

  clientData(type, challenge, origin) {
    return Buffer.from(JSON.stringify({ type, challenge, origin, crossOrigin: false }));
  }

  register(options, origin) {
    this.userHandle = options.user.id;
    const clientData = this.clientData("webauthn.create", options.challenge, origin);
    const cose = cbor([
      [1, 2],
      [3, -7],
      [-1, 1],
      [-2, Buffer.from(this.jwk.x, "base64url")],
      [-3, Buffer.from(this.jwk.y, "base64url")],
    ]);
    const length = Buffer.from([this.credentialId.length >> 8, this.credentialId.length & 0xff]);
    const authData = Buffer.concat([
      sha256(options.rp.id),
      Buffer.from([this.flags | 0x40]),
      Buffer.alloc(4),
      Buffer.alloc(16),
      length,
      this.credentialId,
      cose,
    ]);
    const attestation = cbor([
      ["fmt", "none"],
      ["attStmt", []],
      ["authData", authData],
    ]);
    return {
      id: this.credentialId.toString("base64url"),
      rawId: this.credentialId.toString("base64url"),
      authenticatorAttachment: "platform",
      type: "public-key",
      response: {
        attestationObject: attestation.toString("base64url"),
        clientDataJSON: clientData.toString("base64url"),
        transports: ["internal"],
      },
    };
  }

  assertion(options, origin) {
    this.counter += 1;
    const clientData = this.clientData("webauthn.get", options.challenge, origin);
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(this.counter);
    const authData = Buffer.concat([sha256(options.rpId), Buffer.from([this.flags]), counter]);
    // Node signs EC keys in DER, as WebAuthn's ES256 signatures are.
    const signature = crypto.sign("sha256", Buffer.concat([authData, sha256(clientData)]), this.privateKey);
    return {
      id: this.credentialId.toString("base64url"),
      rawId: this.credentialId.toString("base64url"),
      authenticatorAttachment: "platform",
      type: "public-key",
      response: {
        authenticatorData: authData.toString("base64url"),
        clientDataJSON: clientData.toString("base64url"),
        signature: signature.toString("base64url"),
        userHandle: this.userHandle,
      },
    };
  }
}

const tests = {
  async passkeyRegistersAndApprovesAChallenge() {
    const { service, verify } = await newService();
    const accountSid = "AC" + service.sid.slice(2);
    const owner = await mintKey(accountSid, "owner");
    const policy = await v1("PUT", "/v1/policy", owner, { channels: ["sms", "webauthn"] });
    assert(policy.status === 200, JSON.stringify(policy.body));
    const identity = "node-" + crypto.randomBytes(8).toString("hex");
    const user = await v1("POST", "/v1/users", owner, { id: identity, role: "member", phone: number() });
    assert(user.status === 201, JSON.stringify(user.body));

    const factor = await verify.newFactors.create({ friendly_name: "Node laptop", identity });
    assert(factor.sid.startsWith("YF") && factor.sid.length === 34, factor.sid);
    assert(factor.status === "unverified" && factor.identity === identity, factor.status);
    const origin = factor.config.relying_party.origins[0];
    const passkey = new SoftPasskey();
    const verified = await verify.newVerifyFactors.update(passkey.register(factor.options.publicKey, origin));
    assert(verified.sid === factor.sid && verified.status === "verified", verified.status);

    const challenge = await verify.newChallenge().create({ identity });
    assert(challenge.sid.startsWith("YC") && challenge.status === "pending", challenge.status);
    const assertion = passkey.assertion(challenge.options.publicKey, origin);
    const approved = await verify.approveChallenge.update(assertion);
    assert(approved.sid === challenge.sid && approved.status === "approved", approved.status);
    assert(approved.identity === identity && approved.factorSid === factor.sid, approved.factorSid);
    await expectError(verify.approveChallenge.update(assertion), 403, 60324);
  },

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
