"""Webhook signatures follow the Standard Webhooks spec, byte for byte."""

import base64
import hashlib
import hmac

import pytest

from consumers.signing import InvalidWebhookSecret, sign, signed_headers

# The example of the Standard Webhooks specification (standard-webhooks/spec, svix docs).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_specification_example_verifies():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_signature_is_hmac_sha256_of_id_timestamp_body_keyed_with_decoded_secret():
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = '{"type":"job.completed","data":{"job_id":"ü"}}'.encode()
    expected = base64.b64encode(
        hmac.new(key, b"msg_abc.1700000000." + body, hashlib.sha256).digest()
    ).decode()
    assert sign(secret, "msg_abc", 1700000000, body) == "v1," + expected


def test_headers_carry_id_timestamp_and_signature():
    headers = signed_headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_any_change_to_the_signed_content_changes_the_signature():
    base = sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY) != base
    assert sign(SPEC_SECRET, SPEC_ID + "x", SPEC_TIMESTAMP, SPEC_BODY) != base
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY + b" ") != base


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_malformed_secrets_are_refused(secret):
    with pytest.raises(InvalidWebhookSecret):
        sign(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
