// The sign-in page: a usernameless passkey ceremony through the gateway's WebAuthn helper.
import { authenticate } from "/sdk/webauthn.js";

const button = document.getElementById("sign-in");
const status = document.getElementById("status");

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
  status.textContent = "Waiting for your passkey…";
  try {
    const options = await post("/console/sign-in/options", {});
    const credential = await authenticate(options);
    const done = await post("/console/sign-in", credential);
    status.textContent = "Signed in.";
    window.location.assign(done.redirect);
  } catch (error) {
    status.textContent = `Sign-in failed: ${error.message}`;
    button.disabled = false;
  }
});
