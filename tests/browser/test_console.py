"""The console in a real browser (issue 18): invitations, passkey sign-in, the Security page,
My security, the WebAuthn helper on another origin, CSRF, sessions across accounts and
instances. Each test takes the shared `Browser` and starts its own gateway(s)."""

import http.server
import json
import threading

from harness import Gateway, Redis, accept_invitation, free_port, shot, totp


def nav(page, name):
    """Follows a link of the console's navigation."""
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name, exact=True).click()


def test_an_owner_signs_in_with_a_passkey_and_saves_the_policy_the_api_returns(browser):
    gateway = Gateway("owner")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "ada", "owner", "+4915112360101")
        page, authenticator = browser.page()
        url = gateway.invite(owner, "ada").replace(f"http://localhost:{gateway.port}", gateway.base)
        page.goto(url)
        page.get_by_text("ada of account").wait_for()
        print("   ", shot(page, "invitation"))
        page.get_by_role("button", name="Create a passkey").click()
        page.wait_for_url("**/console/")
        assert "ada" in page.inner_text("main") and "owner" in page.inner_text("main")
        assert len(authenticator.credentials()) == 1, "a discoverable credential was made"
        print("   ", shot(page, "home"))

        page.get_by_role("button", name="Sign out", exact=True).click()
        page.wait_for_url("**/console/sign-in")
        print("   ", shot(page, "sign-in"))
        page.get_by_role("button", name="Sign in with a passkey").click()
        page.wait_for_url("**/console/")

        nav(page, "Security")
        page.get_by_label("Require two-factor authentication at login").check()
        for label in ("SMS", "Authenticator app"):
            page.get_by_label(label, exact=True).check()
        for label in ("WhatsApp", "Security key", "Voice call", "E-mail", "Use SMS as an alternative"):
            page.get_by_label(label, exact=True).uncheck()
        page.get_by_label("1 week").check()
        page.get_by_role("button", name="Save").click()
        page.get_by_text("Saved.").wait_for()
        print("   ", shot(page, "security"))
        _, policy = gateway.api("GET", "/v1/policy", owner, expect=200)
        assert policy["require_2fa"] is True, policy
        assert policy["channels"] == ["sms", "totp"], policy
        assert policy["trusted_device"] == "7d", policy
        assert policy["sms_fallback"] is False, policy
    finally:
        gateway.stop()


def test_turning_on_sms_with_a_phoneless_user_names_that_user(browser):
    gateway = Gateway("phoneless")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "ada", "owner", "+4915112360101")
        gateway.api("PUT", "/v1/policy", owner, {"channels": ["totp"], "sms_fallback": False}, expect=200)
        gateway.user(owner, "grace", "member")
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner, "ada"))
        page.goto(f"{gateway.base}/console/security")
        page.get_by_label("SMS", exact=True).check()
        page.get_by_role("button", name="Save").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "grace" in alert.inner_text(), alert.inner_text()
        print("   ", shot(page, "security-refused"))
        _, policy = gateway.api("GET", "/v1/policy", owner, expect=200)
        assert policy["channels"] == ["totp"], "nothing changed"
    finally:
        gateway.stop()


def test_an_admin_cannot_turn_the_requirement_off_but_turns_two_factor_on_for_themselves(browser):
    gateway = Gateway("admin")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "alan", "admin", "+4915112360102")
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner, "alan"))
        nav(page, "Security")
        page.get_by_label("Require two-factor authentication at login").uncheck()
        page.get_by_role("button", name="Save").click()
        alert = page.get_by_role("alert")
        alert.wait_for()
        assert "only the account owner may weaken the policy" in alert.inner_text(), alert.inner_text()
        _, policy = gateway.api("GET", "/v1/policy", owner, expect=200)
        assert policy["require_2fa"] is True

        gateway.api("PUT", "/v1/policy", owner, {"require_2fa": False}, expect=200)
        nav(page, "My security")
        assert "is off for you" in page.inner_text("main")
        page.get_by_role("button", name="Turn on two-factor authentication").click()
        page.get_by_text("Two-factor authentication is on for you.").wait_for()
        _, user = gateway.api("GET", "/v1/users/alan", owner, expect=200)
        assert user["two_factor"]["enabled"] is True, user
    finally:
        gateway.stop()


