"""Shared helpers of the SDK compat tests: the gateway and the sink come from the environment
(OTPGATE_URL, OTPGATE_ROOT_KEY, SINK_URL), as scripts/compat sets them."""

import json
import os
import random
import re
import time
import urllib.error
import urllib.request

GATEWAY = os.environ.get("OTPGATE_URL", "http://127.0.0.1:8080")
ROOT_KEY = os.environ.get("OTPGATE_ROOT_KEY", "")
SINK = os.environ.get("SINK_URL", "http://127.0.0.1:8081")


def number():
    """A fresh German mobile number (+49151…), so that runs never meet each other's verifications."""
    return "+49151" + "".join(random.choice("0123456789") for _ in range(8))


def mint_key(account_sid, role="service"):
    """A key for the service's account, through the v1 API (the facade's "console" step)."""
    request = urllib.request.Request(
        f"{GATEWAY}/v1/accounts/{account_sid}/keys",
        data=json.dumps({"role": role}).encode(),
        headers={"Authorization": f"Bearer {ROOT_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["key"]


def message_to(number, count=1, timeout=10.0):
    """The newest of at least `count` messages the sink received for `number`."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{SINK}/messages", timeout=10) as response:
            messages = [m for m in json.load(response) if m.get("to") == number]
        if len(messages) >= count:
            return messages[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(messages)} of {count} messages reached {number}")
        time.sleep(0.02)


def code_sent_to(number, count=1, timeout=10.0):
    """The code in the newest of at least `count` messages the sink received for `number`."""
    return re.search(r"\d{4,10}", message_to(number, count, timeout)["body"]).group(0)


def code_spoken_to(number, count=1, timeout=10.0):
    """The code a call to `number` reads out ("4, 0, 8, 1, 2, 3", twice): its first reading."""
    body = message_to(number, count, timeout)["body"]
    return re.sub(r"\D", "", re.search(r"\d(?:, \d){3,9}", body).group(0))


def mail_to(address, count=1, timeout=10.0):
    """The newest of at least `count` mails the sink's SMTP side received for `address`."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{SINK}/mails", timeout=10) as response:
            mails = [m for m in json.load(response) if m.get("to") == address]
        if len(mails) >= count:
            return mails[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(mails)} of {count} mails reached {address}")
        time.sleep(0.02)


def wrong(code):
    return "".join(str((int(digit) + 1) % 10) for digit in code)


def v1(method, path, key, body=None):
    """A v1 call (the operator's and the owner's side: accounts, keys, numbers)."""
    request = urllib.request.Request(
        f"{GATEWAY}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)
