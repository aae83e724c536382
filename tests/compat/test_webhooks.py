"""Webhooks out, verified by the `standardwebhooks` package from PyPI (the Standard Webhooks
reference library), not by otpgate's code: an owner registers a webhook pointing at a receiver
on loopback (scripts/compat starts the gateway with events.allow_http_loopback), a service sends
a code and checks it, and the receiver gets the verification's events, each of which the library
verifies (signature and timestamp). Run by scripts/compat with a gateway up.
"""

import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

from twilio_common import ROOT_KEY, code_sent_to, mint_key, number as fresh_number, v1

RECEIVED = []
LOCK = threading.Lock()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        with LOCK:
            RECEIVED.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def received(count, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        with LOCK:
            if len(RECEIVED) >= count:
                return list(RECEIVED)
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(RECEIVED)} of {count} webhook requests arrived")
        time.sleep(0.05)


def test_a_verification_s_events_verify_with_the_standard_webhooks_library():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    status, account = v1("POST", "/v1/accounts", ROOT_KEY, {"name": "Webhooks"})
    assert status == 201, account
    keys = {role: mint_key(account["id"], role) for role in ("owner", "service")}
    url = f"http://127.0.0.1:{server.server_address[1]}/otpgate"
    status, webhook = v1("POST", "/v1/webhooks", keys["owner"], {"url": url, "events": ["*"]})
    assert status == 201, webhook
    number = fresh_number()
    status, started = v1("POST", "/v1/verifications", keys["service"], {"to": number})
    assert status == 201, started
    code = code_sent_to(number)
    received(2)  # created, and accepted once the provider took the message
    status, checked = v1("POST", "/v1/verifications/check", keys["service"], {"id": started["id"], "code": code})
    assert status == 200 and checked["status"] == "approved", checked
    verifier = Webhook(webhook["secret"])
    types = []
    for headers, body in received(3):
        event = verifier.verify(body, headers)  # raises on a bad signature or timestamp
        assert event["data"]["verification_id"] == started["id"], event
        assert number[1:] not in body.decode(), body
        assert code not in body.decode(), body
        types.append(event["type"])
    assert types == [
        "io.otpgate.verification.created",
        "io.otpgate.message.accepted",
        "io.otpgate.verification.approved",
    ], types
    forged = dict(received(3)[0][0])
    forged["webhook-signature"] = "v1,bm90IHRoZSBzaWduYXR1cmU="
    try:
        verifier.verify(received(3)[0][1], forged)
    except Exception:
        pass
    else:
        raise AssertionError("a forged signature verified")
    server.shutdown()


if __name__ == "__main__":
    failed = 0
    for name, test in sorted(globals().items()):
        if name.startswith("test_") and callable(test):
            try:
                test()
                print(f"passed {name}")
            except Exception:
                failed += 1
                print(f"FAILED {name}")
                traceback.print_exc()
    print(f"{failed} failed")
    sys.exit(1 if failed else 0)
