"""Read-only views of the ``jobs`` table for the gateway: pages of a tenant's jobs, and the
rows its live view reads once per tick for every event stream (:mod:`api.live_jobs`).

The table's writes, and its one column list, are in :mod:`storage.jobs`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.job_view import encode_cursor
from storage.connection import Connection
from storage.jobs import COLUMNS, Job, all_rows


@dataclass(frozen=True)
class JobPage:
    rows: Sequence[Job]
    next_cursor: str | None


async def list_jobs(
    conn: Connection,
    tenant_id: str,
    *,
    status: str | None,
    entity: str | None,
    limit: int,
    cursor: tuple[datetime, str] | None,
    parent_job_id: str | None = None,
) -> JobPage:
    """The tenant's jobs, newest first, ``limit`` at a time (only a job's retries, if asked)."""
    conditions = ["tenant_id = %(tenant)s"]
    params: dict[str, Any] = {"tenant": tenant_id, "limit": limit + 1}
    if status:
        conditions.append("status = %(status)s")
        params["status"] = status
    if entity:
        conditions.append("entity = %(entity)s")
        params["entity"] = entity
    if parent_job_id:
        conditions.append("parent_job_id = %(parent)s::uuid")
        params["parent"] = parent_job_id
    if cursor:
        conditions.append("(created_at, job_id) < (%(created)s, %(job)s::uuid)")
        params["created"], params["job"] = cursor
    rows = await all_rows(
        conn,
        f"SELECT {COLUMNS} FROM jobs WHERE {' AND '.join(conditions)} "
        "ORDER BY created_at DESC, job_id DESC LIMIT %(limit)s",
        params,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["job_id"])
    return JobPage(rows, next_cursor)


async def watched_jobs(
    conn: Connection, changed: Collection[str], *, jobs: Collection[str], tenants: Collection[str]
) -> list[Job]:
    """The rows of the ``changed`` jobs that someone watches: by job id, or by tenant."""
    return await all_rows(
        conn,
        f"SELECT {COLUMNS} FROM jobs WHERE job_id = ANY(%(changed)s::uuid[]) "
        "AND (job_id = ANY(%(jobs)s::uuid[]) OR tenant_id = ANY(%(tenants)s::uuid[])) "
        "ORDER BY updated_at",
        {"changed": list(changed), "jobs": list(jobs), "tenants": list(tenants)},
    )


async def changed_since(conn: Connection, tenant_id: str, since: datetime, limit: int) -> list[Job]:
    """The tenant's jobs changed at or after ``since``, oldest change first (a stream resuming)."""
    return await all_rows(
        conn,
        f"SELECT {COLUMNS} FROM jobs WHERE tenant_id = %s AND updated_at >= %s "
        "ORDER BY updated_at LIMIT %s",
        [tenant_id, since, limit],
    )
