// The sign-in page: a usernameless passkey ceremony through the gateway's WebAuthn helper.
import { authenticate } from "/sdk/webauthn.js";
import { postJson } from "/console/assets/post.js";

const button = document.getElementById("sign-in");
const status = document.getElementById("status");

button.addEventListener("click", async () => {
  button.disabled = true;
  status.textContent = "Waiting for your passkey…";
  try {
    const options = await postJson("/console/sign-in/options", {});
    const credential = await authenticate(options);
    const done = await postJson("/console/sign-in", credential);
    status.textContent = "Signed in.";
    window.location.assign(done.redirect);
  } catch (error) {
    status.textContent = `Sign-in failed: ${error.message}`;
    button.disabled = false;
  }
});
