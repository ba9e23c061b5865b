"""``POST /api/v1/jobs/{job_id}/revert``: a revert job that undoes a terminal job's writes.

1. The job is the caller's (else ``404``), terminal (else ``409 JobNotTerminal``), ended less
   than ``BULK_INGEST_REVERT_RETENTION_SECONDS`` ago (else ``409 RevertExpired``: its
   before-images are purged), not reverted yet (else ``409 JobAlreadyReverted``), and wrote
   rows (else ``422 NothingToRevert``: a dry run, a revert, a job whose records all failed).
2. The revert job's records are the job's before-image keys in key order (index = position),
   one per row it wrote; no record values travel. ``bulk.requests`` is a public contract whose
   records are entity records, so the gateway publishes them as ``RecordBatch`` messages
   (operation ``revert``) straight to the internal ``bulk.records``, each on the partition that
   owns its key (:mod:`domain.routing`, as the validate stage routes them).
3. It is accepted like every job (:mod:`api.intake`: Idempotency-Key, publish, ``READY``); the
   same transaction that registers it sets the reverted job's ``reverted_by_job_id`` with a
   conditional UPDATE, so of two concurrent reverts exactly one is accepted.

The persist stage decides its records apart (:mod:`storage.before_images`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import owned_job
from api.errors import HttpProblem, problem
from api.intake import accept_job, accepted_response, job_body, request_fingerprint
from api.services import Services
from bulk_ingest.kafka import OutgoingMessage
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX, job_url
from domain.jobs import is_terminal
from domain.messages import BatchHeader, RoutedRecord
from domain.revert import REVERT_OPERATION
from domain.routing import partition_for, routing_key
from storage import before_images
from storage import jobs as job_store
from storage.rows import Row

CHUNK_RECORDS = 1_000
"""Records per numbered chunk of a revert job (its part ids are ``<chunk>:<partition>``)."""
MAX_BATCH_BYTES = 1024 * 1024


async def revert_job(request: web.Request) -> web.Response:
    services, target = await owned_job(request)
    _check_revertible(services, target, request.headers.get("Idempotency-Key"))
    limit = services.settings.max_job_records
    async with services.engine.connect() as conn:
        keys = await before_images.revert_keys(conn, target["job_id"], limit)
    if not keys:
        raise _nothing_to_revert(target)
    job = job_store.NewJob(
        job_id=str(uuid.uuid4()),
        tenant_id=target["tenant_id"],
        entity=target["entity"],
        operation=REVERT_OPERATION,
        source="api",
        total=len(keys),
        webhook_url=target["webhook_url"],
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        request_hash=request_fingerprint("POST", f"revert/{target['job_id']}", b""),
        revert_of_job_id=target["job_id"],
    )

    async def register(conn: AsyncConnection, new: job_store.NewJob) -> None:
        await job_store.insert_job(conn, new)
        if not await job_store.claim_revert(conn, target["job_id"], new.job_id):
            raise _already_reverted(target["job_id"])

    def messages() -> list[OutgoingMessage]:
        return revert_messages(services, job, keys)

    accepted = await accept_job(
        services.engine, services.producer, job, messages, "revert records", register
    )
    async with services.engine.connect() as conn:
        answer = await job_body(conn, accepted.job)
    return accepted_response(answer, accepted.replayed)


def _check_revertible(services: Services, job: Row, idempotency_key: str | None) -> None:
    job_id = job["job_id"]
    if not is_terminal(job["status"]):
        raise problem(
            409,
            ErrorCode.JobNotTerminal,
            f"Job {job_id} is still {job['status']}; revert it once it has ended (wait for it, "
            f"or cancel it with POST {job_url(job_id)}/cancel).",
        )
    retention = timedelta(seconds=services.settings.revert_retention_seconds)
    completed = job["completed_at"] or datetime.now(UTC)
    if completed + retention < datetime.now(UTC):
        raise problem(
            409,
            ErrorCode.RevertExpired,
            f"Job {job_id} ended at {completed.isoformat()}, more than "
            f"{services.settings.revert_retention_seconds:g} s ago; what it replaced is no "
            "longer kept, so it cannot be reverted.",
        )
    if job.get("revert_of_job_id") is not None or job["dry_run"]:
        raise _nothing_to_revert(job)
    # With an Idempotency-Key the request may be the one that reverted it: intake replays it.
    if job.get("reverted_by_job_id") and not idempotency_key:
        raise _already_reverted(job_id, job["reverted_by_job_id"])


def _already_reverted(job_id: str, by: str | None = None) -> HttpProblem:
    by_job = f" by job {by}" if by else ""
    return problem(
        409,
        ErrorCode.JobAlreadyReverted,
        f"Job {job_id} was already reverted{by_job}; a job is reverted once.",
    )


def _nothing_to_revert(job: Row) -> HttpProblem:
    if job["dry_run"]:
        why = "it is a dry run and wrote no row"
    elif job.get("revert_of_job_id"):
        why = "it is a revert itself (a revert keeps no before-images)"
    else:
        why = "it wrote no row (every record failed, was skipped or changed nothing)"
    return problem(
        422, ErrorCode.NothingToRevert, f"Job {job['job_id']} has nothing to revert: {why}."
    )


def revert_messages(
    services: Services, job: job_store.NewJob, keys: Sequence[str]
) -> list[OutgoingMessage]:
    """The revert job's ``RecordBatch`` messages, each on the partition owning its keys."""
    records_topic = services.topics.records
    partitions = services.settings.partitions
    header = BatchHeader(job.job_id, job.tenant_id, job.entity, REVERT_OPERATION, job.total)
    messages: list[OutgoingMessage] = []
    for chunk, start in enumerate(range(0, len(keys), CHUNK_RECORDS)):
        by_partition: dict[int, list[RoutedRecord]] = defaultdict(list)
        for index, key in enumerate(keys[start : start + CHUNK_RECORDS], start):
            routed: RoutedRecord = {
                "index": index,
                "key": key,
                "record": None,
                "error": None,
                "line": None,
                "source": None,
            }
            by_partition[
                partition_for(routing_key(job.tenant_id, job.entity, key, index), partitions)
            ].append(routed)
        for partition, records in sorted(by_partition.items()):
            for _, payload in header.encoded_parts(
                records_topic.encode, f"{chunk}:{partition}", records, MAX_BATCH_BYTES
            ):
                messages.append(records_topic.encoded(payload, job.job_id, partition))
    return messages


def add_routes(app: web.Application) -> None:
    app.router.add_post(API_PREFIX + "/jobs/{job_id}/revert", revert_job)
