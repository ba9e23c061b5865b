"""SSRF guard for webhook URLs: checked when a job is submitted and again before each send.

An address is called only if it is globally routable: ``ipaddress``' ``is_global`` *and* in none
of the special-purpose blocks of the IANA registries (:data:`SPECIAL_PURPOSE`; on Python 3.11
``is_global`` alone lets 6to4, NAT64 and IPv4-compatible addresses through) *and* every IPv4
address embedded in an IPv6 one passes too — IPv4-mapped (``::ffff:a.b.c.d``),
IPv4-compatible (``::a.b.c.d``), 6to4 (``2002:aabb:ccdd::``), Teredo (``2001::/32``), NAT64
(``64:ff9b::/96``). Exceptions: an allowed network, an allowed host, or (local stack) loopback.
Every address a host resolves to must pass, so a DNS answer cannot smuggle one in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


SPECIAL_PURPOSE: tuple[tuple[str, tuple[Network, ...]], ...] = (
    ("an unspecified address", _networks("0.0.0.0/8", "::/128")),
    ("a private address", _networks("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("a shared (carrier-grade NAT) address", _networks("100.64.0.0/10")),
    ("a link-local address", _networks("169.254.0.0/16", "fe80::/10")),
    ("a multicast address", _networks("224.0.0.0/4", "ff00::/8")),
    ("a benchmarking address", _networks("198.18.0.0/15", "2001:2::/48")),
    (
        "a documentation address",
        _networks(
            "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"
        ),
    ),
    (
        "a reserved or special-purpose address",
        _networks(
            "192.0.0.0/24",  # IETF protocol assignments
            "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
            "240.0.0.0/4",  # reserved, and 255.255.255.255
            "::/96",  # IPv4-compatible (deprecated); their IPv4 part is checked too
            "64:ff9b:1::/48",  # local-use NAT64
            "100::/64",  # discard-only
            "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
            "fec0::/10",  # site-local (deprecated)
            "5f00::/16",  # SRv6 SIDs
        ),
    ),
)
"""Blocks refused whatever ``ipaddress`` says, named for the refusal message."""

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        found.append(low32)
    return found


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

    @property
    def _strict(self) -> WebhookPolicy:
        return WebhookPolicy(False, self.allowed_networks, self.allowed_hosts)

    def refusal(self, address: Address) -> str | None:
        """Why ``address`` may not be called, or None when it may."""
        if any(address in network for network in self.allowed_networks):
            return None
        for inner in embedded_ipv4(address):
            # Only ::ffff:a.b.c.d reaches this machine's own loopback; through NAT64, 6to4 or
            # Teredo "127.0.0.1" is some relay's loopback, never allowed.
            judge = self if inner == getattr(address, "ipv4_mapped", None) else self._strict
            reason = judge.refusal(inner)
            if reason is not None:
                return f"an IPv6 address carrying {inner}, {reason}"
        if address.is_loopback:
            return None if self.allow_loopback else "a loopback address"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return None  # ::ffff:a.b.c.d is a.b.c.d, judged above
        for label, networks in SPECIAL_PURPOSE:
            if any(address in network for network in networks):
                return label
        if not address.is_global:
            return "a non-global address"
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
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


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
