"""The SSRF guard, at submit time (check_webhook_url) and at send time (post_webhook).

Only loopback servers started here are ever contacted: refusals are checked before any
connection, and a send-time refusal is proven by a local server that sees no request.
"""

import asyncio
import ipaddress
import socket

import pytest
from aiohttp import web

from bulk_ingest.ssrf import WebhookPolicy, WebhookUrlRefused, check_webhook_url
from consumers.sender import PinnedResolver, post_webhook

DENY_ALL = WebhookPolicy()
LOOPBACK_OK = WebhookPolicy(allow_loopback=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
    ],
)
async def test_internal_targets_are_refused_without_configuration(url, reason):
    with pytest.raises(WebhookUrlRefused, match=reason):
        await check_webhook_url(url, DENY_ALL)


REFUSED = [
    # IPv4 special-purpose blocks (IANA registry)
    ("0.0.0.1", "unspecified"),
    ("10.20.30.40", "private"),
    ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("100.100.100.200", "shared (carrier-grade NAT)"),  # a cloud metadata address
    ("127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private"),
    ("192.0.0.9", "reserved or special-purpose"),
    ("192.0.2.1", "documentation"),
    ("192.88.99.1", "reserved or special-purpose"),
    ("192.168.1.1", "private"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.254", "benchmarking"),
    ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"),
    ("224.0.0.251", "multicast"),
    ("240.0.0.1", "reserved or special-purpose"),
    ("255.255.255.255", "reserved or special-purpose"),
    # IPv6 special-purpose blocks
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("100::1", "reserved or special-purpose"),
    ("2001:2::1", "benchmarking"),
    ("2001:10::1", "reserved or special-purpose"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("5f00::1", "reserved or special-purpose"),
    ("64:ff9b:1::a00:1", "reserved or special-purpose"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fe80::1", "link-local"),
    ("fec0::1", "reserved or special-purpose"),
    ("ff02::1", "multicast"),
    # IPv6 addresses carrying a refused IPv4 address (is_global is True for some on 3.11)
    ("::ffff:127.0.0.1", "carrying 127.0.0.1, a loopback"),
    ("::ffff:10.0.0.1", "carrying 10.0.0.1, a private"),
    ("::ffff:100.100.100.200", "carrying 100.100.100.200, a shared"),
    ("::127.0.0.1", "carrying 127.0.0.1, a loopback"),
    ("::10.0.0.1", "carrying 10.0.0.1, a private"),
    ("2002::1", "carrying 0.0.0.0, an unspecified"),
    ("2002:a00:1::1", "carrying 10.0.0.1, a private"),
    ("2002:7f00:1::", "carrying 127.0.0.1, a loopback"),
    ("64:ff9b::7f00:1", "carrying 127.0.0.1, a loopback"),
    ("64:ff9b::a9fe:a9fe", "carrying 169.254.169.254, a link-local"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "carrying 192.0.2.45, a documentation"),  # Teredo
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.1",
    "198.17.255.255",
    "198.20.0.1",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of a global address
    "64:ff9b::808:808",  # NAT64 of a global address
]


@pytest.mark.parametrize(("address", "reason"), REFUSED, ids=[a for a, _ in REFUSED])
def test_special_purpose_and_embedding_addresses_are_refused(address, reason):
    refusal = DENY_ALL.refusal(ipaddress.ip_address(address))
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", ALLOWED)
def test_global_addresses_are_allowed(address):
    assert DENY_ALL.refusal(ipaddress.ip_address(address)) is None


def test_allowing_loopback_allows_only_this_machines_loopback():
    assert LOOPBACK_OK.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert LOOPBACK_OK.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    for relayed in ("64:ff9b::7f00:1", "2002:7f00:1::", "::127.0.0.1"):
        assert LOOPBACK_OK.refusal(ipaddress.ip_address(relayed)) is not None, relayed
    assert LOOPBACK_OK.refusal(ipaddress.ip_address("10.0.0.1")) is not None
    assert LOOPBACK_OK.refusal(ipaddress.ip_address("100.100.100.200")) is not None


@pytest.mark.parametrize("url", ["ftp://example.com/hook", "http:///hook", "file:///etc/passwd"])
async def test_non_http_urls_are_refused(url):
    with pytest.raises(WebhookUrlRefused):
        await check_webhook_url(url, LOOPBACK_OK)


async def test_configuration_allows_loopback_or_a_network_explicitly():
    assert await check_webhook_url("http://127.0.0.1/hook", LOOPBACK_OK)
    allow_net = WebhookPolicy.from_settings(False, ("10.1.0.0/16",), ())
    assert await check_webhook_url("http://10.1.2.3/hook", allow_net)
    with pytest.raises(WebhookUrlRefused):
        await check_webhook_url("http://10.2.0.1/hook", allow_net)
    with pytest.raises(WebhookUrlRefused):  # loopback stays refused: only the network is allowed
        await check_webhook_url("http://127.0.0.1/hook", allow_net)


@pytest.fixture
async def receiver():
    """A loopback HTTP server answering what ``answers`` holds, noting every request."""
    seen: list[web.Request] = []
    answers: list[web.StreamResponse] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        if answers:
            answer = answers.pop(0)
            if isinstance(answer, float):
                await asyncio.sleep(answer)
                return web.Response(status=200)
            return answer
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", seen, answers
    await runner.cleanup()


async def test_send_time_guard_refuses_before_connecting(receiver):
    url, seen, _ = receiver
    outcome = await post_webhook(url, b"{}", {}, DENY_ALL, timeout_seconds=2)
    assert outcome.final and not outcome.delivered
    assert outcome.status_code is None and "loopback" in (outcome.error or "")
    assert seen == []


async def test_send_time_guard_checks_names_too(receiver):
    url, seen, _ = receiver
    named = url.replace("127.0.0.1", "localhost")
    outcome = await post_webhook(named, b"{}", {}, DENY_ALL, timeout_seconds=2)
    assert outcome.final and seen == []
    delivered = await post_webhook(named, b"{}", {}, LOOPBACK_OK, timeout_seconds=2)
    assert delivered.delivered and len(seen) == 1


async def test_a_post_carries_body_and_headers(receiver):
    url, seen, _ = receiver
    outcome = await post_webhook(url, b'{"a":1}', {"webhook-id": "msg_1"}, LOOPBACK_OK, 2)
    assert outcome.delivered and outcome.status_code == 204 and outcome.latency_ms is not None
    assert seen[0].headers["webhook-id"] == "msg_1"
    assert seen[0].headers["Content-Type"] == "application/json"


async def test_redirects_are_not_followed(receiver):
    url, seen, answers = receiver
    answers.append(web.Response(status=307, headers={"Location": "http://10.0.0.1/steal"}))
    outcome = await post_webhook(url, b"{}", {}, LOOPBACK_OK, timeout_seconds=2)
    assert outcome.status_code == 307 and not outcome.delivered and not outcome.final
    assert "not followed" in (outcome.error or "")
    assert len(seen) == 1


async def test_gone_is_final_and_retry_after_is_read(receiver):
    url, _, answers = receiver
    answers.append(web.Response(status=410))
    answers.append(web.Response(status=429, headers={"Retry-After": "7"}))
    answers.append(web.Response(status=500, headers={"Retry-After": "7"}, text="boom"))
    gone = await post_webhook(url, b"{}", {}, LOOPBACK_OK, 2)
    assert gone.final and gone.status_code == 410
    busy = await post_webhook(url, b"{}", {}, LOOPBACK_OK, 2)
    assert (busy.status_code, busy.retry_after_seconds, busy.final) == (429, 7, False)
    failed = await post_webhook(url, b"{}", {}, LOOPBACK_OK, 2)
    assert failed.retry_after_seconds is None  # only 429 and 503 are asked to wait
    assert failed.error == "HTTP 500: boom"


async def test_a_slow_receiver_times_out(receiver):
    url, _, answers = receiver
    answers.append(1.0)
    outcome = await post_webhook(url, b"{}", {}, LOOPBACK_OK, timeout_seconds=0.3)
    assert not outcome.delivered and not outcome.final
    assert "timed out" in (outcome.error or "")


async def test_pinned_resolver_answers_only_the_checked_host():
    resolver = PinnedResolver("hooks.example", [ipaddress.ip_address("127.0.0.1")])
    [answer] = await resolver.resolve("hooks.example", 443)
    assert (answer["host"], answer["port"], answer["family"]) == ("127.0.0.1", 443, socket.AF_INET)
    with pytest.raises(OSError):
        await resolver.resolve("elsewhere.example", 443)
