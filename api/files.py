"""Handlers of ``/api/v1/files``: upload (raw body or multipart), profile, delete; the purge.

An upload streams to the file store in bounded blocks while its SHA-256 and size are computed,
so a 1 GB file costs the gateway a megabyte of memory. Then the file is profiled (format,
encoding, delimiter, columns) in a worker thread and its row is committed. Anything the service
cannot import is refused right here with a 422 that says why — including zip bombs and corrupt
archives — rather than failing later in a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from api.auth import authenticate
from api.errors import HttpProblem, id_or_404, problem
from api.services import SERVICES, Services
from bulk_ingest.settings import Settings
from domain.errors import ApiError, ErrorCode
from domain.file_formats import profile_file
from domain.file_types import FILE_STORAGES, FileFormat, FileProfile, FileRejected, ZipCaps
from domain.job_view import API_PREFIX, iso
from domain.text import unstorable_character
from storage import before_images
from storage import files as file_store
from storage.files import FileState, FileStore, NewFile

log = logging.getLogger(__name__)

FILES_PATH = API_PREFIX + "/files"
BLOCK_BYTES = 1024 * 1024


def zip_caps(settings: Settings) -> ZipCaps:
    return ZipCaps(settings.zip_max_uncompressed_bytes, settings.zip_max_ratio)


def file_store_of(services: Services) -> FileStore:
    return FileStore(services.settings.file_dir)


def file_url(file_id: str) -> str:
    return f"{FILES_PATH}/{file_id}"


def file_object(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored file as the API shows it: the contract's fields, then helpful extras."""
    profile = FileProfile.from_dict(row["profile"])
    body: dict[str, Any] = {
        "file_id": row["file_id"],
        "sha256": row["sha256"],
        "size": row["size"],
        "format": row["format"],
        "storage": row["storage"],
        "expires_at": iso(row["expires_at"]),
        "encoding": profile.encoding,
        "delimiter": profile.delimiter,
        "columns": list(profile.columns),
        "filename": row["filename"],
        "created_at": iso(row["created_at"]),
    }
    if profile.format is FileFormat.XLSX:
        body["sheets"] = list(profile.sheets)
    if profile.format is FileFormat.ZIP:
        body["member"] = {"name": profile.member, "format": str(profile.content)}
    if profile.warnings:
        body["warnings"] = list(profile.warnings)
    return body


# --- upload ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: Path
    sha256: str
    size: int
    filename: str | None
    content_type: str | None


