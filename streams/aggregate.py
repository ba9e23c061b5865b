"""The job aggregator: counts → status, mirrored into PostgreSQL and published on ``bulk.jobs``.

Counts are read from ``job_parts`` (written in the same transactions as the outcome ledger), so
they always equal the stored outcomes and a duplicate progress event changes nothing. A job
whose cancel was requested (``POST /jobs/{id}/cancel`` noted it and nudged) is cancelled here,
by the job row's owner, once its total is known: records not yet written are skipped and the
job ends ``CANCELLED`` (:meth:`streams.unprocessed.UnprocessedRecords.cancel`); an import still
reading its file has no total yet and cancels itself at its next chunk (:mod:`streams.imports`).

The Faust table keeps each job's last published state so a status change is published once;
after a crash between the database commit and the publish, the database's terminal row is
re-published.

The error-rate breaker (``max_error_rate``, ``min_records``) is checked here too, on the counts
just saved: once it trips, the job's records not yet written are skipped as
``ErrorRateExceeded`` and it ends like a cancel, with ``FAILED`` or ``COMPLETED_WITH_ERRORS``
(:meth:`streams.unprocessed.UnprocessedRecords.stop_for_error_rate`); an import still reading
its file is only marked, and its reader stops at its next chunk and ends it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import psycopg

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.metrics import JOBS
from bulk_ingest.topics import Topic
from domain.job_options import error_rate_exceeded, options_from_row
from domain.jobs import JobProgress, JobStatus, is_terminal
from domain.messages import JobEvent
from storage import jobs as job_store
from storage.connection import StageConnection
from storage.jobs import Job

Cancel = Callable[[str], Awaitable[bool]]
"""Skips a job's records not yet written and ends it CANCELLED; True when it ended."""
Stop = Callable[[str], Awaitable[bool]]
"""Skips a job's records not yet written as ErrorRateExceeded and ends it; True when it ended."""


class JobAggregator:
    def __init__(
        self,
        libpq_url: str,
        producer: AsyncProducer,
        jobs: Topic[JobEvent],
        cancel: Cancel,
        stop_for_error_rate: Stop,
    ) -> None:
        self._connection = StageConnection(libpq_url)
        self._producer = producer
        self._jobs = jobs
        self._cancel = cancel
        self._stop_for_error_rate = stop_for_error_rate

    async def close(self) -> None:
        await self._connection.close()

    async def on_progress(self, job_id: str, table: MutableMapping[str, Any]) -> None:
        try:
            await self._on_progress(job_id, table)
        except psycopg.OperationalError:
            await self._connection.discard()
            raise

    async def _on_progress(self, job_id: str, table: MutableMapping[str, Any]) -> None:
        known = table.get(job_id)
        if known is not None and is_terminal(JobStatus(known["status"])):
            return
        conn = await self._connection.get()
        async with conn.transaction():
            job = await job_store.lock_for_progress(conn, job_id)
            if job is None:
                return
            if is_terminal(JobStatus(job["status"])) or _to_cancel(job):
                saved = job  # a job to cancel ends CANCELLED below, whatever its counts say
            else:
                saved = await _advance(conn, job)
            tripped = _breaker_tripped(saved)
            if tripped and saved["total"] == 0:  # an import still reading: its reader ends it
                await job_store.note_error_rate_trip(conn, job_id)
        if _to_cancel(saved) and await self._cancel(job_id):
            return  # ended: the cancel's own nudge brings the terminal row here to publish
        if tripped and saved["total"] > 0 and await self._stop_for_error_rate(job_id):
            return  # ended, as for a cancel
        changed = known is None or known["status"] != saved["status"]
        if changed and saved["status"] not in (JobStatus.PENDING, JobStatus.READY):
            await self._publish(saved)
        table[job_id] = {"status": saved["status"], "processed": saved["processed"]}

    async def _publish(self, job: Job) -> None:
        await self._producer.send_all([self._jobs.message(JobEvent.of_row(job), job["job_id"])])
        JOBS.labels(job["status"]).inc()


class AggregateStage:
    """``bulk.progress`` nudges → the job row and ``bulk.jobs`` (via :class:`JobAggregator`)."""

    name = "aggregate"

    def __init__(
        self,
        aggregator: JobAggregator,
        table: MutableMapping[str, Any],
        dead_letters: DeadLetterQueue,
    ) -> None:
        self._aggregator = aggregator
        self._table = table
        self._dead_letters = dead_letters

    async def handle(self, deliveries: Sequence[Delivery]) -> None:
        for delivery in deliveries:
            job_id = _job_id(delivery.key)
            if job_id is None:
                await self._dead_letters.send(
                    delivery, "invalid-progress", "the message key is not a job id"
                )
                continue
            await self._aggregator.on_progress(job_id, self._table)

    async def after_dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Nothing to end: the job's next nudge, or the sweeper, moves it on."""


def _to_cancel(job: Job) -> bool:
    """A live job whose cancel was requested and whose total is known (an import still reading
    its file, total 0, stops itself)."""
    live = not is_terminal(JobStatus(job["status"]))
    return live and job["cancel_requested_at"] is not None and job["total"] > 0


def _breaker_tripped(job: Job) -> bool:
    """A live job with a breaker whose stored outcomes exceed its error rate."""
    if job["max_error_rate"] is None or is_terminal(JobStatus(job["status"])):
        return False
    if job["error_rate_tripped_at"] is not None and job["total"] == 0:
        return False  # noted already: the import's reader is ending it
    return error_rate_exceeded(options_from_row(job), job["processed"], job["failed"])


def _job_id(key: bytes | None) -> str | None:
    try:
        return str(uuid.UUID((key or b"").decode()))
    except (UnicodeDecodeError, ValueError):
        return None


async def _advance(conn: psycopg.AsyncConnection[Any], job: Job) -> Job:
    """The job as its stored outcomes make it (saved only when that changes anything)."""
    before = JobProgress(
        JobStatus(job["status"]),
        job["total"],
        job["processed"],
        job["successful"],
        job["failed"],
        job["skipped"],
    )
    after = before.advance(*await job_store.counted(conn, job["job_id"]))
    if after == before:
        return job
    return await job_store.save_progress(conn, job, after)
