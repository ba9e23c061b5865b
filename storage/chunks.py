"""Admitting a request chunk: its job row (registered if new) and its bookkeeping.

A chunk published straight to Kafka registers its job (source ``kafka``) when its tenant exists.
The chunk is then checked against the job row and against the chunks the job took before
(``job_chunks``; the rules are in :mod:`domain.chunks`) and recorded there, with the time it
arrived (the incomplete-job sweeper reads it).

Two statements, no lock on the job row: this is on the critical path of every job (one job's
chunks are validated one after the other), and nothing needs one. Chunks of one job arrive on
one partition, so one worker admits them in order; a job being ended concurrently makes a chunk
it admitted harmless (the persist stage skips records of a terminal job); and two zombie
consumers admitting overlapping chunks at once only make the persist stage reconcile through
the ledger, which counts every record once.
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
from domain.jobs import JobStatus
from storage.jobs import JobRow


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
    already known to contradict itself (it is refused, but its job is registered and named).

    ``conn`` is in autocommit mode: each statement is its own transaction."""
    found = await _register_and_read(conn, chunk)
    if found is None:
        return Admission(Verdict.UNKNOWN_TENANT, f"tenant {chunk.tenant_id} does not exist")
    job, earlier = found
    mismatch = job_mismatch(chunk, identity_of(job))
    if mismatch is not None:
        return Admission(Verdict.MISMATCH, mismatch)
    if job.terminal:
        return Admission(Verdict.TERMINAL, f"job {job.job_id} is {job.status}", job)
    if not consistent:
        return Admission(Verdict.BAD_BOOKKEEPING, "", job)
    problem = bookkeeping_problem(chunk, earlier)
    if problem is not None:
        return Admission(Verdict.BAD_BOOKKEEPING, problem, job)
    if not is_redelivery(chunk, earlier):
        await _record(conn, chunk.job_id, chunk.range)
    return Admission(Verdict.ADMITTED, "", job)


_REGISTER_AND_READ = """
WITH tenant AS (SELECT tenant_id FROM tenants WHERE tenant_id = %(tenant)s),
registered AS (
    INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total, webhook_url)
    SELECT %(job)s, tenant_id, %(entity)s, %(operation)s, 'kafka', 'READY', %(total)s,
           %(webhook)s FROM tenant
    ON CONFLICT (job_id) DO NOTHING
    RETURNING job_id::text, tenant_id::text, entity, operation, source, status, total
),
job AS (
    SELECT * FROM registered
    UNION ALL
    SELECT job_id::text, tenant_id::text, entity, operation, source, status, total
    FROM jobs WHERE job_id = %(job)s AND NOT EXISTS (SELECT 1 FROM registered)
)
SELECT (SELECT count(*) FROM tenant) > 0, job.*,
       (SELECT array_agg(ARRAY[chunk_index, chunk_count, first_index, record_count])
        FROM job_chunks WHERE job_chunks.job_id = %(job)s)
FROM (SELECT 1) AS one LEFT JOIN job ON true
"""


async def _register_and_read(
    conn: psycopg.AsyncConnection[Any], chunk: RequestChunk
) -> tuple[JobRow, list[ChunkRange]] | None:
    """The job row (inserted if new) and its chunks; None when the tenant does not exist."""
    cursor = await conn.execute(
        _REGISTER_AND_READ,
        {
            "tenant": chunk.tenant_id,
            "job": chunk.job_id,
            "entity": chunk.entity,
            "operation": chunk.operation.value,
            "total": chunk.total,
            "webhook": chunk.webhook_url,
        },
    )
    row = await cursor.fetchone()
    assert row is not None
    tenant_exists, job_id, tenant_id, entity, operation, source, status, total, chunks = row
    if not tenant_exists or job_id is None:
        return None
    job = JobRow(job_id, tenant_id, entity, operation, source, JobStatus(status), int(total))
    return job, [ChunkRange(*(int(v) for v in taken)) for taken in chunks or ()]


async def _record(conn: psycopg.AsyncConnection[Any], job_id: str, taken: ChunkRange) -> None:
    await conn.execute(
        "INSERT INTO job_chunks (job_id, chunk_index, chunk_count, first_index, record_count) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, chunk_index) DO NOTHING",
        [job_id, taken.chunk_index, taken.chunk_count, taken.first_index, taken.record_count],
    )
