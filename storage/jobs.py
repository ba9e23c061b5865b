"""Job rows as the gateway and the workers read and write them.

Two driver styles meet here for now: the gateway's SQLAlchemy Core, the workers' psycopg.
:func:`end_job` is the one way to make a job terminal outside the aggregator's progress, guarded
by :func:`domain.jobs.allowed_transition`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.jobs import JobStatus, allowed_transition, is_terminal
from storage.db import hash_api_key
from storage.tables import api_keys, jobs, record_outcomes, tenants

JOB_TERMINAL_CHANNEL = "bulk_ingest_job_terminal"
MAX_LISTED_ERRORS = 100


@dataclass(frozen=True)
class NewJob:
    job_id: str
    tenant_id: str
    entity: str
    operation: str
    source: str
    total: int
    webhook_url: str | None
    idempotency_key: str | None = None
    request_hash: str | None = None
    status: str = JobStatus.PENDING


async def tenant_for_api_key(engine: AsyncEngine, api_key: str) -> str | None:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(api_keys.c.tenant_id).where(
                api_keys.c.key_hash == hash_api_key(api_key), api_keys.c.revoked_at.is_(None)
            )
        )
        return result.scalar_one_or_none()


async def webhook_secret(conn: AsyncConnection, tenant_id: str) -> str | None:
    result = await conn.execute(
        select(tenants.c.webhook_secret).where(tenants.c.tenant_id == tenant_id)
    )
    return result.scalar_one_or_none()


async def insert_job(conn: AsyncConnection, job: NewJob) -> None:
    await conn.execute(insert(jobs).values(**job.__dict__))


async def job_by_idempotency_key(
    conn: AsyncConnection, tenant_id: str, key: str
) -> RowMapping | None:
    result = await conn.execute(
        select(jobs).where(jobs.c.tenant_id == tenant_id, jobs.c.idempotency_key == key)
    )
    return result.mappings().one_or_none()


async def get_job(
    conn: AsyncConnection, job_id: str, tenant_id: str | None = None
) -> RowMapping | None:
    query = select(jobs).where(jobs.c.job_id == job_id)
    if tenant_id is not None:
        query = query.where(jobs.c.tenant_id == tenant_id)
    return (await conn.execute(query)).mappings().one_or_none()


async def mark_ready(conn: AsyncConnection, job_id: str) -> None:
    await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.PENDING)
        .values(status=JobStatus.READY, updated_at=func.now())
    )


async def abandon_job(conn: AsyncConnection, job_id: str, reason: str) -> None:
    """The gateway could not publish the job: hand it to the incomplete-job sweeper.

    The job stays ``PENDING`` (its records may be half published) until a worker's sweeper fails
    the records that never arrived as ``RecordNotReceived`` and ends it ``INTERNAL_FAILURE``;
    its ``Idempotency-Key`` is released at once, so the client's retry creates a new job.
    """
    await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status == JobStatus.PENDING)
        .values(
            abandoned_at=func.now(),
            failure_reason=reason,
            idempotency_key=None,
            updated_at=func.now(),
        )
    )


async def first_failures(
    conn: AsyncConnection, job_id: str, limit: int = MAX_LISTED_ERRORS
) -> list[RowMapping]:
    result = await conn.execute(
        select(
            record_outcomes.c.index,
            record_outcomes.c.key,
            record_outcomes.c.error_code,
            record_outcomes.c.error_field,
            record_outcomes.c.error_message,
            record_outcomes.c.line,
        )
        .where(record_outcomes.c.job_id == job_id, record_outcomes.c.status == "FAILED")
        .order_by(record_outcomes.c.index)
        .limit(limit)
    )
    return list(result.mappings())


async def all_outcomes(conn: AsyncConnection, job_id: str) -> list[RowMapping]:
    result = await conn.execute(
        select(record_outcomes)
        .where(record_outcomes.c.job_id == job_id)
        .order_by(record_outcomes.c.index)
    )
    return list(result.mappings())


@dataclass(frozen=True)
class JobPage:
    rows: Sequence[RowMapping]
    next_cursor: str | None


def encode_cursor(created_at: datetime, job_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    padded = cursor + "=" * (-len(cursor) % 4)
    created_at, job_id = json.loads(base64.urlsafe_b64decode(padded))
    return datetime.fromisoformat(created_at), str(job_id)


async def list_jobs(
    conn: AsyncConnection,
    tenant_id: str,
    *,
    status: str | None,
    entity: str | None,
    limit: int,
    cursor: tuple[datetime, str] | None,
) -> JobPage:
    query = select(jobs).where(jobs.c.tenant_id == tenant_id)
    if status:
        query = query.where(jobs.c.status == status)
    if entity:
        query = query.where(jobs.c.entity == entity)
    if cursor:
        created_at, job_id = cursor
        query = query.where(
            or_(
                jobs.c.created_at < created_at,
                and_(jobs.c.created_at == created_at, jobs.c.job_id < job_id),
            )
        )
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.job_id.desc()).limit(limit + 1)
    rows = list((await conn.execute(query)).mappings())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["job_id"])
    return JobPage(rows, next_cursor)


# --- worker side (psycopg) ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """What the workers need to know of a job to decide whether a message may touch it."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    source: str
    status: JobStatus
    total: int

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)


