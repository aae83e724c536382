"""Meta's official `facebook-business` Python SDK against otpgate's Graph facade (issue 14).

Only the Graph base URL changes (the session's `GRAPH`); everything else is the SDK's own code
path: the token as an `access_token` query parameter, form bodies, its JSON parsing, and its
`FacebookRequestError` from our error objects. Plus a raw-HTTP test of each token form. Run by
scripts/compat with a gateway up; runs under pytest too.
"""

import json
import sys
import traceback
import urllib.error
import urllib.parse
import urllib.request

from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError

from twilio_common import GATEWAY, ROOT_KEY, number as fresh_number, v1

VERSION = "v26.0"
PINS = ["482915", "730164", "592047"]


def setup():
    """A fresh account with an owner and a partner key, and one number with two-step on."""
    status, account = v1("POST", "/v1/accounts", ROOT_KEY, {"name": "Graph", "email": "o@graph.example"})
    assert status == 201, account
    keys = {}
    for role in ("owner", "partner"):
        status, key = v1("POST", f"/v1/accounts/{account['id']}/keys", ROOT_KEY, {"role": role})
        assert status == 201, key
        keys[role] = key["key"]
    number = fresh_number()
    status, added = v1("POST", "/v1/phone-numbers", keys["owner"], {"phone_number": number, "pin": PINS[0]})
    assert status == 201, added
    return keys, added["id"]


def graph(token):
    """The SDK, pointed at otpgate: the one-line switch is the session's Graph URL."""
    api = FacebookAdsApi.init(access_token=token, api_version=VERSION, crash_log=False)
    api._session.GRAPH = GATEWAY
    return api


def expect_error(call, code):
    try:
        call()
    except FacebookRequestError as error:
        assert error.api_error_code() == code, (error.http_status(), error.body())
        assert error.body()["error"]["fbtrace_id"], error.body()
        return error
    raise AssertionError(f"expected Graph error {code}")


def test_the_sdk_sets_and_changes_a_pin_and_registers_with_it():
    keys, number_id = setup()
    api = graph(keys["partner"])
    for pin in PINS[1:]:
        response = api.call("POST", (number_id,), params={"pin": pin})
        assert response.json() == {"success": True}, response.body()
        assert response.body() == '{"success":true}'
    response = api.call("POST", (number_id, "register"), params={"messaging_product": "whatsapp", "pin": PINS[2]})
    assert response.json() == {"success": True}, response.body()
    fields = api.call("GET", (number_id,)).json()
    assert fields["id"] == number_id and fields["display_phone_number"].startswith("+49151"), fields


def test_a_wrong_pin_raises_133005_and_a_malformed_one_100():
    keys, number_id = setup()
    api = graph(keys["partner"])
    register = lambda pin: api.call("POST", (number_id, "register"), params={"messaging_product": "whatsapp", "pin": pin})
    expect_error(lambda: register(PINS[1]), 133005)
    for malformed in ("64738", "6473821", "64738a"):
        expect_error(lambda: api.call("POST", (number_id,), params={"pin": malformed}), 100)
    # Nothing changed: the first PIN still registers.
    assert register(PINS[0]).json() == {"success": True}


def test_a_bad_token_raises_190_and_an_unsupported_version_2500():
    keys, number_id = setup()
    expect_error(lambda: graph("not-a-key").call("POST", (number_id,), params={"pin": PINS[1]}), 190)
    api = graph(keys["owner"])
    expect_error(lambda: api.call("POST", (number_id,), params={"pin": PINS[1]}, api_version="v99.0"), 2500)


def test_a_partners_disable_request_is_refused():
    keys, number_id = setup()
    status, body = v1("POST", f"/v1/phone-numbers/{number_id}/two-step/disable-requests", keys["partner"])
    assert status == 403, body
    # Graph has no way to turn two-step off: the PIN still guards registration.
    expect_error(
        lambda: graph(keys["partner"]).call("POST", (number_id, "register"), params={"messaging_product": "whatsapp", "pin": PINS[1]}),
        133005,
    )


def raw(path, headers=None, query=None, form=None):
    url = f"{GATEWAY}/{VERSION}/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    if data is not None:
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_each_token_form_over_raw_http():
    keys, number_id = setup()
    key = keys["owner"]
    forms = [
        ("Bearer header", dict(headers={"Authorization": f"Bearer {key}"}, form={"pin": PINS[1]})),
        ("access_token query", dict(query={"access_token": key}, form={"pin": PINS[2]})),
        ("access_token form field", dict(form={"access_token": key, "pin": PINS[1]})),
    ]
    for name, form in forms:
        status, body = raw(number_id, **form)
        assert (status, body) == (200, '{"success":true}'), (name, status, body)
    status, body = raw(number_id, form={"pin": PINS[2]})
    assert status == 401 and json.loads(body)["error"]["code"] == 190, (status, body)


if __name__ == "__main__":
    tests = [(name, f) for name, f in sorted(globals().items()) if name.startswith("test_")]
    failed = 0
    for name, test in tests:
        try:
            test()
            print(f"PASS {name}")
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"python facebook-business SDK: {len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
