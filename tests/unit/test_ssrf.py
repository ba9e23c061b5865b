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
