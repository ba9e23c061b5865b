"""Accepting a job — the one path JSON jobs and file imports both take.

1. An ``Idempotency-Key`` seen before with the same request replays that job (``Idempotent-
   Replayed: true``); with a different request it is ``409 IdempotencyKeyReused``.
2. The job row is committed, together with whatever that kind of job adds in the same
   transaction (an import: its row and the exclusivity check). If a concurrent request with the
   same key won the race, that job is replayed instead.
3. Its messages (request chunks, or the import request) are published, then it is ``READY``. If
   Kafka does not take them, the job is *abandoned* — its key released, so a retry with the same
   key creates a new job — the caller answers ``503``, and a worker's sweeper fails the records
   that never arrived (``RecordNotReceived``) and ends it ``INTERNAL_FAILURE``.

Everything that can refuse the request runs before step 2, so a refused request leaves nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.errors import problem
from bulk_ingest.kafka import AsyncProducer, KafkaUnavailable, OutgoingMessage
from domain.errors import ErrorCode
from domain.job_view import job_object, job_url
from storage import jobs as job_store
from storage import ledger

log = logging.getLogger(__name__)

CreateRow = Callable[[AsyncConnection, job_store.NewJob], Awaitable[None]]
"""Writes the job row (and what goes with it) in the given transaction; may refuse with an
``HttpProblem``."""


@dataclass(frozen=True)
class Accepted:
    job: job_store.Job
    replayed: bool


def request_fingerprint(method: str, what: str, raw_body: bytes) -> str:
    """What makes two requests "the same" for an Idempotency-Key."""
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", what.encode(), b"\0", raw_body):
        digest.update(part)
    return digest.hexdigest()


async def accept_job(
    engine: AsyncEngine,
    producer: AsyncProducer,
    job: job_store.NewJob,
    messages_of: Callable[[], Sequence[OutgoingMessage]],
    what: str,
    create: CreateRow = job_store.insert_job,
) -> Accepted:
    """Steps 1 to 3 of the module docstring; ``what`` names the messages in a 503.

    ``messages_of`` builds the job's messages (encoding may refuse the request); it is called
    after a replay was ruled out and before the row is written.
    """
    if job.idempotency_key:
        earlier = await earlier_job(engine, job)
        if earlier is not None:
            return Accepted(earlier, replayed=True)
    messages = messages_of()
    try:
        async with engine.begin() as conn:
            await create(conn, job)
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        earlier = await earlier_job(engine, job) if job.idempotency_key else None
        if earlier is None:
            raise
        return Accepted(earlier, replayed=True)
    await publish_job(engine, producer, job.job_id, messages, what)
    async with engine.connect() as conn:
        row = await job_store.get_job(conn, job.job_id)
    assert row is not None
    return Accepted(row, replayed=False)


async def earlier_job(engine: AsyncEngine, job: job_store.NewJob) -> job_store.Job | None:
    """The job an earlier request with this job's Idempotency-Key created, if any."""
    assert job.idempotency_key is not None
    async with engine.connect() as conn:
        earlier = await job_store.job_by_idempotency_key(conn, job.tenant_id, job.idempotency_key)
    if earlier is not None and earlier["request_hash"] != job.request_hash:
        raise problem(
            409,
            ErrorCode.IdempotencyKeyReused,
            f"Idempotency-Key {job.idempotency_key!r} was already used for a different request "
            f"(job {earlier['job_id']}); use a new key for a new request.",
        )
    return earlier


async def publish_job(
    engine: AsyncEngine,
    producer: AsyncProducer,
    job_id: str,
    messages: Sequence[OutgoingMessage],
    what: str,
) -> None:
    """Publish a job's messages, then mark it READY (step 3)."""
    try:
        await producer.send_all(messages)
    except Exception as exc:
        log.error("job %s could not be published: %s", job_id, exc)
        reason = f"The {what} could not be published to Kafka: {exc}"
        async with engine.begin() as conn:
            await job_store.abandon_job(conn, job_id, reason[:1000])
        if not isinstance(exc, KafkaUnavailable):
            raise
        raise problem(
            503,
            ErrorCode.ServiceUnavailable,
            f"The {what} could not be queued for processing (Kafka is unavailable); job "
            f"{job_id} will end INTERNAL_FAILURE. Retry the request: the same Idempotency-Key "
            "creates a new job.",
            headers={"Retry-After": "5"},
        ) from exc
    async with engine.begin() as conn:
        await job_store.mark_ready(conn, job_id)


async def job_body(conn: AsyncConnection, job: Mapping[str, Any]) -> dict[str, Any]:
    """The job object, with its first failures."""
    failures = await ledger.first_failures(conn, job["job_id"]) if job["failed"] else []
    return job_object(job, failures)


def accepted_response(body: Mapping[str, Any], replayed: bool, status: int = 202) -> web.Response:
    """``202`` (or ``status``) with the job object and its ``Location``."""
    headers = {"Location": job_url(body["job_id"])}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(dict(body), status=status, headers=headers)
