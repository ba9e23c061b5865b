"""``POST /api/v1/imports``: start importing an uploaded file.

Everything that needs only the request, the file's profile and its header is checked here and
answered synchronously (422): unknown or expired file, unknown entity, mapping to an unknown
field, a required field left unmapped, bad operation, webhook URL, sheet, encoding or delimiter.
Then, atomically, the exclusivity check and the job row (source ``file``, total 0 until the file
is parsed): a conflict is ``409 BLOCKED``. Finally ``ImportRequested`` is published on
``bulk.imports`` and the job becomes READY; the workers parse the rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import authenticate, read_json
from api.errors import HttpProblem
from api.files import file_store_of, zip_caps
from api.import_retry import import_body, parent_of, read_back
from api.intake import (
    Accepted,
    accept_job,
    accepted_response,
    earlier_job,
    job_body,
    request_fingerprint,
)
from api.services import SERVICES, Services
from bulk_ingest.ssrf import WebhookUrlRefused, check_webhook_url
from domain.entities import EntityDefinition
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.file_formats import open_rows, read_options
from domain.file_types import FileFormat, FileProfile, ReadOptions
from domain.import_mapping import plan_import
from domain.import_request import ImportRequest, parse_import_request
from domain.job_view import API_PREFIX
from domain.messages import ImportRequested
from storage import files as file_store
from storage import jobs as job_store
from storage.files import FileGone, FileState
from storage.jobs import LiveImport
from storage.rows import Row

log = logging.getLogger(__name__)

IMPORTS_PATH = API_PREFIX + "/imports"


def _invalid(errors: tuple[ApiError, ...] | list[ApiError]) -> HttpProblem:
    return HttpProblem(422, errors)


async def start_import(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    raw, body = await read_json(request, services)
    job = job_store.NewJob(
        job_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        entity="",
        operation="",
        source="file",
        total=0,  # unknown until the workers have read the file
        webhook_url=None,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        request_hash=request_fingerprint("POST", "imports", raw),
    )
    if job.idempotency_key:  # a replay answers even if the file has gone since
        earlier = await earlier_job(services.engine, job)
        if earlier is not None:
            return await _answer(services, Accepted(earlier, replayed=True))
    parent = await parent_of(services, tenant_id, body)
    try:
        wanted = parse_import_request(services.registry, import_body(parent, body))
    except InvalidInput as exc:
        raise _invalid(exc.errors) from exc
    definition = services.registry.get(wanted.entity)
    file_row = await _importable_file(services, tenant_id, wanted)
    options = _read_options(FileProfile.from_dict(file_row["profile"]), wanted)
    if parent is not None:  # the edited failure report, read back as the parent's columns
        file_row, wanted = await read_back(services, tenant_id, parent, file_row, options, wanted)
        options = _read_options(FileProfile.from_dict(file_row["profile"]), wanted)
    await _check_mapping(services, definition, file_row, options, wanted)
    await _check_webhook(services, wanted)
    job = dataclasses.replace(
        job,
        entity=wanted.entity,
        operation=wanted.operation.value,
        webhook_url=wanted.webhook_url,
        parent_job_id=parent.job_id if parent else None,
        options=wanted.options,
    )
    chunk_rows = services.settings.import_chunk_rows
    event = import_event(job, wanted, file_row, options, chunk_rows)
    message = services.topics.imports.message(event, job.job_id)

    async def create(conn: AsyncConnection, new: job_store.NewJob) -> None:
        outcome = await file_store.create_import(
            conn,
            new,
            file_id=file_row["file_id"],
            exclusive=wanted.exclusive,
            options=_stored_options(wanted, options, chunk_rows),
        )
        if isinstance(outcome, LiveImport):
            raise _blocked(outcome, wanted)
        if isinstance(outcome, FileGone):
            named = f"file {file_row['file_id']}"
            raise _file_problem(_gone_message(named, outcome.state, file_row), "file_id")

    accepted = await accept_job(
        services.engine, services.producer, job, lambda: [message], "import", create
    )
    return await _answer(services, accepted)


async def _answer(services: Services, accepted: Accepted) -> web.Response:
    async with services.engine.connect() as conn:
        body = await job_body(conn, accepted.job)
    return accepted_response(body, accepted.replayed)


# --- the file -------------------------------------------------------------------------------------


async def _importable_file(services: Services, tenant_id: str, wanted: ImportRequest) -> Row:
    async with services.engine.connect() as conn:
        if wanted.file_id is not None:
            row = await file_store.get_file(conn, tenant_id, str(uuid.UUID(wanted.file_id)))
        else:
            assert wanted.sha256 is not None
            row = await file_store.file_by_sha256(conn, tenant_id, wanted.sha256)
    named = f"file {wanted.file_id}" if wanted.file_id else f"a file with sha256 {wanted.sha256}"
    where = "file_id" if wanted.file_id else "sha256"
    if row is None:
        raise _file_problem(f"There is no {named}; upload it to {API_PREFIX}/files first.", where)
    state = file_store.file_state(row, datetime.now(UTC))
    if state is not FileState.LIVE:
        raise _file_problem(_gone_message(named, state, row), where)
    return row


def _gone_message(named: str, state: FileState, row: Mapping[str, Any]) -> str:
    if state is FileState.DELETED:
        return f"The {named} was deleted; upload it again."
    expired = row["expires_at"]
    when = f" at {expired.isoformat()}" if expired is not None else ""
    return (
        f"The {named} expired{when} (temporary files are kept for a limited time); upload it "
        "again, with ?storage=directory to keep it until you delete it."
    )


def _file_problem(message: str, where: str) -> HttpProblem:
    return _invalid([ApiError(ErrorCode.InvalidParameter, message, field=where)])


def _read_options(profile: FileProfile, wanted: ImportRequest) -> ReadOptions:
    errors = []
    is_xlsx = profile.format is FileFormat.XLSX
    if wanted.sheet is not None and not is_xlsx:
        errors.append(("sheet", "sheet applies only to XLSX files"))
    if wanted.sheet is not None and is_xlsx and wanted.sheet not in profile.sheets:
        sheets = ", ".join(profile.sheets)
        errors.append(
            ("sheet", f"The workbook has no sheet {wanted.sheet!r}; its sheets: {sheets}")
        )
    if is_xlsx and (wanted.encoding or wanted.delimiter):
        errors.append(("encoding", "encoding and delimiter do not apply to XLSX files"))
    if (
        wanted.delimiter
        and profile.format is not FileFormat.CSV
        and profile.content is not FileFormat.CSV
    ):
        errors.append(("delimiter", "delimiter applies only to CSV files"))
    if errors:
        raise _invalid([ApiError(ErrorCode.InvalidParameter, m, field=f) for f, m in errors])
    return read_options(
        profile, encoding=wanted.encoding, delimiter=wanted.delimiter, sheet=wanted.sheet
    )


async def _header(
    services: Services, file_row: Mapping[str, Any], options: ReadOptions, wanted: ImportRequest
) -> tuple[str, ...]:
    """The profiled header, or the file's first row read again when an override changes it."""
    profile = FileProfile.from_dict(file_row["profile"])
    sheet = options.sheet
    if options.format is FileFormat.XLSX and sheet is not None and sheet in profile.sheet_columns:
        return profile.sheet_columns[sheet]
    if not (wanted.encoding or wanted.delimiter):
        return profile.columns
    path = file_store_of(services).absolute(file_row["path"])
    caps = zip_caps(services.settings)

    def read_header() -> tuple[str, ...]:
        with open_rows(path, options, caps) as table:
            return table.header

    return await asyncio.to_thread(read_header)