_JOB_ROW = "job_id::text, tenant_id::text, entity, operation, source, status, total"


async def lock_job(conn: psycopg.AsyncConnection[Any], job_id: str) -> JobRow | None:
    """The job row, locked ``FOR UPDATE`` until the caller's transaction ends: it also waits for
    the persist batches of the job (they hold ``FOR KEY SHARE``), for filling and ending it."""
    cursor = await conn.execute(
        f"SELECT {_JOB_ROW} FROM jobs WHERE job_id = %s FOR UPDATE", [job_id]
    )
    row = await cursor.fetchone()
    return _job_row(row) if row else None


def _job_row(row: Sequence[Any]) -> JobRow:
    job_id, tenant_id, entity, operation, source, status, total = row
    return JobRow(job_id, tenant_id, entity, operation, source, JobStatus(status), int(total))


async def end_job(
    conn: psycopg.AsyncConnection[Any],
    job_id: str,
    status: JobStatus,
    *,
    reason: str | None = None,
    total: int | None = None,
) -> bool:
    """Make a job terminal — the one way to do so outside the aggregator's progress.

    Guarded by the state machine (a terminal job never changes again); the counts are summed
    from ``job_parts`` (the stored outcomes); ``total`` replaces an unknown total (0, a file
    still being read). Gateways waiting on the job are woken when the transaction commits.
    True when the job changed.
    """
    cursor = await conn.execute("SELECT status FROM jobs WHERE job_id = %s FOR UPDATE", [job_id])
    row = await cursor.fetchone()
    if row is None or not allowed_transition(JobStatus(row[0]), status):
        return False
    await conn.execute(
        "UPDATE jobs SET status = %(status)s, failure_reason = coalesce(%(reason)s, "
        "failure_reason), total = coalesce(%(total)s, total), processed = c.successful + "
        "c.failed + c.skipped, successful = c.successful, failed = c.failed, skipped = c.skipped, "
        "started_at = coalesce(started_at, now()), completed_at = now(), updated_at = now() "
        "FROM (SELECT coalesce(sum(successful), 0) AS successful, coalesce(sum(failed), 0) AS "
        "failed, coalesce(sum(skipped), 0) AS skipped FROM job_parts WHERE job_id = %(job_id)s) c "
        "WHERE jobs.job_id = %(job_id)s",
        {"status": status.value, "reason": reason, "total": total, "job_id": job_id},
    )
    await conn.execute("SELECT pg_notify(%s, %s)", [JOB_TERMINAL_CHANNEL, job_id])
    return True
