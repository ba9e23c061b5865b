"""Admitting a request chunk: its job row (registered if new) and its bookkeeping.

A chunk published straight to Kafka registers its job (source ``kafka``) when its tenant exists.
The chunk is then checked against the job row and against the chunks the job took before
(``job_chunks``; the rules are in :mod:`domain.chunks`) and recorded there, with the time it
arrived (the incomplete-job sweeper reads it).

Two round trips, no lock on the job row: this is on the critical path of every job, and
nothing needs one. The gateway keys one job's chunks by job id (one partition, one worker), but an
external producer may partition as it likes, so chunks of one job can be admitted at the same
time by different workers: chunks that do not overlap (the gateway's) are each checked
and recorded on their own, and two overlapping ones admitted at once (a forged or broken
producer) only make the persist stage reconcile through the ledger, which counts every record
once. A job being ended concurrently makes a chunk it admitted harmless (the persist stage skips
records of a terminal job).
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
from storage import jobs as job_store
from storage.jobs import JobRow, NewJob


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
    return JobIdentity(job.tenant_id, job.entity, job.operation, job.total, job.source, job.options)


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


async def _register_and_read(
    conn: psycopg.AsyncConnection[Any], chunk: RequestChunk
) -> tuple[JobRow, list[ChunkRange]] | None:
    """The job row (inserted if new) and its chunks, in one round trip; None when the tenant
    does not exist."""
    new = NewJob(
        job_id=chunk.job_id,
        tenant_id=chunk.tenant_id,
        entity=chunk.entity,
        operation=chunk.operation.value,
        source="kafka",
        total=chunk.total,
        webhook_url=chunk.webhook_url,
        status=JobStatus.READY,
        options=chunk.options,
    )
    async with conn.pipeline():
        taken = await conn.execute(
            "SELECT chunk_index, chunk_count, first_index, record_count FROM job_chunks "
            "WHERE job_id = %s",
            [chunk.job_id],
        )
        tenant_exists, job = await job_store.register_from_chunk(conn, new)
        earlier = [ChunkRange(*(int(v) for v in row)) for row in await taken.fetchall()]
    if not tenant_exists or job is None:
        return None
    return job, earlier


async def _record(conn: psycopg.AsyncConnection[Any], job_id: str, taken: ChunkRange) -> None:
    await conn.execute(
        "INSERT INTO job_chunks (job_id, chunk_index, chunk_count, first_index, record_count) "
        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (job_id, chunk_index) DO NOTHING",
        [job_id, taken.chunk_index, taken.chunk_count, taken.first_index, taken.record_count],
    )