def test_a_user_adds_an_app_and_a_security_key_sees_codes_once_and_revokes_a_device(browser):
    gateway = Gateway("member")
    try:
        _, owner, service = gateway.account()
        gateway.api("PUT", "/v1/policy", owner, {"channels": ["sms", "totp", "webauthn"], "sms_fallback": True, "trusted_device": "7d"}, expect=200)
        gateway.user(owner, "mia", "member", "+4915112360103")
        page, authenticator = browser.page()
        accept_invitation(page, gateway.invite(owner, "mia"))
        nav(page, "My security")
        print("   ", shot(page, "my-security"))

        page.get_by_role("button", name="Add authenticator app").click()
        secret = page.locator("#totp-secret").inner_text().strip()
        assert page.locator(".qr svg").count() == 1, "the QR code is shown"
        print("   ", shot(page, "authenticator-app"))
        page.get_by_label("Code from the app").fill(totp(secret))
        page.get_by_role("button", name="Add authenticator app").click()
        codes = [code.inner_text() for code in page.locator("#recovery-codes li").all()]
        assert len(codes) == 10, codes
        print("   ", shot(page, "recovery-codes"))
        page.get_by_role("link", name="Done").click()
        main = page.inner_text("main")
        assert "Authenticator app" in main and codes[0] not in page.content(), "codes are shown once"

        # A login passkey beside the console's one, on the same (ctap2) authenticator.
        page.get_by_role("button", name="Add passkey").click()
        page.get_by_text("Passkey added.").wait_for()
        assert "Passkey" in page.inner_text("table")
        assert len(authenticator.credentials()) == 2, "a second discoverable credential"

        # A plain security key: the u2f virtual authenticator instead of the passkey one.
        authenticator.attach("u2f")
        page.get_by_role("button", name="Add security key").click()
        page.get_by_text("Security key added.").wait_for()
        assert "Security key" in page.inner_text("table")

        # A device trusted after a passed challenge (a recovery code), then revoked here.
        _, passed = gateway.api("POST", "/v1/users/mia/challenges", service, {"type": "recovery_code", "code": codes[0]}, expect=200)
        assert passed["valid"] is True, passed
        _, device = gateway.api("POST", "/v1/users/mia/trusted-devices", service, {"challenge_id": passed["challenge_id"]}, expect=201)
        page.reload()
        assert device["id"] in page.inner_text("main")
        page.get_by_role("button", name=f"Revoke {device['id']}").click()
        page.get_by_text("Device revoked.").wait_for()
        assert device["id"] not in page.inner_text("main")
        _, check = gateway.api("POST", "/v1/trusted-devices/check", service, {"user": "mia", "token": device["token"]})
        assert check.get("trusted") is not True, check

        # A second device, then "Revoke all".
        _, passed = gateway.api("POST", "/v1/users/mia/challenges", service, {"type": "recovery_code", "code": codes[1]}, expect=200)
        _, device = gateway.api("POST", "/v1/users/mia/trusted-devices", service, {"challenge_id": passed["challenge_id"]}, expect=201)
        page.reload()
        page.get_by_role("button", name="Revoke all").click()
        page.get_by_text("All trusted devices revoked.").wait_for()
        assert device["id"] not in page.inner_text("main")

        page.get_by_role("button", name="Regenerate").click()
        fresh = [code.inner_text() for code in page.locator("#recovery-codes li").all()]
        assert len(fresh) == 10 and set(fresh).isdisjoint(codes)
    finally:
        gateway.stop()


SDK_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Login service</title></head>
<body><h1>Example login service</h1>
<button id="register">Create a passkey</button> <button id="sign-in">Sign in with a passkey</button>
<p id="result" role="status"></p>
<script type="module">
import { register, authenticate } from "GATEWAY/sdk/webauthn.js";
const post = async (path, body) => (await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).json();
const result = document.getElementById("result");
document.getElementById("register").onclick = async () => {
  const enrolment = await post("/enrol", {});
  const credential = await register(enrolment.public_key);
  const confirmed = await post("/confirm", { id: enrolment.id, credential });
  result.textContent = `registered ${confirmed.type}`;
};
document.getElementById("sign-in").onclick = async () => {
  const options = await post("/options", {});
  const assertion = await authenticate(options.public_key);
  const outcome = await post("/finish", { assertion });
  result.textContent = outcome.valid ? `signed in as ${outcome.user}` : `refused: ${outcome.reason}`;
};
</script></body></html>"""


def login_service(gateway, service_key, user, port):
    """A login service on its own origin (http://localhost:PORT): its page uses /sdk/webauthn.js
    from the gateway; its backend holds the service key and forwards to the gateway's API."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body, media="application/json"):
            data = body.encode()
            self.send_response(status)
            self.send_header("content-type", media)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.answer(200, SDK_PAGE.replace("GATEWAY", gateway.base), "text/html; charset=utf-8")

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])) or b"{}")
            routes = {
                "/enrol": (f"/v1/users/{user}/factors", {"type": "passkey"}),
                "/confirm": (f"/v1/users/{user}/factors/{body.get('id')}/confirm", {"credential": body.get("credential")}),
                "/options": ("/v1/passkeys/challenges", {}),
                "/finish": ("/v1/passkeys/challenges", {"assertion": body.get("assertion")}),
            }
            path, forwarded = routes[self.path]
            status, answer = gateway.api("POST", path, service_key, forwarded)
            self.answer(status, json.dumps(answer))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_login_service_on_another_origin_signs_in_with_a_passkey_through_the_sdk(browser):
    port = free_port()
    gateway = Gateway("sdk", extra_origins=[f"http://localhost:{port}"])
    server = None
    try:
        _, owner, service = gateway.account()
        gateway.api("PUT", "/v1/policy", owner, {"channels": ["sms", "webauthn"]}, expect=200)
        gateway.user(owner, "ada", "member", "+4915112360104")
        server = login_service(gateway, service, "ada", port)
        page, authenticator = browser.page()
        page.goto(f"http://localhost:{port}/")
        page.get_by_role("button", name="Create a passkey").click()
        page.get_by_text("registered passkey").wait_for()
        page.get_by_role("button", name="Sign in with a passkey").click()
        page.get_by_text("signed in as ada").wait_for()
        print("   ", shot(page, "login-service-passkey"))
        assert authenticator.credentials()[0]["isResidentCredential"] is True
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        gateway.stop()