async def upload_file(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    storage = request.query.get("storage", "temporary")
    if storage not in FILE_STORAGES:
        raise problem(
            422, ErrorCode.InvalidParameter, "storage must be temporary (the default) or directory."
        )
    store = file_store_of(services)
    received = await _receive(request, store, services.settings.max_file_bytes)
    try:
        profile = await _profile(received.path, services.settings)
        row = await _commit(services, store, tenant_id, storage, received, profile)
    finally:
        received.path.unlink(missing_ok=True)  # gone already unless something failed
    log.info("file %s uploaded: %s, %s bytes", row["file_id"], row["format"], row["size"])
    body = file_object(row)
    return web.json_response(body, status=201, headers={"Location": file_url(body["file_id"])})


async def _profile(path: Path, settings: Settings) -> FileProfile:
    try:
        return await asyncio.to_thread(profile_file, path, zip_caps(settings))
    except FileRejected as exc:
        raise HttpProblem(422, [ApiError(ErrorCode.InvalidFormat, str(exc), field="file")]) from exc


async def _commit(
    services: Services,
    store: FileStore,
    tenant_id: str,
    storage: str,
    received: Received,
    profile: FileProfile,
) -> Mapping[str, Any]:
    file_id = str(uuid.uuid4())
    relative = await asyncio.to_thread(store.place, received.path, tenant_id, file_id)
    ttl = timedelta(seconds=services.settings.file_temporary_ttl_seconds)
    new = NewFile(
        file_id=file_id,
        tenant_id=tenant_id,
        sha256=received.sha256,
        size=received.size,
        format=profile.format.value,
        storage=storage,
        path=relative,
        filename=received.filename,
        content_type=received.content_type,
        profile=profile.to_dict(),
        expires_at=datetime.now(UTC) + ttl if storage == "temporary" else None,
    )
    try:
        async with services.engine.begin() as conn:
            return await file_store.insert_file(conn, new)
    except BaseException:
        await asyncio.to_thread(store.remove, relative)
        raise


async def store_file(
    services: Services, tenant_id: str, path: Path, filename: str, sha256: str, size: int
) -> Mapping[str, Any]:
    """A file the gateway wrote itself (a failure report read back, :mod:`api.import_retry`),
    profiled and stored like an upload (temporary); ``path`` is moved into the store."""
    store = file_store_of(services)
    received = Received(path, sha256, size, filename, "text/csv")
    try:
        profile = await _profile(path, services.settings)
        return await _commit(services, store, tenant_id, "temporary", received, profile)
    finally:
        path.unlink(missing_ok=True)


def _too_large(limit: int) -> HttpProblem:
    return problem(
        413,
        ErrorCode.PayloadTooLarge,
        f"The file is larger than the {limit} bytes allowed (BULK_INGEST_MAX_FILE_BYTES); "
        "split it into several files.",
    )


async def _receive(request: web.Request, store: FileStore, max_bytes: int) -> Received:
    if request.content_length is not None and request.content_length > max_bytes:
        raise _too_large(max_bytes)
    if request.content_type.startswith("multipart/"):
        try:
            part = await _file_part(request)
            filename, content_type = part.filename, part.headers.get("Content-Type")
        except MALFORMED_MULTIPART as exc:
            raise _malformed(exc) from exc

        async def read_block() -> bytes:
            try:
                return bytes(await part.read_chunk(BLOCK_BYTES))
            except MALFORMED_MULTIPART as exc:
                raise _malformed(exc) from exc

    else:
        filename = request.query.get("filename") or _disposition_name(request)
        content_type = request.content_type

        async def read_block() -> bytes:
            return await request.content.read(BLOCK_BYTES)

    path = await asyncio.to_thread(store.upload_path)
    try:
        sha256, size = await _stream_to_disk(read_block, path, max_bytes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise problem(422, ErrorCode.EmptyRequest, "The upload is empty: send the file's bytes.")
    if filename is not None and unstorable_character(filename) is not None:
        path.unlink(missing_ok=True)
        raise problem(
            422, ErrorCode.InvalidParameter, "The filename holds U+0000 or a lone surrogate."
        )
    return Received(path, sha256, size, filename, content_type)


MALFORMED_MULTIPART = (KeyError, ValueError, HttpProcessingError)
"""What aiohttp's multipart reader raises on a body that is not what its Content-Type says (no
boundary, a part whose headers do not parse, …): the caller's to fix, never a 500."""


def _malformed(exc: BaseException) -> HttpProblem:
    detail = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
    return HttpProblem(
        422,
        [
            ApiError(
                ErrorCode.InvalidFormat,
                f"The multipart body is malformed ({detail.strip()[:200]}); send the file as "
                "-F file=@data.csv, or its bytes as the body.",
                field="file",
            )
        ],
    )


async def _file_part(request: web.Request) -> Any:
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            raise problem(
                422,
                ErrorCode.MissingRequiredField,
                "The multipart body has no field named 'file'; send the file as -F file=@data.csv.",
            )
        if getattr(part, "name", None) == "file":
            return part
        await part.release()


def _disposition_name(request: web.Request) -> str | None:
    header = request.headers.get("Content-Disposition", "")
    for piece in header.split(";"):
        name, _, value = piece.strip().partition("=")
        if name.lower() == "filename" and value:
            return value.strip('"')
    return None


async def _stream_to_disk(
    read_block: Callable[[], Awaitable[bytes]], path: Path, max_bytes: int
) -> tuple[str, int]:
    """Copy the body to ``path`` in ~1 MiB writes; hashing and writing run off the event loop."""
    digest = hashlib.sha256()
    size = 0
    pending = bytearray()
    with path.open("wb") as out:
        while block := await read_block():
            size += len(block)
            if size > max_bytes:
                raise _too_large(max_bytes)
            pending += block
            if len(pending) >= BLOCK_BYTES:
                await asyncio.to_thread(_write, out, digest, bytes(pending))
                pending.clear()
        await asyncio.to_thread(_write, out, digest, bytes(pending), True)
    return digest.hexdigest(), size


def _write(out: IO[bytes], digest: Any, data: bytes, last: bool = False) -> None:
    digest.update(data)
    out.write(data)
    if last:
        out.flush()
        os.fsync(out.fileno())


# --- profile and delete ---------------------------------------------------------------------------


async def get_file(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    file_id = id_or_404(request.match_info["file_id"], "File")
    async with services.engine.connect() as conn:
        row = await file_store.get_file(conn, tenant_id, file_id)
    if row is None or file_store.file_state(row, datetime.now(UTC)) is not FileState.LIVE:
        raise problem(404, ErrorCode.NotFound, f"File {file_id} does not exist (or expired).")
    return web.json_response(file_object(row))


async def delete_file(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    file_id = id_or_404(request.match_info["file_id"], "File")
    async with services.engine.begin() as conn:
        deleted = await file_store.mark_deleted(conn, tenant_id, file_id)
    if not deleted:
        raise problem(404, ErrorCode.NotFound, f"File {file_id} does not exist.")
    await purge_once(services)  # the bytes go now, unless an import is still reading them
    return web.Response(status=204)


# --- purge ----------------------------------------------------------------------------------------


async def purge_once(services: Services) -> int:
    store = file_store_of(services)
    async with services.engine.begin() as conn:
        return await file_store.purge_files(conn, store)


async def _purge_forever(services: Services) -> None:
    interval = services.settings.file_cleanup_interval_seconds
    store = file_store_of(services)
    while True:
        try:
            purged = await purge_once(services)
            purged += await asyncio.to_thread(store.remove_stale_uploads)
            if purged:
                log.info("purged %s expired or deleted files", purged)
            await _purge_before_images(services)
        except Exception:
            log.exception("file purge failed; trying again in %s s", interval)
        await asyncio.sleep(interval)  # a timer, not synchronisation


async def _purge_before_images(services: Services) -> None:
    """Before-images of jobs ended longer ago than the revert retention (:mod:`api.revert`)."""
    async with services.engine.begin() as conn:
        purged = await before_images.purge_expired(conn, services.settings.revert_retention_seconds)
    if purged:
        log.info("purged %s expired before-images", purged)


async def purge_ctx(app: web.Application) -> AsyncIterator[None]:
    """Expired temporary files, deleted files and expired before-images are purged periodically
    while the gateway runs."""
    task = asyncio.create_task(_purge_forever(app[SERVICES]), name="file-purge")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def add_routes(app: web.Application) -> None:
    app.router.add_post(FILES_PATH, upload_file)
    app.router.add_get(FILES_PATH + "/{file_id}", get_file)
    app.router.add_delete(FILES_PATH + "/{file_id}", delete_file)
    app.cleanup_ctx.append(purge_ctx)
