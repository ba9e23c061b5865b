"""``POST /api/v1/jobs/{job_id}/retry``: a child job of a terminal job's failed and skipped records.

1. The parent is the caller's (else ``404``) and terminal (else ``409 JobNotTerminal``: its
   failures are not final yet); the optional body ``{"codes": [...]}`` narrows the retry to those
   error codes (:func:`domain.retry.parse_retry_codes`, ``422`` for an unknown one).
2. The records come from the parent's outcome ledger, as submitted, in index order: the same
   entity, operation and webhook URL. A record the service never read (skipped before it
   arrived, never received) has nothing to send again, and one that breaks the basic rules (a
   Kafka producer's) would fail the same way and cannot be encoded as sent: both are left out.
   None left is ``422 NothingToRetry``.
3. The child is accepted exactly like a JSON job (:mod:`api.intake`, the chunks of
   :func:`api.jobs.chunk_messages`), carrying ``parent_job_id``; the parent never changes.

A file import's failed rows are better fixed in its failure report and imported again with
``retry_of`` (:mod:`api.import_retry`); this route sends them again as they were converted.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, cast

from aiohttp import web

from api.auth import owned_job, read_json
from api.errors import HttpProblem, problem
from api.intake import accept_job, accepted_response, job_body, request_fingerprint
from api.jobs import chunk_messages
from api.services import Services
from bulk_ingest.kafka import OutgoingMessage
from domain.bulk_requests import BulkRequest, Operation
from domain.entities import EntityDefinition
from domain.errors import ErrorCode
from domain.job_options import options_from_row
from domain.job_view import API_PREFIX, job_url
from domain.jobs import is_terminal
from domain.report_rows import without_nulls
from domain.retry import parse_retry_codes
from domain.validation import basic_check
from storage import jobs as job_store
from storage import ledger
from storage.rows import Row


async def retry_job(request: web.Request) -> web.Response:
    services, parent = await owned_job(request)
    raw, body = await read_json(request, services) if request.body_exists else (b"", None)
    codes = parse_retry_codes(body, sent=request.body_exists)
    parent_id = parent["job_id"]
    if not is_terminal(parent["status"]):
        raise not_terminal(parent)
    definition = services.registry.get(parent["entity"])
    records = await _records(services, parent, codes, definition)
    bulk = BulkRequest(
        entity=parent["entity"],
        operation=Operation(parent["operation"]),
        records=records,
        webhook_url=parent["webhook_url"],
        # The parent's options, but not its breaker: a retry is of the failed records only.
        options=dataclasses.replace(options_from_row(parent), max_error_rate=None),
    )
    job = job_store.NewJob(
        job_id=str(uuid.uuid4()),
        tenant_id=parent["tenant_id"],
        entity=bulk.entity,
        operation=bulk.operation.value,
        source="api",
        total=len(records),
        webhook_url=bulk.webhook_url,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        request_hash=request_fingerprint("POST", f"retry/{parent_id}", raw),
        parent_job_id=parent_id,
        options=bulk.options,
    )

    def messages() -> list[OutgoingMessage]:
        return chunk_messages(services, job, bulk, definition)

    accepted = await accept_job(services.engine, services.producer, job, messages, "records")
    async with services.engine.connect() as conn:
        answer = await job_body(conn, accepted.job)
    return accepted_response(answer, accepted.replayed)


def not_terminal(job: Row) -> HttpProblem:
    """``409 JobNotTerminal``: a retry names a job whose failures are not final yet."""
    return problem(
        409,
        ErrorCode.JobNotTerminal,
        f"Job {job['job_id']} is still {job['status']}; retry it once it has ended (wait for "
        f"it, or cancel it with POST {job_url(job['job_id'])}/cancel).",
    )


async def _records(
    services: Services, parent: Row, codes: tuple[str, ...] | None, definition: EntityDefinition
) -> tuple[dict[str, Any], ...]:
    limit = services.settings.max_async_records
    async with services.engine.connect() as conn:
        rows = await ledger.retry_candidates(conn, parent["job_id"], codes, limit + 1)
    passes = basic_check(definition)
    records = [cast(dict[str, Any], without_nulls(row["record"])) for row in rows]
    records = [record for record in records if passes(record)]
    if not records:
        async with services.engine.connect() as conn:
            counts = await ledger.error_code_counts(conn, parent["job_id"])
        raise _nothing_to_retry(parent["job_id"], codes, counts)
    if len(records) > limit:
        raise problem(
            422,
            ErrorCode.MaxRecordsExceeded,
            f"More than {limit} records of job {parent['job_id']} would be retried, more than "
            "one job takes; narrow the retry with codes, or fix the failure report and import it "
            f"with retry_of ({API_PREFIX}/imports).",
        )
    return tuple(records)


def _nothing_to_retry(
    job_id: str, codes: tuple[str, ...] | None, counts: list[tuple[str, int]]
) -> HttpProblem:
    asked = f" with the codes {', '.join(codes)}" if codes else ""
    failures = ", ".join(f"{code} ({count})" for code, count in counts)
    has = f"its failures by code: {failures}" if failures else "it has no failed or skipped record"
    return problem(
        422,
        ErrorCode.NothingToRetry,
        f"Job {job_id} has no failed or skipped record{asked} that can be sent again (a record "
        "the service never read is not kept, one that breaks the basic rules would fail "
        f"again); {has}.",
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(API_PREFIX + "/jobs/{job_id}/retry", retry_job)
