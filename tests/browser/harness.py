"""The browser tests' harness: a real otpgate binary on a free port (embedded store, or Redis),
Debian's chromium driven headless by Playwright for Python, and Chromium's virtual WebAuthn
authenticator over CDP.

Only the `playwright` pip package is used; its own browser downloads are never run: the browser
is /usr/bin/chromium (scripts/compat installs it where missing).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("OTPGATE_CHROMIUM", "/usr/bin/chromium")
ROOT_KEY = "browser-root-key-0123456789abcdef0123456789"
# Fixed test secrets (never used anywhere else): the gateways of one test share them, as a
# deployment's instances do.
CODE_KEY = "11" * 32
DEVICE_KEY = "22" * 32
FACTOR_KEY = "browser:" + "33" * 32

# Where screenshots and logs go (printed at the end of the run).
OUT = tempfile.mkdtemp(prefix="otpgate-browser-")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def binary():
    found = os.environ.get("OTPGATE_BINARY")
    if found:
        return found
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "target"))
    return os.path.join(target, "debug", "otpgate")


class Redis:
    """A redis-server of its own on a free port (never 6379)."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="otpgate-browser-redis-")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Gateway:
    """One otpgate process. `origins` are the WebAuthn origins besides its own
    http://localhost:PORT (WebAuthn needs `localhost`, not 127.0.0.1)."""

    def __init__(self, name, extra_origins=(), redis=None, prefix="browser"):
        self.port = free_port()
        self.base = f"http://localhost:{self.port}"
        self.log_path = os.path.join(OUT, f"{name}.log")
        origins = ",".join([self.base, *extra_origins])
        env = dict(os.environ)
        env.update(
            {
                "OTPGATE_LISTEN": f"127.0.0.1:{self.port}",
                "OTPGATE_ROOT_KEY": ROOT_KEY,
                "OTPGATE_CODE_KEY": CODE_KEY,
                "OTPGATE_DEVICE_KEY": DEVICE_KEY,
                "OTPGATE_FACTOR_KEYS": FACTOR_KEY,
                "OTPGATE_FACTORS__RP_ID": "localhost",
                "OTPGATE_FACTORS__ORIGINS": origins,
                "OTPGATE_PIN_PEPPER": "44" * 32,
                "OTPGATE_LOG": "warn",
            }
        )
        if redis is not None:
            env["OTPGATE_REDIS_URL"] = redis.url
            env["OTPGATE_STORE__KEY_PREFIX"] = prefix
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([binary()], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(400):
            try:
                urllib.request.urlopen(f"{self.base}/healthz", timeout=1).read()
                return
            except (urllib.error.URLError, ConnectionError, OSError):
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"the gateway did not start; see {self.log_path}:\n{self.output()}")

    def output(self):
        self.log.flush()
        with open(self.log_path) as log:
            return log.read()

    def printed_invitation(self):
        """The root invitation link the gateway printed at start (never logged)."""
        found = re.search(r"(http://\S+/console/invitations/\S+)", self.output())
        assert found, self.output()
        return found.group(1)

    def api(self, method, path, key=None, body=None, expect=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("content-type", "application/json")
        if key:
            request.add_header("authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        answer = json.loads(text) if text else {}
        if expect is not None:
            assert status == expect, f"{method} {path}: {status} {answer}"
        return status, answer

    def account(self, name="Acme"):
        """A new account with an owner key and a service key: (account id, owner, service)."""
        _, account = self.api("POST", "/v1/accounts", ROOT_KEY, {"name": name}, expect=201)
        keys = []
        for role in ("owner", "service"):
            _, key = self.api("POST", f"/v1/accounts/{account['id']}/keys", ROOT_KEY, {"role": role}, expect=201)
            keys.append(key["key"])
        return account["id"], keys[0], keys[1]

    def user(self, owner, user, role, phone=None):
        body = {"id": user, "role": role}
        if phone:
            body["phone"] = phone
        self.api("POST", "/v1/users", owner, body, expect=201)

    def invite(self, owner, user):
        _, minted = self.api("POST", f"/v1/users/{user}/console-invitations", owner, {}, expect=201)
        return minted["url"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Browser:
    """Headless chromium; `page()` opens a page with its own virtual authenticator."""

    def __init__(self):
        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )

    def page(self, protocol="ctap2"):
        context = self.browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15000)
        authenticator = Authenticator(context, page, protocol)
        return page, authenticator

    def stop(self):
        self.browser.close()
        self.playwright.stop()


class Authenticator:
    """Chromium's virtual authenticator on one page: ctap2 with resident keys and user
    verification (a passkey provider), or u2f (a plain security key)."""

    def __init__(self, context, page, protocol="ctap2"):
        self.cdp = context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable")
        self.id = None
        self.attach(protocol)

    def attach(self, protocol):
        if self.id is not None:
            self.cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": self.id})
        if protocol == "ctap2":
            options = {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        else:
            options = {
                "protocol": "u2f",
                "transport": "usb",
                "hasResidentKey": False,
                "hasUserVerification": False,
                "automaticPresenceSimulation": True,
            }
        self.id = self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]

    def credentials(self):
        return self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})["credentials"]


def shot(page, name):
    path = os.path.join(OUT, f"{name}.png")
    page.screenshot(path=path, full_page=True)
    return path


def totp(secret_base32, at=None, digits=6, period=30):
    """RFC 6238 (SHA-1), as an authenticator app computes it."""
    import base64
    import hashlib
    import hmac
    import struct

    padded = secret_base32 + "=" * (-len(secret_base32) % 8)
    key = base64.b32decode(padded)
    step = int((time.time() if at is None else at) // period)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % (10**digits)).zfill(digits)


def accept_invitation(page, url):
    """Opens an invitation link and creates the passkey; lands on the console's home."""
    page.goto(url)
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("**/console/")
