"""The official `twilio` Python package against otpgate's Twilio Verify v2 facade.

Only the base URL changes (`client.verify.base_url`); everything else is the SDK's own code path:
form bodies, HTTP Basic, its JSON parsing and its `TwilioRestException` from our error bodies.
Run by scripts/compat with a gateway and a message sink already up; runs under pytest too.
"""

import base64
import hashlib
import json
import os
import random
import re
import sys
import traceback
import urllib.request

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.rest.verify.v2.service.approve_challenge import ApproveChallengeList
from twilio.rest.verify.v2.service.new_challenge import NewChallengeContext
from twilio.rest.verify.v2.service.new_factor import NewFactorList
from twilio.rest.verify.v2.service.new_verify_factor import NewVerifyFactorList

from twilio_common import (
    GATEWAY,
    ROOT_KEY,
    code_sent_to,
    code_spoken_to,
    mail_to,
    message_to,
    mint_key,
    number,
    v1,
    wrong,
)


def client(username, password):
    """A Twilio client whose Verify domain is otpgate: the one-line switch."""
    twilio = Client(username, password)
    twilio.verify.base_url = GATEWAY
    return twilio


def new_service(code_length=None):
    """A service created by the operator (root key), and a login service's client for it."""
    params = {"friendly_name": "Compat login"}
    if code_length:
        params["code_length"] = code_length
    service = client("root", ROOT_KEY).verify.v2.services.create(**params)
    account_sid = "AC" + service.sid[2:]
    return service, client(account_sid, mint_key(account_sid))


def expect_error(call, status, code):
    try:
        call()
    except TwilioRestException as error:
        assert error.status == status, (error.status, error.code, error.msg)
        assert error.code == code, (error.status, error.code, error.msg)
        return error
    raise AssertionError(f"expected Twilio error {code}")


def test_service_is_created_and_fetched():
    service, login = new_service(code_length=8)
    assert service.sid.startswith("VA") and len(service.sid) == 34, service.sid
    assert service.account_sid == "AC" + service.sid[2:]
    assert service.friendly_name == "Compat login"
    assert service.code_length == 8
    fetched = login.verify.v2.services(service.sid).fetch()
    assert fetched.sid == service.sid and fetched.code_length == 8
    listed = login.verify.v2.services.list()
    assert [s.sid for s in listed] == [service.sid]


def test_sms_code_is_sent_checked_and_approved():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    to = number()
    verification = verify.verifications.create(to=to, channel="sms", locale="en")
    assert verification.sid.startswith("VE") and len(verification.sid) == 34
    assert verification.status == "pending" and verification.valid is False
    assert verification.service_sid == service.sid
    assert verification.account_sid == service.account_sid
    assert verification.to == to and verification.channel == "sms"
    code = code_sent_to(to)
    assert len(code) == 6
    check = verify.verification_checks.create(to=to, code=code)
    assert check.status == "approved" and check.valid is True, (check.status, check.valid)
    assert check.sid == verification.sid
    assert verify.verifications(verification.sid).fetch().status == "approved"
    # Twilio forgets approved verifications: a second check is a 404 (20404).
    expect_error(lambda: verify.verification_checks.create(to=to, code=code), 404, 20404)


def test_check_by_verification_sid():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    to = number()
    verification = verify.verifications.create(to=to, channel="whatsapp")
    assert verification.channel == "whatsapp"
    code = code_sent_to(to)
    check = verify.verification_checks.create(verification_sid=verification.sid, code=code)
    assert check.status == "approved" and check.valid is True


def test_call_reads_the_code_and_the_check_approves():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    to = number()
    verification = verify.verifications.create(to=to, channel="call", locale="de")
    assert verification.channel == "call" and verification.status == "pending"
    message = message_to(to)
    assert message["channel"] == "call", message
    assert message["body"].startswith("Ihr Bestätigungscode"), message["body"]
    code = code_spoken_to(to)
    assert message["body"].count(", ".join(code)) == 2, message["body"]
    check = verify.verification_checks.create(to=to, code=code)
    assert check.status == "approved" and check.valid is True, (check.status, check.valid)
    assert check.channel == "call"


def test_email_code_is_mailed_and_the_check_approves():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    address = "Compat.%d@Example.com" % random.randrange(10**9)
    verification = verify.verifications.create(to=address, channel="email", locale="es")
    assert verification.channel == "email" and verification.status == "pending"
    assert verification.to == address.lower(), verification.to
    mail = mail_to(address.lower())
    code = re.search(r"\d{4,10}", mail["text"]).group(0)
    assert mail["subject"] == f"Tu código de verificación: {code}", mail["subject"]
    assert f"<strong>{code}</strong>" in mail["html"] and "<img" not in mail["html"]
    expect_error(lambda: verify.verifications.create(to=address, channel="sms"), 400, 60200)
    check = verify.verification_checks.create(to=address, code=code)
    assert check.status == "approved" and check.valid is True, (check.status, check.valid)
    assert check.channel == "email"


