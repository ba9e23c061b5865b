"""Job rows and the outcome ledger as the gateway and the aggregator read and write them."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.jobs import TERMINAL_STATUSES, JobStatus
from storage.db import hash_api_key
from storage.tables import api_keys, jobs, record_outcomes, tenants

JOB_TERMINAL_CHANNEL = "bulk_ingest_job_terminal"
MAX_LISTED_ERRORS = 100
_TERMINAL = [str(s) for s in TERMINAL_STATUSES]


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


async def insert_job_if_absent(conn: AsyncConnection, job: NewJob) -> bool:
    """For jobs that arrive straight on Kafka: the first chunk seen registers the job."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    result = await conn.execute(
        pg_insert(jobs).values(**job.__dict__).on_conflict_do_nothing(index_elements=["job_id"])
    )
    return bool(result.rowcount)


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


async def mark_internal_failure(conn: AsyncConnection, job_id: str, reason: str) -> None:
    await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status.not_in(_TERMINAL))
        .values(
            status=JobStatus.INTERNAL_FAILURE,
            failure_reason=reason,
            completed_at=func.now(),
            updated_at=func.now(),
        )
    )
    await notify_terminal(conn, job_id)


async def notify_terminal(conn: AsyncConnection, job_id: str) -> None:
    """Wake gateways waiting on this job (delivered when the transaction commits)."""
    await conn.execute(
        text("SELECT pg_notify(:channel, :job_id)"),
        {
            "channel": JOB_TERMINAL_CHANNEL,
            "job_id": job_id,
        },
    )


async def save_progress(conn: AsyncConnection, job_id: str, values: Mapping[str, Any]) -> bool:
    """Mirror the aggregator's view; a terminal row never changes again."""
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.status.not_in(_TERMINAL))
        .values(**values, updated_at=func.now())
    )
    return bool(result.rowcount)


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
