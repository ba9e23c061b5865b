"""Handlers of JSON jobs under ``/api/v1``: bulk submission (async and sync) and job queries.

A submission is validated (basic rules, webhook URL), its records encoded as
``BulkRequestChunk`` messages of at most ``BULK_INGEST_PUBLISH_CHUNK_RECORDS`` records and
:data:`MAX_CHUNK_BYTES` bytes, and then accepted through :mod:`api.intake`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from aiohttp import web

from api.auth import authenticate, owned_job, read_json
from api.errors import problem
from api.intake import Accepted, accept_job, accepted_response, job_body, request_fingerprint
from api.services import SERVICES, Services
from bulk_ingest.kafka import MAX_MESSAGE_BYTES, KafkaUnavailable, OutgoingMessage
from bulk_ingest.ssrf import WebhookUrlRefused, check_webhook_url
from bulk_ingest.topics import Topic
from domain.bulk_requests import BulkRequest, Operation, validate_bulk_request
from domain.entities import EntityDefinition
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.job_view import API_PREFIX, MAX_PAGE, decode_cursor, job_object, record_results
from domain.jobs import JobStatus, is_terminal
from domain.messages import BulkRequestChunk, JobProgressed
from domain.text import unstorable_character
from domain.validation import encodable_record
from storage import job_listing, ledger
from storage import jobs as job_store

MAX_CHUNK_BYTES = MAX_MESSAGE_BYTES // 2


# --- submission -----------------------------------------------------------------------------------


async def submit_async(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    accepted = await _submit(request, services.settings.max_async_records, hint="")
    async with services.engine.connect() as conn:
        body = await job_body(conn, accepted.job)
    return accepted_response(body, accepted.replayed)


async def submit_sync(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    hint = f"send larger batches to {API_PREFIX}/{request.match_info['entity']}/bulk/async"
    accepted = await _submit(request, settings.max_sync_records, hint=hint)
    job_id = accepted.job["job_id"]

    async def terminal() -> bool:
        async with services.engine.connect() as conn:
            job = await job_store.get_job(conn, job_id)
        return job is not None and is_terminal(job["status"])

    finished = await services.waiter.wait_terminal(job_id, settings.sync_timeout_seconds, terminal)
    async with services.engine.connect() as conn:
        job = await job_store.get_job(conn, job_id)
        assert job is not None
        body = await job_body(conn, job)
        if not finished:
            return accepted_response(body, accepted.replayed)
        body["results"] = record_results(await ledger.all_outcomes(conn, job_id))
    headers = {"Idempotent-Replayed": "true"} if accepted.replayed else {}
    return web.json_response(body, status=200, headers=headers)


async def _submit(request: web.Request, max_records: int, *, hint: str) -> Accepted:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    raw, bulk = await _validated(request, services, max_records=max_records, hint=hint)
    job = job_store.NewJob(
        job_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        entity=bulk.entity,
        operation=bulk.operation.value,
        source="api",
        total=len(bulk.records),
        webhook_url=bulk.webhook_url,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        request_hash=request_fingerprint(request.method, bulk.entity, raw),
        options=bulk.options,
    )
    definition = services.registry.get(bulk.entity)

    def messages() -> list[OutgoingMessage]:
        return chunk_messages(services, job, bulk, definition)

    return await accept_job(services.engine, services.producer, job, messages, "records")


async def _validated(
    request: web.Request, services: Services, *, max_records: int, hint: str
) -> tuple[bytes, BulkRequest]:
    entity = request.match_info["entity"]
    default = Operation.UPDATE if request.method == "PUT" else Operation.INSERT
    raw, body = await read_json(request, services)
    bulk = validate_bulk_request(
        services.registry,
        entity,
        body,
        max_records=max_records,
        default_operation=default,
        too_many_hint=hint,
    )
    if bulk.webhook_url:
        try:
            await check_webhook_url(bulk.webhook_url, services.webhook_policy)
        except WebhookUrlRefused as exc:
            raise InvalidInput(
                (ApiError(ErrorCode.InvalidWebhookUrl, str(exc), field="webhook_url"),)
            ) from exc
    return raw, bulk


# --- chunks ---------------------------------------------------------------------------------------


def chunk_messages(
    services: Services, job: job_store.NewJob, bulk: BulkRequest, definition: EntityDefinition
) -> list[OutgoingMessage]:
    requests = services.topics.requests
    payloads = encoded_chunks(
        requests,
        bulk,
        definition,
        job_id=job.job_id,
        tenant_id=job.tenant_id,
        source=job.source,
        chunk_records=services.settings.publish_chunk_records,
    )
    return [requests.encoded(payload, job.job_id) for payload in payloads]


def request_chunks(
    request: BulkRequest,
    definition: EntityDefinition,
    *,
    job_id: str,
    tenant_id: str,
    source: str,
    chunk_records: int,
) -> Iterator[BulkRequestChunk]:
    """The job's records as chunks of at most ``chunk_records``."""
    records = request.records
    total = len(records)
    chunk_count = max(1, -(-total // chunk_records))
    submitted_at = datetime.now(UTC)
    branch = definition.avro_schema["name"]
    options = request.options.as_message()
    for chunk_index in range(chunk_count):
        first = chunk_index * chunk_records
        yield BulkRequestChunk(
            job_id=job_id,
            tenant_id=tenant_id,
            entity=request.entity,
            operation=request.operation.value,
            source=source,
            webhook_url=request.webhook_url,
            chunk_index=chunk_index,
            chunk_count=chunk_count,
            total=total,
            first_index=first,
            **options,
            records=[
                (branch, encodable_record(definition, record))
                for record in records[first : first + chunk_records]
            ],
            submitted_at=submitted_at,
        )


def encoded_chunks(
    requests: Topic[BulkRequestChunk],
    request: BulkRequest,
    definition: EntityDefinition,
    *,
    job_id: str,
    tenant_id: str,
    source: str,
    chunk_records: int,
    max_bytes: int = MAX_CHUNK_BYTES,
) -> list[bytes]:
    """The job's chunks, encoded; chunks of fewer records when some would be too large."""
    while True:
        encoded = [
            requests.encode(chunk)
            for chunk in request_chunks(
                request,
                definition,
                job_id=job_id,
                tenant_id=tenant_id,
                source=source,
                chunk_records=chunk_records,
            )
        ]
        if chunk_records == 1 or all(len(payload) <= max_bytes for payload in encoded):
            return encoded
        chunk_records = max(1, chunk_records // 2)


# --- queries --------------------------------------------------------------------------------------


async def get_job(request: web.Request) -> web.Response:
    services, job = await owned_job(request)
    async with services.engine.connect() as conn:
        return web.json_response(await job_body(conn, job))


async def cancel_job(request: web.Request) -> web.Response:
    """``202`` with the job: its records not yet written will be skipped as ``JobCancelled`` and
    it ends ``CANCELLED`` (the aggregator does both, :mod:`streams.aggregate`). A job already
    cancelled answers the same; one that ended otherwise is ``409 JobNotCancellable``."""
    services, job = await owned_job(request)
    job_id = job["job_id"]
    if not is_terminal(job["status"]):
        async with services.engine.begin() as conn:
            requested = await job_store.request_cancel(conn, job_id)
        if requested:
            await _nudge_aggregator(services, job_id, job["tenant_id"])
        async with services.engine.connect() as conn:
            job = await job_store.get_job(conn, job_id) or job
    if is_terminal(job["status"]) and job["status"] != JobStatus.CANCELLED:
        raise problem(
            409,
            ErrorCode.JobNotCancellable,
            f"Job {job_id} has already ended {job['status']}; only a job that is still running "
            "can be cancelled.",
        )
    async with services.engine.connect() as conn:
        body = await job_body(conn, job)
    return accepted_response(body, replayed=False)


async def _nudge_aggregator(services: Services, job_id: str, tenant_id: str) -> None:
    """Tell the job row's owner to look at the job now (it cancels it), not at its next batch."""
    progress = services.topics.progress
    nudge = progress.message(JobProgressed.nudge(job_id, tenant_id, "gateway:cancel"), job_id)
    try:
        await services.producer.send_all([nudge])
    except KafkaUnavailable as exc:
        raise problem(
            503,
            ErrorCode.ServiceUnavailable,
            f"The cancel of job {job_id} is noted but could not be passed on (Kafka is "
            "unavailable); it takes effect with the job's next batch. Retry to hurry it.",
            headers={"Retry-After": "5"},
        ) from exc


async def list_jobs(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    query = request.query
    status = query.get("status")
    if status is not None and status not in JobStatus.__members__:
        raise problem(
            422,
            ErrorCode.InvalidParameter,
            f"status must be one of {', '.join(JobStatus.__members__)}",
        )
    try:
        limit = int(query.get("limit", "50"))
        cursor = decode_cursor(query["cursor"]) if query.get("cursor") else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise problem(422, ErrorCode.InvalidParameter, "limit or cursor is malformed") from exc
    entity = query.get("entity") or None
    if entity is not None and unstorable_character(entity) is not None:
        raise problem(422, ErrorCode.InvalidParameter, "entity names no entity: it holds U+0000")
    if not 1 <= limit <= MAX_PAGE:
        raise problem(422, ErrorCode.InvalidParameter, f"limit must be 1..{MAX_PAGE}")
    parent_job_id = _parent_job_id(query.get("parent_job_id"))
    async with services.engine.connect() as conn:
        page = await job_listing.list_jobs(
            conn,
            tenant_id,
            status=status,
            entity=entity,
            limit=limit,
            cursor=cursor,
            parent_job_id=parent_job_id,
        )
        bodies = [job_object(job, []) for job in page.rows]
    return web.json_response({"jobs": bodies, "next_cursor": page.next_cursor})


def _parent_job_id(value: str | None) -> str | None:
    """The ``parent_job_id`` filter: the retries of that job."""
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise problem(
            422, ErrorCode.InvalidParameter, "parent_job_id must be a job id (a UUID)"
        ) from exc


def add_routes(app: web.Application) -> None:
    app.router.add_post(API_PREFIX + "/{entity}/bulk/async", submit_async)
    app.router.add_put(API_PREFIX + "/{entity}/bulk/async", submit_async)
    app.router.add_post(API_PREFIX + "/{entity}/bulk", submit_sync)
    app.router.add_put(API_PREFIX + "/{entity}/bulk", submit_sync)
    app.router.add_get(API_PREFIX + "/jobs", list_jobs)
    app.router.add_get(API_PREFIX + "/jobs/{job_id}", get_job)
    app.router.add_post(API_PREFIX + "/jobs/{job_id}/cancel", cancel_job)
