"""Handlers of a job's webhook: the attempts made, and a redelivery on request.

``GET /jobs/{id}/webhooks`` lists every attempt, oldest first; ``POST /jobs/{id}/webhooks/
redeliver`` schedules a new send now, with the same ``webhook-id``, and answers ``202`` with the
delivery's state. The dispatcher (in the consumers process) does the sending.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from api.auth import owned_job
from api.errors import problem
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX, iso
from domain.jobs import JobStatus, is_terminal
from storage import webhooks as webhook_store


def attempt_object(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "webhook_id": row["webhook_id"],
        "attempt": row["attempt"],
        "at": iso(row["at"]),
        "status_code": row["status_code"],
        "latency_ms": row["latency_ms"],
        "error": row["error"],
        "next_attempt_at": iso(row["next_attempt_at"]),
    }


def delivery_object(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "webhook_id": row["webhook_id"],
        "job_id": row["job_id"],
        "url": row["url"],
        "type": row["event_type"],
        "state": row["state"],
        "attempts_made": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "delivered_at": iso(row["delivered_at"]),
    }


async def list_attempts(request: web.Request) -> web.Response:
    services, job = await owned_job(request)
    async with services.engine.connect() as conn:
        rows = await webhook_store.attempts_for_job(conn, job["job_id"])
    return web.json_response({"attempts": [attempt_object(row) for row in rows]})


async def redeliver(request: web.Request) -> web.Response:
    services, job = await owned_job(request)
    job_id = job["job_id"]
    if not job["webhook_url"]:
        raise problem(
            422,
            ErrorCode.InvalidWebhookUrl,
            f"Job {job_id} was submitted without a webhook_url; there is no webhook to redeliver.",
        )
    if not is_terminal(JobStatus(job["status"])):
        raise problem(
            409,
            ErrorCode.InvalidOperation,
            f"Job {job_id} is {job['status']}; its webhook is sent when it reaches a terminal "
            "status and can be redelivered after that.",
        )
    now = datetime.now(UTC)
    async with services.engine.begin() as conn:
        if await webhook_store.delivery_for_job(conn, job_id) is None:
            await webhook_store.schedule_webhook(conn, job, now)
        delivery = await webhook_store.request_redelivery(
            conn, webhook_store.webhook_id_for(job_id), now
        )
    return web.json_response(delivery_object(delivery), status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/jobs/{job_id}/webhooks", list_attempts)
    app.router.add_post(API_PREFIX + "/jobs/{job_id}/webhooks/redeliver", redeliver)