def test_too_many_wrong_codes_raise_60202():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    to = number()
    verify.verifications.create(to=to, channel="sms")
    code = code_sent_to(to)
    for _ in range(4):
        check = verify.verification_checks.create(to=to, code=wrong(code))
        assert check.status == "pending" and check.valid is False
    error = expect_error(
        lambda: verify.verification_checks.create(to=to, code=wrong(code)), 429, 60202
    )
    assert "Max check attempts" in error.msg


def test_too_many_sends_raise_60203():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    to = number()
    first = verify.verifications.create(to=to, channel="sms")
    for _ in range(4):
        assert verify.verifications.create(to=to, channel="sms").sid == first.sid
    expect_error(lambda: verify.verifications.create(to=to, channel="sms"), 429, 60203)


def test_unsupported_channel_raises_60200():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    expect_error(lambda: verify.verifications.create(to=number(), channel="fax"), 400, 60200)
    expect_error(lambda: verify.verifications.create(to="12345", channel="sms"), 400, 60200)


def test_a_service_code_length_below_the_operator_floor_raises_60200():
    # The gateway under test keeps the default floor (verification.min_code_length = 6).
    operator = client("root", ROOT_KEY).verify.v2.services
    for length in (4, 5):
        error = expect_error(
            lambda: operator.create(friendly_name="Short codes", code_length=length), 400, 60200
        )
        assert "CodeLength" in error.msg, error.msg


def test_cancel_and_unknown_sids():
    service, login = new_service()
    verify = login.verify.v2.services(service.sid)
    verification = verify.verifications.create(to=number(), channel="sms")
    canceled = verify.verifications(verification.sid).update(status="canceled")
    assert canceled.status == "canceled"
    expect_error(lambda: verify.verifications("VE" + "0" * 32).fetch(), 404, 20404)


def test_wrong_credentials_raise_20003():
    service, login = new_service()
    intruder = client(service.account_sid, "ogk_not-a-key")
    expect_error(
        lambda: intruder.verify.v2.services(service.sid).verifications.create(
            to=number(), channel="sms"
        ),
        401,
        20003,
    )


def test_a_country_the_service_does_not_allow_raises_60605():
    service, login = new_service()
    account_sid = service.account_sid
    # The owner allows SMS to Germany and Austria only (abuse protection, docs/abuse.md).
    request = urllib.request.Request(
        f"{GATEWAY}/v1/policy",
        data=json.dumps({"abuse": {"geo": {"sms": {"countries": ["DE", "AT"]}}}}).encode(),
        headers={
            "Authorization": f"Bearer {mint_key(account_sid, 'owner')}",
            "Content-Type": "application/json",
        },
        method="PUT",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    verify = login.verify.v2.services(service.sid)
    error = expect_error(
        lambda: verify.verifications.create(to="+14155552671", channel="sms"), 403, 60605
    )
    assert "geo" in error.msg, error.msg
    # Germany still works; a premium-rate number never does (60205, as for a landline).
    assert verify.verifications.create(to=number(), channel="sms").status == "pending"
    expect_error(lambda: verify.verifications.create(to="+499001234567", channel="sms"), 400, 60205)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cbor(value):
    """The CBOR the attestation needs (RFC 8949): integers, byte and text strings, maps."""

    def head(major, length):
        if length < 24:
            return bytes([major << 5 | length])
        if length < 256:
            return bytes([major << 5 | 24, length])
        return bytes([major << 5 | 25]) + length.to_bytes(2, "big")

    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        return head(3, len(value.encode())) + value.encode()
    return head(5, len(value)) + b"".join(cbor(k) + cbor(v) for k, v in value.items())


class SoftPasskey:
    """A P-256 passkey as a platform authenticator holds it (user verified, backed up), and the
    browser around it: it answers the gateway's options in PublicKeyCredential.toJSON() shape."""

    FLAGS = 0x01 | 0x04 | 0x08 | 0x10  # UP, UV, BE, BS

    def __init__(self):
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.counter = 0
        self.user_handle = None

    def client_data(self, kind, challenge, origin):
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}
        ).encode()

    def register(self, options, origin):
        self.user_handle = options["user"]["id"]
        client_data = self.client_data("webauthn.create", options["challenge"], origin)
        point = self.key.public_key().public_numbers()
        cose = cbor(
            {1: 2, 3: -7, -1: 1, -2: point.x.to_bytes(32, "big"), -3: point.y.to_bytes(32, "big")}
        )
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([self.FLAGS | 0x40])
            + self.counter.to_bytes(4, "big")
            + bytes(16)
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + cose
        )
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "attestationObject": b64url(attestation),
                "clientDataJSON": b64url(client_data),
                "transports": ["internal"],
            },
        }

    def assertion(self, options, origin):
        self.counter += 1
        client_data = self.client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256(options["rpId"].encode()).digest()
            + bytes([self.FLAGS])
            + self.counter.to_bytes(4, "big")
        )
        signed = auth_data + hashlib.sha256(client_data).digest()
        signature = self.key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {
                "authenticatorData": b64url(auth_data),
                "clientDataJSON": b64url(client_data),
                "signature": b64url(signature),
                "userHandle": self.user_handle,
            },
        }