async def _check_mapping(
    services: Services,
    definition: EntityDefinition,
    file_row: Mapping[str, Any],
    options: ReadOptions,
    wanted: ImportRequest,
) -> None:
    header = await _header(services, file_row, options, wanted)
    try:
        plan_import(
            definition,
            options.content,
            header,
            wanted.field_mappings,
            wanted.options.default_targets,
        )
    except InvalidInput as exc:
        raise _invalid(exc.errors) from exc


async def _check_webhook(services: Services, wanted: ImportRequest) -> None:
    if not wanted.webhook_url:
        return
    try:
        await check_webhook_url(wanted.webhook_url, services.webhook_policy)
    except WebhookUrlRefused as exc:
        error = ApiError(ErrorCode.InvalidWebhookUrl, str(exc), field="webhook_url")
        raise _invalid([error]) from exc


# --- the job --------------------------------------------------------------------------------------


def _stored_options(wanted: ImportRequest, options: ReadOptions, chunk_rows: int) -> dict[str, Any]:
    return {
        "operation": wanted.operation.value,
        "field_mappings": dict(wanted.field_mappings),
        "encoding": options.encoding,
        "delimiter": options.delimiter,
        "sheet": options.sheet,
        "chunk_rows": chunk_rows,
    }


def _blocked(blocker: LiveImport, wanted: ImportRequest) -> HttpProblem:
    kind = "An exclusive import" if blocker.exclusive else "Another import"
    message = (
        f"{kind} into {wanted.entity} is still running (job {blocker.job_id}, "
        f"{blocker.status}); start this import when it has finished."
    )
    return HttpProblem(
        409,
        [ApiError(ErrorCode.ImportBlocked, message)],
        extra={"status": "BLOCKED", "blocking_job_id": blocker.job_id},
    )


def import_event(
    job: job_store.NewJob,
    wanted: ImportRequest,
    file_row: Mapping[str, Any],
    options: ReadOptions,
    chunk_rows: int,
) -> ImportRequested:
    return ImportRequested(
        job_id=job.job_id,
        tenant_id=job.tenant_id,
        entity=job.entity,
        operation=job.operation,
        file_id=file_row["file_id"],
        path=file_row["path"],
        sha256=file_row["sha256"],
        format=options.format.value,
        content=options.content.value
        if options.format is FileFormat.ZIP and options.content
        else None,
        member=options.member,
        encoding=options.encoding,
        delimiter=options.delimiter,
        sheet=options.sheet,
        field_mappings=dict(wanted.field_mappings),
        chunk_rows=chunk_rows,
        resume_chunk=0,
        requested_at=datetime.now(UTC),
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post(IMPORTS_PATH, start_import)
