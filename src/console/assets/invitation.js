// The invitation page: registers a passkey (resident key, user verification) for the invited
// person through the gateway's WebAuthn helper, then lands on the console signed in.
import { register } from "/sdk/webauthn.js";
import { postJson } from "/console/assets/post.js";

const button = document.getElementById("create-passkey");
const status = document.getElementById("status");
const base = `/console/invitations/${encodeURIComponent(button.dataset.token)}`;

button.addEventListener("click", async () => {
  button.disabled = true;
  status.textContent = "Follow your browser's prompts to create the passkey…";
  try {
    const options = await postJson(`${base}/options`, {});
    const credential = await register(options);
    const done = await postJson(base, credential);
    status.textContent = "Passkey created; you are signed in.";
    window.location.assign(done.redirect);
  } catch (error) {
    status.textContent = `The passkey was not created: ${error.message}`;
    button.disabled = false;
  }
});
