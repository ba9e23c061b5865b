"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"``; the key is the tenant's
``webhook_secret`` with its ``whsec_`` prefix removed and the rest base64-decoded; the signature
header is ``v1,`` + base64 of the HMAC-SHA256. Receivers verify with the same three steps.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"


class InvalidWebhookSecret(ValueError):
    """The stored secret is not ``whsec_`` + base64; the tenant's secret must be reissued."""


def secret_key(webhook_secret: str) -> bytes:
    """The HMAC key bytes of a ``whsec_…`` secret."""
    if not webhook_secret.startswith(SECRET_PREFIX):
        raise InvalidWebhookSecret("a webhook secret starts with 'whsec_'")
    try:
        return base64.b64decode(webhook_secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError as exc:
        raise InvalidWebhookSecret("the part after 'whsec_' is not base64") from exc


def sign(webhook_secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one send of ``body``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(webhook_secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(
    webhook_secret: str, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one send."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(webhook_secret, webhook_id, timestamp, body),
    }
