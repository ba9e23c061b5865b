"""Live progress as Server-Sent Events (aiohttp-sse): ``GET /jobs/{id}/events`` and
``GET /jobs/events``.

A job's stream sends ``progress`` events (at most :data:`MIN_GAP_SECONDS` apart) while the job
moves, then one ``terminal`` event with the job object, and ends. The tenant's stream sends
``job`` events (the job as ``GET /jobs`` lists it) when a job appears or changes status, and
``progress`` events in between; it never ends on its own. Every event's id is the job row's
``updated_at`` in microseconds: a client resuming with ``Last-Event-ID`` gets only what changed
after it. Updates come from :class:`api.live_jobs.LiveJobs`, never from a query per client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from api.auth import authenticate, owned_job
from api.intake import job_body
from api.live_jobs import JobUpdate, StreamClosed, Subscription
from api.services import SERVICES
from domain.job_view import API_PREFIX, event_id, moment_of_event, progress_body
from domain.jobs import JobStatus, is_terminal
from domain.progress import eta_seconds

MIN_GAP_SECONDS = 0.25
WAKE_SECONDS = 1.0
"""How often an idle stream looks whether its client is still there."""
PING_SECONDS = 15.0
CLIENT_GONE = (ConnectionResetError, TimeoutError)
"""A client that went away (or stopped reading for aiohttp-sse's send time-out): the stream ends."""


async def job_events(request: web.Request) -> web.StreamResponse:
    services, job = await owned_job(request)
    after = _last_event_id(request) or 0
    current = event_id(job["updated_at"])
    watching = services.live.watch_job(job["job_id"])
    stream = EventSourceResponse(ping_interval=PING_SECONDS)
    with contextlib.suppress(*CLIENT_GONE):
        async with watching as subscription, _opened(stream, request):
            if is_terminal(JobStatus(job["status"])):
                if current > after:
                    async with services.engine.connect() as conn:
                        await _send(stream, "terminal", await job_body(conn, job), current)
                return stream
            if current > after:
                after = await _send(stream, "progress", _first_progress(job), current)
            await _follow_job(stream, subscription, after)
    return stream


async def _follow_job(stream: EventSourceResponse, subscription: Subscription, sent: int) -> None:
    last_send = time.monotonic()
    while stream.is_connected():
        try:
            updates = await subscription.take(WAKE_SECONDS)
        except StreamClosed:
            return
        for update in updates:
            if update.event_id <= sent and not update.terminal:
                continue
            if update.terminal:
                await _send(stream, "terminal", update.full or update.listed, update.event_id)
                return
            pause = MIN_GAP_SECONDS - (time.monotonic() - last_send)
            if pause > 0:
                await _pause(pause)
            sent = await _send(stream, "progress", update.progress, update.event_id)
            last_send = time.monotonic()


async def tenant_events(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    after = _last_event_id(request)
    watching = services.live.watch_tenant(tenant_id)
    stream = EventSourceResponse(ping_interval=PING_SECONDS)
    with contextlib.suppress(*CLIENT_GONE):
        async with watching as subscription, _opened(stream, request):
            if after is not None:
                moment = moment_of_event(after)
                for update in await services.live.changed_since(tenant_id, moment):
                    await _send_tenant_update(stream, update)
            while stream.is_connected():
                try:
                    updates = await subscription.take(WAKE_SECONDS)
                except StreamClosed:
                    break
                for update in updates:
                    await _send_tenant_update(stream, update)
    return stream


async def _send_tenant_update(stream: EventSourceResponse, update: JobUpdate) -> None:
    if update.status_changed:
        await _send(stream, "job", update.listed, update.event_id)
    else:
        await _send(stream, "progress", update.progress, update.event_id)


async def _send(stream: EventSourceResponse, event: str, body: dict[str, Any], id_: int) -> int:
    await stream.send(json.dumps(body, separators=(",", ":")), id=str(id_), event=event)
    return id_


async def _pause(seconds: float) -> None:
    await asyncio.sleep(seconds)  # pacing the client to 4 events a second, not synchronisation


@contextlib.asynccontextmanager
async def _opened(stream: EventSourceResponse, request: web.Request) -> AsyncIterator[None]:
    """The stream's headers sent; on leaving, its keep-alive stopped."""
    await stream.prepare(request)
    async with stream:
        yield


def _first_progress(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's progress before the live view has two readings: its average rate so far."""
    started = job["started_at"]
    seconds = (job["updated_at"] - started).total_seconds() if started else 0.0
    rate = job["processed"] / seconds if seconds > 0 else 0.0
    return progress_body(job, rate, eta_seconds(job["total"], job["processed"], rate))


def _last_event_id(request: web.Request) -> int | None:
    """The ``Last-Event-ID`` a resuming client sent (ignored when it is not one of ours: ours
    are microseconds since 1970, 16 digits until the year 2286)."""
    value = request.headers.get("Last-Event-ID", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 17 else None


def add_routes(app: web.Application) -> None:
    """Registered before :mod:`api.jobs`, whose ``/jobs/{job_id}`` would take ``/jobs/events``."""
    app.router.add_get(API_PREFIX + "/jobs/events", tenant_events)
    app.router.add_get(API_PREFIX + "/jobs/{job_id}/events", job_events)