def test_a_form_post_without_the_csrf_token_is_refused(browser):
    gateway = Gateway("csrf")
    try:
        _, owner, _ = gateway.account()
        gateway.user(owner, "ada", "owner", "+4915112360101")
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner, "ada"))
        # The browser's own cookie, a form body without the token: what a forged form sends.
        refused = page.request.post(f"{gateway.base}/console/security", form={"require_2fa": "on", "channel": "sms"})
        assert refused.status == 403, refused.status
        assert "security token" in refused.text()
        forged = page.request.post(f"{gateway.base}/console/sign-out", form={"csrf": "forged"})
        assert forged.status == 403
        page.goto(f"{gateway.base}/console/")
        assert "ada" in page.inner_text("main"), "still signed in"
        page.set_content(refused.text())
        print("   ", shot(page, "csrf-refused"))
    finally:
        gateway.stop()


def test_a_session_never_reaches_another_accounts_pages(browser):
    gateway = Gateway("accounts")
    try:
        first, owner_a, _ = gateway.account("Acme")
        second, owner_b, _ = gateway.account("Globex")
        gateway.user(owner_a, "ada", "owner", "+4915112360101")
        gateway.user(owner_b, "ada", "owner", "+4915112360105")
        gateway.api("PUT", "/v1/policy", owner_b, {"trusted_device": "30d"}, expect=200)
        page, _ = browser.page()
        accept_invitation(page, gateway.invite(owner_a, "ada"))
        assert first in page.inner_text("main") and second not in page.content()
        page.goto(f"{gateway.base}/console/security")
        assert page.get_by_label("Every login").is_checked(), "account A's policy, not B's 30 days"
        other, _ = browser.page()
        accept_invitation(other, gateway.invite(owner_b, "ada"))
        assert second in other.inner_text("main") and first not in other.content()
        page.goto(f"{gateway.base}/console/")
        assert first in page.inner_text("main") and second not in page.content()
    finally:
        gateway.stop()


def test_a_signed_out_session_is_dead_on_every_instance(browser):
    redis = Redis()
    one = Gateway("instance-1", redis=redis)
    two = Gateway("instance-2", redis=redis)
    try:
        _, owner, _ = one.account()
        one.user(owner, "ada", "owner", "+4915112360101")
        page, _ = browser.page()
        accept_invitation(page, one.invite(owner, "ada"))
        # Cookies are not per port: the same session cookie reaches the second instance.
        page.goto(f"{two.base}/console/")
        assert "ada" in page.inner_text("main"), "the other instance serves the session"
        page.goto(f"{one.base}/console/")
        old = [c for c in page.context.cookies() if c["name"] == "__Host-otpgate-console"]
        assert len(old) == 1 and old[0]["httpOnly"] and old[0]["sameSite"] == "Strict", old
        page.get_by_role("button", name="Sign out everywhere").click()
        page.wait_for_url("**/console/sign-in")
        cookie = [c for c in page.context.cookies() if c["name"] == "__Host-otpgate-console"]
        assert cookie == [], "the cookie is cleared"
        # The old cookie, replayed at both instances, is dead.
        page.context.add_cookies(old)
        for gateway in (one, two):
            page.goto(f"{gateway.base}/console/")
            assert page.url.endswith("/console/sign-in"), page.url
    finally:
        one.stop()
        two.stop()
        redis.stop()


def test_a_newcomer_opens_the_printed_invitation_and_the_cli_invites_more(browser):
    import os
    import subprocess

    from harness import ROOT_KEY, binary

    gateway = Gateway("newcomer")
    try:
        # What `cargo run --release` prints on a first run: the operator's invitation.
        page, _ = browser.page()
        accept_invitation(page, gateway.printed_invitation())
        assert "operator" in page.inner_text("main")
        print("   ", shot(page, "operator-home"))

        # The operator's command asks the running gateway, with the root key.
        account, owner, _ = gateway.account()
        gateway.user(owner, "ada", "owner", "+4915112360101")
        invited = subprocess.run(
            [binary(), "console", "invite", "--account", account, "--user", "ada", "--url", gateway.base],
            env=dict(os.environ, OTPGATE_ROOT_KEY=ROOT_KEY),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert invited.returncode == 0, invited.stderr
        link = invited.stdout.split()[0]
        assert "/console/invitations/" in link, invited.stdout
        other, _ = browser.page()
        accept_invitation(other, link)
        assert "ada" in other.inner_text("main") and "owner" in other.inner_text("main")

        refused = subprocess.run(
            [binary(), "console", "invite", "--root", "--url", gateway.base],
            env=dict(os.environ, OTPGATE_ROOT_KEY="not-the-root-key-0123456789abcdef"),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
    finally:
        gateway.stop()
