// otpgate's browser helper for WebAuthn (security keys and passkeys), served at /sdk/webauthn.js.
//
// The gateway speaks JSON with binary fields in base64url (as PublicKeyCredential.toJSON() and
// parseCreationOptionsFromJSON do); the browser's navigator.credentials speaks ArrayBuffers.
// These functions turn one into the other and back. They never talk to the gateway: a login
// service's page passes the options its server got from the gateway, and posts the result back
// to its server, which forwards it with its key.
//
//   import { register, authenticate, autofill } from "https://gateway.example.com/sdk/webauthn.js";
//   const credential = await register(enrolment.public_key);      // -> /factors/{id}/confirm
//   const assertion = await authenticate(challenge.public_key);   // -> /challenges or /v1/passkeys/challenges
//   const assertion = await autofill(options, { signal });        // conditional UI (passkey autofill)

const decoder = (text) => {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
};

const encoder = (buffer) => {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};

const descriptors = (list) =>
  (list || []).map((item) => ({ ...item, id: decoder(item.id) }));

/** Creation options as JSON -> PublicKeyCredentialCreationOptions. */
export function creationOptions(json) {
  if (typeof PublicKeyCredential !== "undefined" && PublicKeyCredential.parseCreationOptionsFromJSON) {
    return PublicKeyCredential.parseCreationOptionsFromJSON(json);
  }
  return {
    ...json,
    challenge: decoder(json.challenge),
    user: { ...json.user, id: decoder(json.user.id) },
    excludeCredentials: descriptors(json.excludeCredentials),
  };
}

/** Request options as JSON -> PublicKeyCredentialRequestOptions. */
export function requestOptions(json) {
  if (typeof PublicKeyCredential !== "undefined" && PublicKeyCredential.parseRequestOptionsFromJSON) {
    return PublicKeyCredential.parseRequestOptionsFromJSON(json);
  }
  const options = { ...json, challenge: decoder(json.challenge) };
  if (json.allowCredentials) options.allowCredentials = descriptors(json.allowCredentials);
  return options;
}

/** A PublicKeyCredential -> the JSON the gateway reads (toJSON() where the browser has it). */
export function credentialJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const response = credential.response;
  const json = {
    id: credential.id,
    rawId: encoder(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || null,
    clientExtensionResults: credential.getClientExtensionResults(),
    response: { clientDataJSON: encoder(response.clientDataJSON) },
  };
  if (response.attestationObject) {
    json.response.attestationObject = encoder(response.attestationObject);
    json.response.transports = response.getTransports ? response.getTransports() : [];
  } else {
    json.response.authenticatorData = encoder(response.authenticatorData);
    json.response.signature = encoder(response.signature);
    json.response.userHandle = response.userHandle ? encoder(response.userHandle) : null;
  }
  return json;
}

/** Registers a security key or a passkey: the enrolment's `public_key` in, the credential out. */
export async function register(options) {
  const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
  return credentialJSON(credential);
}

/** Signs in with a key or a passkey (a modal prompt): request options in, the assertion out. */
export async function authenticate(options, { signal } = {}) {
  const credential = await navigator.credentials.get({ publicKey: requestOptions(options), signal });
  return credentialJSON(credential);
}

/**
 * Passkey autofill (conditional UI): resolves when the user picks a passkey from the
 * autocomplete list of an <input autocomplete="username webauthn">; null where the browser
 * has no conditional mediation. Abort it with `signal` before starting another ceremony.
 */
export async function autofill(options, { signal } = {}) {
  const available =
    typeof PublicKeyCredential !== "undefined" &&
    PublicKeyCredential.isConditionalMediationAvailable &&
    (await PublicKeyCredential.isConditionalMediationAvailable());
  if (!available) return null;
  const credential = await navigator.credentials.get({
    publicKey: requestOptions(options),
    mediation: "conditional",
    signal,
  });
  return credentialJSON(credential);
}
