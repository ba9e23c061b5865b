"""One HTTP attempt of a webhook, behind the SSRF guard.

Before each attempt the URL's host is resolved and every address checked against the policy
(``bulk_ingest.ssrf``); the connection then goes to those checked addresses only — a resolver
pinned to them replaces DNS for the request — so an answer that changes between the check and
the connect (DNS rebinding) cannot reach a refused address. Redirects are never followed (a 3xx
is a failed attempt) and proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bulk_ingest.ssrf import Address, WebhookPolicy, WebhookUrlRefused, check_webhook_url
from consumers.retry_schedule import RETRY_AFTER_STATUSES, parse_retry_after

USER_AGENT = "bulk-ingest-webhooks/1"
ERROR_SNIPPET_BYTES = 200


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt produced; ``final`` failures are never retried."""

    status_code: int | None = None
    latency_ms: int | None = None
    error: str | None = None
    retry_after_seconds: float | None = None
    final: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class PinnedResolver(AbstractResolver):
    """Resolves exactly one host, to addresses checked beforehand."""

    def __init__(self, host: str, addresses: list[Address]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower() != self._host:
            raise OSError(f"{host} was not checked by the SSRF guard")
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self._addresses
        ]

    async def close(self) -> None:
        return None


async def post_webhook(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: WebhookPolicy,
    timeout_seconds: float,
) -> SendOutcome:
    """POST ``body`` once; never raises for anything the receiver or the network does."""
    try:
        async with asyncio.timeout(timeout_seconds):
            addresses = await check_webhook_url(url, policy)
    except WebhookUrlRefused as exc:
        # A name that does not resolve may resolve later; a refused address will not change.
        return SendOutcome(error=f"refused: {exc}", final=not isinstance(exc.__cause__, OSError))
    except TimeoutError:
        return SendOutcome(error=f"resolving the webhook host took over {timeout_seconds}s")
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_seconds):
            return await _post(url, body, headers, addresses, started)
    except TimeoutError:
        return SendOutcome(
            latency_ms=_since(started),
            error=f"timed out after {timeout_seconds}s without a response",
        )
    except aiohttp.ClientError as exc:
        return SendOutcome(latency_ms=_since(started), error=f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return SendOutcome(latency_ms=_since(started), error=f"connection failed: {exc}")


async def _post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    addresses: list[Address],
    started: float,
) -> SendOutcome:
    host = urlsplit(url).hostname or ""
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(host.lower(), addresses), use_dns_cache=False, force_close=True
    )
    all_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    async with (
        aiohttp.ClientSession(connector=connector, trust_env=False) as session,
        session.post(url, data=body, headers=all_headers, allow_redirects=False) as response,
    ):
        latency_ms = _since(started)
        status = response.status
        if 200 <= status < 300:
            return SendOutcome(status_code=status, latency_ms=latency_ms)
        snippet = (await response.content.read(ERROR_SNIPPET_BYTES)).decode("utf-8", "replace")
        return SendOutcome(
            status_code=status,
            latency_ms=latency_ms,
            error=_failure_text(status, response.headers, snippet),
            retry_after_seconds=parse_retry_after(
                response.headers.get("Retry-After"), datetime.now(UTC)
            )
            if status in RETRY_AFTER_STATUSES
            else None,
            final=status == 410,
        )


def _failure_text(status: int, headers: Mapping[str, str], snippet: str) -> str:
    if 300 <= status < 400:
        where = headers.get("Location", "nowhere")
        return f"HTTP {status}: redirect to {where} not followed; configure the final URL"
    if status == 410:
        return "HTTP 410 Gone: the receiver asked for no more deliveries"
    detail = " ".join(snippet.split())
    return f"HTTP {status}" + (f": {detail}" if detail else "")


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
