// The invitation page: registers a passkey (resident key, user verification) for the invited
// person through the gateway's WebAuthn helper, then lands on the console signed in.
import { register } from "/sdk/webauthn.js";

const button = document.getElementById("create-passkey");
const status = document.getElementById("status");
const base = `/console/invitations/${encodeURIComponent(button.dataset.token)}`;

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.error || `the console answered ${response.status}`);
  return answer;
}

button.addEventListener("click", async () => {
  button.disabled = true;
  status.textContent = "Follow your browser's prompts to create the passkey…";
  try {
    const options = await post(`${base}/options`, {});
    const credential = await register(options);
    const done = await post(base, credential);
    status.textContent = "Passkey created; you are signed in.";
    window.location.assign(done.redirect);
  } catch (error) {
    status.textContent = `The passkey was not created: ${error.message}`;
    button.disabled = false;
  }
});
