"""verify_signature_v3 against saved vectors: HubSpot's own test vector and a webhook request."""

from __future__ import annotations

import base64
import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from integrations.connectors.hubspot import verify_signature_v3

from .conftest import load_json

VECTOR = load_json("hubspot/webhook_signature_v3_test_vector__hubspot_api_python.json")
REQUEST = load_json("hubspot/webhook_v3_request.json")
REQUEST_TS = REQUEST["headers"]["X-HubSpot-Request-Timestamp"]
REQUEST_SIG = REQUEST["headers"]["X-HubSpot-Signature-v3"]


def verify_request(**overrides):
    arguments = {
        "app_secret": REQUEST["client_secret_used"],
        "method": REQUEST["method"],
        "uri": REQUEST["uri"],
        "body": REQUEST["raw_body"].encode("utf-8"),
        "timestamp_ms": REQUEST_TS,
        "signature": REQUEST_SIG,
        "now_ms": int(REQUEST_TS) + 2_000,
    }
    arguments.update(overrides)
    return verify_signature_v3(**arguments)


def test_it_accepts_hubspots_own_v3_test_vector():
    assert verify_signature_v3(
        VECTOR["client_secret"],
        VECTOR["http_method"],
        VECTOR["http_uri"],
        VECTOR["request_body"].encode("utf-8"),
        VECTOR["timestamp"],
        VECTOR["expected_signature_v3"],
        now_ms=int(VECTOR["timestamp"]) + 60_000,
    )


def test_it_accepts_a_saved_webhook_request():
    assert verify_request() is True


def test_it_rejects_a_tampered_body():
    tampered = REQUEST["raw_body"].replace('"opportunity"', '"customer"')
    assert tampered != REQUEST["raw_body"]
    assert verify_request(body=tampered.encode("utf-8")) is False


def test_it_rejects_another_uri_method_or_secret():
    assert verify_request(uri="https://leadscore.example.com/webhooks/other") is False
    assert verify_request(method="PUT") is False
    assert verify_request(app_secret="not-the-secret") is False


def test_it_rejects_a_stale_timestamp():
    assert verify_request(now_ms=int(REQUEST_TS) + 300_000) is True
    assert verify_request(now_ms=int(REQUEST_TS) + 300_001) is False


def test_it_accepts_up_to_a_minute_of_clock_skew_and_rejects_a_timestamp_further_ahead():
    assert verify_request(now_ms=int(REQUEST_TS) - 2_000) is True
    assert verify_request(now_ms=int(REQUEST_TS) - 60_000) is True
    assert verify_request(now_ms=int(REQUEST_TS) - 60_001) is False
    assert verify_request(now_ms=int(REQUEST_TS) - 600_000) is False


def test_it_rejects_a_timestamp_that_was_not_signed():
    # Moving the timestamp into the window does not help an attacker: it is signed.
    assert verify_request(timestamp_ms=str(int(REQUEST_TS) + 1_000)) is False


def test_it_rejects_missing_or_malformed_inputs_without_raising():
    assert verify_request(timestamp_ms="") is False
    assert verify_request(timestamp_ms="17107609610OO") is False
    assert verify_request(signature="") is False
    assert verify_request(signature="not base64 ✓") is False


def test_it_accepts_a_signature_over_the_uri_with_reserved_characters_decoded():
    uri_as_received = "https://leadscore.example.com/webhooks/hubspot?portal=1%3A2&to=a%40b"
    uri_as_signed = "https://leadscore.example.com/webhooks/hubspot?portal=1:2&to=a@b"
    body = b"[]"
    message = ("POST" + uri_as_signed).encode() + body + REQUEST_TS.encode()
    signature = base64.b64encode(hmac.new(b"secret", message, hashlib.sha256).digest()).decode()

    assert verify_request(app_secret="secret", uri=uri_as_received, body=body, signature=signature)


@given(st.binary(min_size=1, max_size=64))
def test_any_change_to_the_body_invalidates_the_signature(suffix):
    body = REQUEST["raw_body"].encode("utf-8") + suffix
    assert verify_request(body=body) is False
