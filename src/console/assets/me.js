// My security: "Add security key" and "Add passkey" run the browser ceremony through the
// gateway's WebAuthn helper; the CSRF token travels in a header. A first factor's recovery
// codes are shown here once.
import { register } from "/sdk/webauthn.js";
import { postJson } from "/console/assets/post.js";

const keys = document.getElementById("keys");
const status = document.getElementById("key-status");

const post = (path, body) => postJson(path, body, { "x-csrf-token": keys.dataset.csrf });

function showCodes(codes) {
  const list = document.getElementById("new-codes-list");
  for (const code of codes) {
    const item = document.createElement("li");
    item.textContent = code;
    list.append(item);
  }
  document.getElementById("new-codes").hidden = false;
}

for (const button of keys.querySelectorAll("button[data-kind]")) {
  button.addEventListener("click", async () => {
    const label = button.textContent;
    button.disabled = true;
    status.textContent = "Follow your browser's prompts…";
    try {
      const { factor, options } = await post("/console/me/keys/options", { kind: button.dataset.kind });
      const credential = await register(options);
      const done = await post(`/console/me/keys/${encodeURIComponent(factor)}`, credential);
      if (done.recovery_codes) {
        status.textContent = `${label}: done.`;
        showCodes(done.recovery_codes);
      } else {
        window.location.assign(done.redirect);
      }
    } catch (error) {
      status.textContent = `${label} failed: ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });
}
