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
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from api.app import SERVICES, Services
from api.errors import HttpProblem
from api.files import file_store_of, zip_caps
from api.presenters import API_PREFIX, job_object, job_url
from api.routes import authenticate, read_json
from api.submission import earlier_job, publish_job, request_fingerprint
from bulk_ingest.kafka import OutgoingMessage
from bulk_ingest.ssrf import WebhookUrlRefused, check_webhook_url
from domain.codec import AvroCodec, load_codec
from domain.entities import EntityDefinition, default_schemas_dir
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.file_formats import FileFormat, FileProfile, ReadOptions, open_rows, read_options
from domain.imports import ImportRequest, parse_import_request, plan_columns, plan_keys
from storage import files as file_store
from storage import jobs as job_store
from storage.files import Blocked, FileGone, FileState

log = logging.getLogger(__name__)

IMPORTS_PATH = API_PREFIX + "/imports"
IMPORTS_CODEC = web.AppKey("imports_codec", AvroCodec)


def _invalid(errors: tuple[ApiError, ...] | list[ApiError]) -> HttpProblem:
    return HttpProblem(422, errors)


async def start_import(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    raw, body = await read_json(request, services)
    key = request.headers.get("Idempotency-Key") or None
    request_hash = request_fingerprint("POST", "imports", raw)
    if key:
        earlier = await earlier_job(services.engine, tenant_id, key, request_hash)
        if earlier is not None:
            return _accepted(earlier, replayed=True)
    try:
        wanted = parse_import_request(services.registry, body)
    except InvalidInput as exc:
        raise _invalid(exc.errors) from exc
    definition = services.registry.get(wanted.entity)
    file_row = await _importable_file(services, tenant_id, wanted)
    options = _read_options(FileProfile.from_dict(file_row["profile"]), wanted)
    await _check_mapping(services, definition, file_row, options, wanted)
    await _check_webhook(services, wanted)
    try:
        job = await _create_job(services, tenant_id, wanted, file_row, options, key, request_hash)
    except IntegrityError:  # a concurrent request with the same Idempotency-Key won the race
        earlier = await earlier_job(services.engine, tenant_id, key or "", request_hash)
        if earlier is None:
            raise
        return _accepted(earlier, replayed=True)
    await _publish(request.app, services, job, wanted, file_row, options)
    async with services.engine.connect() as conn:
        row = await job_store.get_job(conn, job.job_id)
    assert row is not None
    return _accepted(row, replayed=False)


def _accepted(job: Mapping[str, Any], *, replayed: bool) -> web.Response:
    headers = {"Location": job_url(job["job_id"])}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(job_object(job, []), status=202, headers=headers)


# --- the file -------------------------------------------------------------------------------------


async def _importable_file(services: Services, tenant_id: str, wanted: ImportRequest) -> RowMapping:
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
    if options.format is FileFormat.XLSX and options.sheet in profile.sheet_columns:
        return profile.sheet_columns[options.sheet]
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
        if options.content is FileFormat.NDJSON:
            plan_keys(definition, header, wanted.field_mappings)
        else:
            plan_columns(definition, header, wanted.field_mappings)
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


async def _create_job(
    services: Services,
    tenant_id: str,
    wanted: ImportRequest,
    file_row: Mapping[str, Any],
    options: ReadOptions,
    idempotency_key: str | None,
    request_hash: str,
) -> job_store.NewJob:
    job = job_store.NewJob(
        job_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        entity=wanted.entity,
        operation=wanted.operation.value,
        source="file",
        total=0,
        webhook_url=wanted.webhook_url,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    chunk_rows = services.settings.import_chunk_rows
    async with services.engine.begin() as conn:
        outcome = await file_store.create_import(
            conn,
            job,
            file_id=file_row["file_id"],
            exclusive=wanted.exclusive,
            options=_stored_options(wanted, options, chunk_rows),
        )
    if isinstance(outcome, Blocked):
        raise _blocked(outcome, wanted)
    if isinstance(outcome, FileGone):
        named = f"file {file_row['file_id']}"
        raise _file_problem(_gone_message(named, outcome.state, file_row), "file_id")
    return job


def _blocked(blocker: Blocked, wanted: ImportRequest) -> HttpProblem:
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
) -> dict[str, Any]:
    """The ``ImportRequested`` payload (schemas/topics/bulk.imports)."""
    return {
        "job_id": job.job_id,
        "tenant_id": job.tenant_id,
        "entity": job.entity,
        "operation": job.operation,
        "file_id": file_row["file_id"],
        "path": file_row["path"],
        "sha256": file_row["sha256"],
        "format": options.format.value,
        "content": options.content.value
        if options.format is FileFormat.ZIP and options.content
        else None,
        "member": options.member,
        "encoding": options.encoding,
        "delimiter": options.delimiter,
        "sheet": options.sheet,
        "field_mappings": dict(wanted.field_mappings),
        "chunk_rows": chunk_rows,
        "resume_chunk": 0,
        "requested_at": datetime.now(UTC),
    }


async def _publish(
    app: web.Application,
    services: Services,
    job: job_store.NewJob,
    wanted: ImportRequest,
    file_row: Mapping[str, Any],
    options: ReadOptions,
) -> None:
    event = import_event(job, wanted, file_row, options, services.settings.import_chunk_rows)
    message = OutgoingMessage(
        services.settings.topics.imports, app[IMPORTS_CODEC].encode(event), job.job_id.encode()
    )
    await publish_job(services.engine, services.producer, job.job_id, [message], "import")


def add_routes(app: web.Application) -> None:
    app[IMPORTS_CODEC] = load_codec(default_schemas_dir(), "bulk.imports")
    app.router.add_post(IMPORTS_PATH, start_import)
