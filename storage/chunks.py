"""Admitting a request chunk: its job row (registered if new), its bookkeeping, in one transaction.

A chunk published straight to Kafka registers its job (source ``kafka``) when its tenant exists.
Then, holding the job row's lock, the chunk is checked against the row and against the chunks
the job took before (``job_chunks``; the rules are in :mod:`domain.chunks`), recorded, and the
job's ``last_chunk_at`` moves (the incomplete-job sweeper reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from domain.chunks import (
    ChunkRange,
    JobIdentity,
    RequestChunk,
    bookkeeping_problem,
    is_redelivery,
    job_mismatch,
)
from storage.jobs import JobRow, lock_job


class Verdict(StrEnum):
    ADMITTED = "admitted"
    TERMINAL = "terminal"  # the job is over; the chunk changes nothing
    UNKNOWN_TENANT = "unknown-tenant"
    MISMATCH = "chunk-mismatch"  # the job row disagrees: someone else's job, or a forged chunk
    BAD_BOOKKEEPING = "invalid-chunk-bookkeeping"  # it contradicts itself or the job's chunks


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    detail: str = ""
    job: JobRow | None = None


def identity_of(job: JobRow) -> JobIdentity:
    return JobIdentity(job.tenant_id, job.entity, job.operation, job.total, job.source)


async def admit_chunk(
    conn: psycopg.AsyncConnection[Any], chunk: RequestChunk, *, consistent: bool = True
) -> Admission:
    """Register the job if new and check the chunk against it; ``consistent=False`` for a chunk
    already known to contradict itself (it is refused, but its job is registered and named)."""
    async with conn.transaction():
        if not await _register(conn, chunk):
            return Admission(Verdict.UNKNOWN_TENANT, f"tenant {chunk.tenant_id} does not exist")
        job = await lock_job(conn, chunk.job_id)
        assert job is not None  # registered above, or there already
        mismatch = job_mismatch(chunk, identity_of(job))
        if mismatch is not None:
            return Admission(Verdict.MISMATCH, mismatch)
        if job.terminal:
            return Admission(Verdict.TERMINAL, f"job {job.job_id} is {job.status}", job)
        if not consistent:
            return Admission(Verdict.BAD_BOOKKEEPING, "", job)
        earlier = await _chunks_of(conn, chunk.job_id)
        problem = bookkeeping_problem(chunk, earlier)
        if problem is not None:
            return Admission(Verdict.BAD_BOOKKEEPING, problem, job)
        if not is_redelivery(chunk, earlier):
            await _record(conn, chunk.job_id, chunk.range)
        return Admission(Verdict.ADMITTED, "", job)


async def _register(conn: psycopg.AsyncConnection[Any], chunk: RequestChunk) -> bool:
    """Insert the job row if it is new; False when the tenant does not exist."""
    cursor = await conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", [chunk.tenant_id])
    if await cursor.fetchone() is None:
        return False
    await conn.execute(
        "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total, "
        "webhook_url, last_chunk_at) VALUES (%s, %s, %s, %s, 'kafka', 'READY', %s, %s, now()) "
        "ON CONFLICT (job_id) DO NOTHING",
        [
            chunk.job_id,
            chunk.tenant_id,
            chunk.entity,
            chunk.operation.value,
            chunk.total,
            chunk.webhook_url,
        ],
    )
    return True


async def _chunks_of(conn: psycopg.AsyncConnection[Any], job_id: str) -> list[ChunkRange]:
    cursor = await conn.execute(
        "SELECT chunk_index, chunk_count, first_index, record_count FROM job_chunks "
        "WHERE job_id = %s",
        [job_id],
    )
    return [ChunkRange(*row) for row in await cursor.fetchall()]


async def _record(conn: psycopg.AsyncConnection[Any], job_id: str, taken: ChunkRange) -> None:
    await conn.execute(
        "INSERT INTO job_chunks (job_id, chunk_index, chunk_count, first_index, record_count) "
        "VALUES (%s, %s, %s, %s, %s)",
        [job_id, taken.chunk_index, taken.chunk_count, taken.first_index, taken.record_count],
    )
    await conn.execute("UPDATE jobs SET last_chunk_at = now() WHERE job_id = %s", [job_id])
