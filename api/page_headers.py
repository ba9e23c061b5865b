"""The security headers of the gateway's own web pages (the dashboard and ``/docs``): a
Content-Security-Policy that allows this origin only — nothing is loaded from or sent anywhere
else — no MIME sniffing, no referrer."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType


def content_security_policy(*, inline_styles: bool = False) -> str:
    """Same-origin only; ``inline_styles`` for a page whose library sets style attributes."""
    styles = "style-src 'self' 'unsafe-inline'" if inline_styles else "style-src 'self'"
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            styles,
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def security_headers(policy: str, *, cache_control: str | None = None) -> Mapping[str, str]:
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    return MappingProxyType(headers)
