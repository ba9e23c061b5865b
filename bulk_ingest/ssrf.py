"""SSRF guard for webhook URLs: checked when a job is submitted and again before each send.

Loopback, private, link-local, multicast, reserved and unspecified addresses are refused unless
the address is inside an allowed network, the host is an allowed host, or (local stack) loopback
is allowed. Every address a host resolves to must pass, so a DNS answer cannot smuggle one in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookUrlRefused(Exception):
    """The URL may not be called; the message says why, for the person who submitted it."""


@dataclass(frozen=True)
class WebhookPolicy:
    allow_loopback: bool = False
    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_settings(
        cls, allow_loopback: bool, networks: tuple[str, ...], hosts: tuple[str, ...]
    ) -> WebhookPolicy:
        return cls(
            allow_loopback=allow_loopback,
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in networks),
            allowed_hosts=frozenset(h.lower() for h in hosts),
        )

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be called, or None when it may."""
        if any(address in network for network in self.allowed_networks):
            return None
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        checks = (
            ("is_unspecified", "an unspecified address"),
            ("is_link_local", "a link-local address"),
            ("is_multicast", "a multicast address"),
            ("is_private", "a private address"),
            ("is_reserved", "a reserved address"),
        )
        for attribute, label in checks:
            if getattr(address, attribute):
                return label
        return None


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookUrlRefused(f"webhook_url {url!r} must be an http or https URL with a host")
    return parts.hostname.lower()


async def resolve(host: str, port: int | None = None) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookUrlRefused(f"webhook host {host!r} does not resolve: {exc}") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


async def check_webhook_url(url: str, policy: WebhookPolicy) -> list[Address]:
    """The addresses ``url`` may be called at; raises :class:`WebhookUrlRefused` otherwise."""
    host = _host_of(url)
    addresses = await resolve(host, urlsplit(url).port)
    if host in policy.allowed_hosts:
        return addresses
    for address in addresses:
        reason = policy.refusal(address)
        if reason:
            raise WebhookUrlRefused(
                f"webhook_url {url!r} resolves to {address}, {reason}; such targets are refused "
                "(configure BULK_INGEST_WEBHOOK_ALLOWED_NETWORKS or _ALLOWED_HOSTS to allow it)"
            )
    return addresses
