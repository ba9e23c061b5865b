"""``POST /imports`` with ``"retry_of"``: a fixed failure report imported as the parent's child.

A file import's failure report carries the parent's mapped source columns after its own
(``index, externalId, errorCode, failureReason, record``). The user fixes those cells in a
spreadsheet, uploads the file, and imports it naming the parent:

1. :func:`parent_of` — the parent is one of the caller's file imports (else ``422``) and has
   ended (else ``409 JobNotTerminal``); the request takes the parent's entity, operation,
   field mappings and webhook URL wherever it leaves them out.
2. :func:`read_back` — the upload is read (any importable format) and written again as a plain
   UTF-8 CSV of the source columns only, each cell without the quote formula escaping added
   (:func:`domain.retry.unescape_cell`). That file is stored like an upload (temporary) and is
   what the import reads, so the workers need nothing new and line numbers still match.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.errors import HttpProblem
from api.files import file_store_of, store_file, zip_caps
from api.retry import not_terminal
from api.services import Services
from domain.errors import ApiError, ErrorCode
from domain.file_formats import open_rows
from domain.file_types import ReadOptions, ZipCaps
from domain.import_request import UUID_PATTERN, ImportRequest
from domain.jobs import is_terminal
from domain.retry import retry_columns, unescape_cell
from storage import files as file_store
from storage import jobs as job_store

RETRY_FIELD = "retry_of"


@dataclass(frozen=True)
class Parent:
    """The job an import retries, and what the import takes from it."""

    job_id: str
    defaults: Mapping[str, Any]

    def fill(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The request with the parent's settings wherever it leaves them out."""
        merged = {name: value for name, value in body.items() if name != RETRY_FIELD}
        for name, value in self.defaults.items():
            if merged.get(name) is None and value is not None:
                merged[name] = value
        return merged


def import_body(parent: Parent | None, body: Any) -> Any:
    """What :func:`domain.import_request.parse_import_request` checks: the request without
    ``retry_of``, with the parent's settings filled in."""
    if parent is not None:
        return parent.fill(body)
    if isinstance(body, dict) and RETRY_FIELD in body and body[RETRY_FIELD] is None:
        return {name: value for name, value in body.items() if name != RETRY_FIELD}
    return body


def _refused(message: str) -> HttpProblem:
    return HttpProblem(422, [ApiError(ErrorCode.InvalidParameter, message, field=RETRY_FIELD)])


async def parent_of(services: Services, tenant_id: str, body: object) -> Parent | None:
    """The parent a request names with ``retry_of`` (None without it); step 1."""
    if not isinstance(body, dict) or body.get(RETRY_FIELD) is None:
        return None
    named = body[RETRY_FIELD]
    if not (isinstance(named, str) and UUID_PATTERN.fullmatch(named)):
        raise _refused("retry_of must be the job_id of the file import whose report this is")
    job_id = str(uuid.UUID(named))
    async with services.engine.connect() as conn:
        job = await job_store.get_job(conn, job_id, tenant_id)
        imported = await file_store.import_of(conn, tenant_id, job_id) if job else None
    if job is None:
        raise _refused(f"There is no job {job_id}; retry_of names one of your file imports.")
    if imported is None:
        raise _refused(
            f"Job {job_id} is not a file import (its source is {job['source']}); retry its "
            f"failed records with POST /api/v1/jobs/{job_id}/retry instead."
        )
    if not is_terminal(job["status"]):
        raise not_terminal(job)
    options = imported["options"]
    defaults = {
        "entity": job["entity"],
        "operation": options.get("operation", job["operation"]),
        "field_mappings": options.get("field_mappings"),
        "webhook_url": job["webhook_url"],
    }
    return Parent(job_id, defaults)


async def read_back(
    services: Services,
    tenant_id: str,
    parent: Parent,
    upload: Mapping[str, Any],
    options: ReadOptions,
    wanted: ImportRequest,
) -> tuple[Mapping[str, Any], ImportRequest]:
    """The file the import reads instead of the upload, and the request naming it (step 2)."""
    store = file_store_of(services)
    source = store.absolute(upload["path"])
    target = await asyncio.to_thread(store.upload_path)
    caps = zip_caps(services.settings)
    try:
        sha256, size = await asyncio.to_thread(_write_source_columns, source, options, caps, target)
        name = f"retry-of-{parent.job_id}.csv"
        row = await store_file(services, tenant_id, target, name, sha256, size)
    finally:
        target.unlink(missing_ok=True)
    again = dataclasses.replace(
        wanted, file_id=row["file_id"], sha256=None, encoding=None, delimiter=None, sheet=None
    )
    return row, again


def _write_source_columns(
    source: Path, options: ReadOptions, caps: ZipCaps, target: Path
) -> tuple[str, int]:
    """Copy the source columns of an edited report into ``target`` as CSV; (sha256, size)."""
    with (
        open_rows(source, options, caps) as table,
        target.open("w", newline="", encoding="utf-8") as out,
    ):
        keep = retry_columns(table.header)
        writer = csv.writer(out)
        writer.writerow([table.header[i] for i in keep])
        for row in table.rows:
            values = row.values
            if isinstance(values, Mapping):  # NDJSON: the line's keys name the columns
                values = [values.get(name) for name in table.header]
            writer.writerow([unescape_cell(_text(values or (), i)) for i in keep])
    digest = hashlib.sha256()
    with target.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), target.stat().st_size


def _text(values: Sequence[Any], position: int) -> str:
    value = values[position] if position < len(values) else None
    return "" if value is None else value if isinstance(value, str) else str(value)
