"""The file store and the ``files`` / ``imports`` tables.

Files live under ``<file_dir>/<tenant_id>/<file_id>``; an upload is written to
``<file_dir>/.uploads/<random>.part`` first and renamed into place once it is profiled and its
row is about to be committed, so a reader never sees half a file. The gateway writes and purges
files; the workers only read them (the directory must be shared by both).

A file is *importable* while it is neither deleted, purged nor past ``expires_at``
(``storage=directory`` files never expire). The purge removes expired and deleted files, except
those a live import still reads; the import creation locks the file row, so an import and the
purge of its file never interleave.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from storage import jobs as job_store
from storage.jobs import LiveImport, NewJob
from storage.rows import Row, as_row, as_row_or_none
from storage.tables import files, imports

UPLOADS = ".uploads"
STALE_UPLOAD_SECONDS = 24 * 3600.0


class FileStore:
    """Where uploaded bytes live on disk; paths in rows are relative to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def upload_path(self) -> Path:
        folder = self.root / UPLOADS
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{uuid.uuid4().hex}.part"

    def place(self, upload: Path, tenant_id: str, file_id: str) -> str:
        """Move a finished upload into place; returns its path relative to the store."""
        relative = f"{tenant_id}/{file_id}"
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(upload, target)
        return relative

    def absolute(self, relative: str) -> Path:
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{relative!r} is outside the file store")
        return path

    def remove(self, relative: str) -> None:
        self.absolute(relative).unlink(missing_ok=True)

    def remove_stale_uploads(self) -> int:
        """Half-written uploads of a gateway that died; returns how many were removed."""
        folder = self.root / UPLOADS
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        removed = 0
        for leftover in folder.glob("*.part") if folder.is_dir() else ():
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


# --- rows (SQLAlchemy Core) ------------------------------------------------------------------


@dataclass(frozen=True)
class NewFile:
    file_id: str
    tenant_id: str
    sha256: str
    size: int
    format: str
    storage: str
    path: str
    filename: str | None
    content_type: str | None
    profile: Mapping[str, Any]
    expires_at: datetime | None


async def insert_file(conn: AsyncConnection, new: NewFile) -> Row:
    result = await conn.execute(insert(files).values(**new.__dict__).returning(files))
    return as_row(result.mappings().one())


class FileState(StrEnum):
    LIVE = "live"
    EXPIRED = "expired"
    DELETED = "deleted"


def file_state(row: Mapping[str, Any], now: datetime) -> FileState:
    if row["deleted_at"] is not None:
        return FileState.DELETED
    expires_at = row["expires_at"]
    if row["purged_at"] is not None or (expires_at is not None and expires_at <= now):
        return FileState.EXPIRED
    return FileState.LIVE


async def get_file(conn: AsyncConnection, tenant_id: str, file_id: str) -> Row | None:
    result = await conn.execute(
        select(files).where(files.c.tenant_id == tenant_id, files.c.file_id == file_id)
    )
    return as_row_or_none(result.mappings().one_or_none())


async def file_by_sha256(conn: AsyncConnection, tenant_id: str, sha256: str) -> Row | None:
    """The tenant's newest upload with these bytes, importable ones first."""
    gone = files.c.deleted_at.is_not(None) | files.c.purged_at.is_not(None)
    result = await conn.execute(
        select(files)
        .where(files.c.tenant_id == tenant_id, files.c.sha256 == sha256)
        .order_by(gone, files.c.created_at.desc())
        .limit(1)
    )
    return as_row_or_none(result.mappings().one_or_none())


async def mark_deleted(conn: AsyncConnection, tenant_id: str, file_id: str) -> bool:
    """Hide the file at once; the purge removes its bytes once no live import reads them."""
    result = await conn.execute(
        update(files)
        .where(
            files.c.tenant_id == tenant_id,
            files.c.file_id == file_id,
            files.c.deleted_at.is_(None),
            files.c.purged_at.is_(None),
        )
        .values(deleted_at=func.now())
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class FileGone:
    state: FileState


async def create_import(
    conn: AsyncConnection,
    job: NewJob,
    *,
    file_id: str,
    exclusive: bool,
    options: Mapping[str, Any],
) -> LiveImport | FileGone | None:
    """Insert the job and its import row, unless blocked; run inside one transaction.

    A transaction-scoped advisory lock per (tenant, entity) makes check-and-create atomic: two
    concurrent exclusive imports cannot both see "nothing running". An exclusive import waits
    for no live import; any import waits for no live exclusive one.
    """
    lock_key = f"bulk-ingest/import/{job.tenant_id}/{job.entity}"
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": lock_key}
    )
    file_row = (
        (
            await conn.execute(
                select(files).where(files.c.file_id == file_id).with_for_update(read=True)
            )
        )
        .mappings()
        .one()
    )
    now = (await conn.execute(select(func.now()))).scalar_one()
    state = file_state(as_row(file_row), now)
    if state is not FileState.LIVE:
        return FileGone(state)
    blocker = await job_store.live_import(
        conn, job.tenant_id, job.entity, exclusive_only=not exclusive
    )
    if blocker is not None:
        return blocker
    await job_store.insert_job(conn, job)
    await conn.execute(
        insert(imports).values(
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            entity=job.entity,
            file_id=file_id,
            exclusive=exclusive,
            options=dict(options),
        )
    )
    return None


async def import_of(conn: AsyncConnection, tenant_id: str, job_id: str) -> Row | None:
    """The import row of the tenant's job (None for another tenant's job or a JSON one)."""
    result = await conn.execute(
        select(imports).where(imports.c.job_id == job_id, imports.c.tenant_id == tenant_id)
    )
    return as_row_or_none(result.mappings().one_or_none())


async def purge_files(conn: AsyncConnection, store: FileStore, limit: int = 100) -> int:
    """Remove the bytes of expired and deleted files no live import reads; returns the count.

    Rows stay (marked ``purged_at``) so an import naming a purged file hears "expired", not
    "unknown". Bytes go before the row is marked: a crash in between only repeats the unlink.
    """
    read_now = await job_store.files_read_by_live_jobs(conn)
    due = (
        select(files.c.file_id, files.c.path)
        .where(
            files.c.purged_at.is_(None),
            files.c.deleted_at.is_not(None) | (files.c.expires_at < func.now()),
            files.c.file_id.not_in(read_now),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    candidates = (await conn.execute(due)).all()
    # An import that committed between the two reads is seen now; one still committing holds
    # its file row (FOR SHARE) and was skipped above.
    still_read = await job_store.files_read_by_live_jobs(
        conn, [str(file_id) for file_id, _ in candidates]
    )
    rows = [(file_id, path) for file_id, path in candidates if str(file_id) not in still_read]
    for _, relative in rows:
        store.remove(relative)
    if rows:
        await conn.execute(
            update(files)
            .where(files.c.file_id.in_([file_id for file_id, _ in rows]))
            .values(purged_at=func.now())
        )
    return len(rows)
