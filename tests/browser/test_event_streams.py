"""The page's event-stream reader, in the browser that runs it: the parser against the format's
corner cases (fed in awkward chunks), and a dropped stream resumed with ``Last-Event-ID``."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import Route, expect

from tests.support.browser import DESKTOP, job_row, log_in
from tests.support.records import customers, unique_prefix

PARSE = """async (chunks) => {
  const { EventStreamParser } = await import("/assets/sse.js");
  const events = [];
  const parser = new EventStreamParser((event) => events.push(event));
  for (const chunk of chunks) parser.push(chunk);
  return { events, retry: parser.retry, lastEventId: parser.lastEventId };
}"""


def parsed(tab: Any, chunks: list[str]) -> dict[str, Any]:
    return dict(tab.page.evaluate(PARSE, chunks))


def test_the_parser_reads_the_event_stream_format_in_any_chunking(open_tab_on):
    tab = open_tab_on(DESKTOP)
    tab.page.goto(tab.url())
    stream = (
        ": keep-alive\r\n\r\n"
        'id: 1\r\nevent: progress\r\ndata: {"processed": 1}\r\n\r\n'
        "event: note\ndata: first line\ndata:second line\n\n"
        "id: 3\rdata: cr only\r\r"
        "event: empty\n\n"
        "retry: 2500\nid: bad\0id\ndata\n\n"
        "data: never ended"
    )
    whole = parsed(tab, [stream])
    one_char_at_a_time = parsed(tab, list(stream))
    split_in_crlf = parsed(
        tab, [stream[: stream.index("\r\n") + 1], stream[stream.index("\r\n") + 1 :]]
    )
    assert whole == one_char_at_a_time == split_in_crlf
    assert whole["events"] == [
        {"type": "progress", "data": '{"processed": 1}', "id": "1"},
        {"type": "note", "data": "first line\nsecond line", "id": "1"},
        {"type": "message", "data": "cr only", "id": "3"},
        {"type": "message", "data": "", "id": "3"},
    ]
    assert whole["retry"] == 2500
    assert whole["lastEventId"] == "3", "an id holding NUL is ignored"


def test_a_dropped_job_stream_is_resumed_with_the_last_event_id(open_tab_on, tenant, settings):
    job_id = tenant.api.post(
        "/api/v1/customers/bulk/async", {"records": customers(unique_prefix(), 50)}
    ).json()["job_id"]
    done = tenant.api.wait_terminal(job_id)
    tab = open_tab_on(DESKTOP)
    page = tab.page
    log_in(tab, tenant.api_key)
    resumed_with: list[str | None] = []
    first = {key: done[key] for key in ("job_id", "total", "successful", "failed", "skipped")}
    first.update(status="STARTED", processed=10, records_per_second=40.0, eta_seconds=1.0)

    def events(route: Route) -> None:
        if not resumed_with:  # the first connection: the job as still running, then it drops
            resumed_with.append(route.request.headers.get("last-event-id"))
            body = f"id: 7\nevent: progress\ndata: {json.dumps(first)}\n\n"
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)
        else:
            resumed_with.append(route.request.headers.get("last-event-id"))
            route.continue_()

    def running_job(route: Route) -> None:  # the page's first two looks see it still running
        route.fulfill(json={**done, "status": "STARTED", "processed": 10, "errors": []})

    page.route(f"**/api/v1/jobs/{job_id}/events", events)
    page.route(f"**/api/v1/jobs/{job_id}", running_job, times=2)
    page.goto(tab.url(f"#/jobs/{job_id}"))
    expect(page.locator(".status")).to_have_text("completed")
    assert resumed_with[:2] == [None, "7"]
    expect(page.locator("#job-progress-text")).to_have_text("50 of 50")
    assert job_row(settings, job_id)["status"] == "COMPLETED"