def passkey_service():
    """A service whose policy allows passkeys, a user of it, and the login service's client."""
    service, login = new_service()
    owner = mint_key(service.account_sid, "owner")
    status, body = v1("PUT", "/v1/policy", owner, {"channels": ["sms", "webauthn"]})
    assert status == 200, body
    identity = "compat-" + os.urandom(8).hex()
    status, body = v1("POST", "/v1/users", owner, {"id": identity, "role": "member", "phone": number()})
    assert status == 201, body
    return service, login, identity


def test_a_passkey_is_registered_and_approves_a_challenge():
    service, login, identity = passkey_service()
    verify = login.verify.v2.services(service.sid)
    factor = verify.new_factors.create(
        NewFactorList.CreateNewPasskeysFactorRequest(
            {"friendly_name": "Compat laptop", "identity": identity}
        )
    )
    assert factor.sid.startswith("YF") and len(factor.sid) == 34, factor.sid
    assert factor.entity_sid.startswith("YE") and len(factor.entity_sid) == 34
    assert factor.service_sid == service.sid and factor.identity == identity
    assert factor.status == "unverified" and factor.factor_type == "passkeys"
    assert factor.friendly_name == "Compat laptop"
    origin = factor.config["relying_party"]["origins"][0]
    options = factor.options["publicKey"]
    assert options["authenticatorSelection"]["residentKey"] == "required", options

    passkey = SoftPasskey()
    verified = verify.new_verify_factors.update(
        NewVerifyFactorList.VerifyPasskeysFactorRequest(passkey.register(options, origin))
    )
    assert verified.sid == factor.sid and verified.status == "verified"
    assert verified.identity == identity and verified.entity_sid == factor.entity_sid

    challenge = verify.new_challenge().create(
        NewChallengeContext.CreatePasskeysChallengeRequest({"identity": identity})
    )
    assert challenge.sid.startswith("YC") and len(challenge.sid) == 34, challenge.sid
    assert challenge.status == "pending" and challenge.identity == identity
    request = challenge.options["publicKey"]
    assert [c["id"] for c in request["allowCredentials"]] == [b64url(passkey.credential_id)]
    assertion = passkey.assertion(request, origin)
    approved = verify.approve_challenge.update(
        ApproveChallengeList.ApprovePasskeysChallengeRequest(assertion)
    )
    assert approved.sid == challenge.sid and approved.status == "approved"
    assert approved.identity == identity and approved.factor_sid == factor.sid
    assert approved.date_responded is not None

    # The challenge is approved once: the replay is Twilio's 60324.
    error = expect_error(
        lambda: verify.approve_challenge.update(
            ApproveChallengeList.ApprovePasskeysChallengeRequest(assertion)
        ),
        403,
        60324,
    )
    assert "unknown_challenge" in error.msg, error.msg


def test_passkey_input_errors_raise_twilio_codes():
    service, login, identity = passkey_service()
    verify = login.verify.v2.services(service.sid)
    expect_error(
        lambda: verify.new_factors.create(
            NewFactorList.CreateNewPasskeysFactorRequest({"identity": identity})
        ),
        400,
        60388,
    )
    expect_error(
        lambda: verify.new_factors.create(
            NewFactorList.CreateNewPasskeysFactorRequest(
                {"friendly_name": "Laptop", "identity": "nobody-" + os.urandom(4).hex()}
            )
        ),
        404,
        20404,
    )
    # A credential for a challenge the gateway never issued registers nothing.
    made_up = {
        "rp": {"id": "localhost"},
        "user": {"id": b64url(os.urandom(16))},
        "challenge": b64url(os.urandom(32)),
    }
    expect_error(
        lambda: verify.new_verify_factors.update(
            NewVerifyFactorList.VerifyPasskeysFactorRequest(
                SoftPasskey().register(made_up, "http://localhost:8080")
            )
        ),
        403,
        60311,
    )


def main():
    tests = [value for name, value in sorted(globals().items()) if name.startswith("test_")]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"PASS {test.__name__}")
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc()
    print(f"python twilio SDK: {len(tests) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
