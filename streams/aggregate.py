"""The job aggregator: counts → status, mirrored into PostgreSQL and published on ``bulk.jobs``.

Counts are read from ``job_parts`` (written in the same transactions as the outcome ledger), so
they always equal the stored outcomes and a duplicate progress event changes nothing. The Faust
table keeps each job's last published state so a status change is published once; after a crash
between the database commit and the publish, the database's terminal row is re-published.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from bulk_ingest.dead_letters import DeadLetterQueue, Delivery
from bulk_ingest.kafka import AsyncProducer, OutgoingMessage
from domain.codec import AvroCodec
from domain.jobs import JobProgress, JobStatus, is_terminal
from storage.connection import StageConnection
from storage.jobs import JOB_TERMINAL_CHANNEL

_JOB_COLUMNS = (
    "job_id::text, tenant_id::text, entity, operation, source, status, total, processed, "
    "successful, failed, skipped, webhook_url, created_at, started_at, completed_at, updated_at"
)


class JobAggregator:
    def __init__(
        self, libpq_url: str, producer: AsyncProducer, jobs_codec: AvroCodec, jobs_topic: str
    ) -> None:
        self._connection = StageConnection(libpq_url)
        self._producer = producer
        self._codec = jobs_codec
        self._topic = jobs_topic

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
            job = await _locked_job(conn, job_id)
            if job is None:
                return
            if is_terminal(JobStatus(job["status"])):
                saved = job
            else:
                saved = await _advance(conn, job)
        changed = known is None or known["status"] != saved["status"]
        if changed and saved["status"] not in (JobStatus.PENDING, JobStatus.READY):
            await self._publish(saved)
        table[job_id] = {"status": saved["status"], "processed": saved["processed"]}

    async def _publish(self, job: dict[str, Any]) -> None:
        await self._producer.send_all(
            [OutgoingMessage(self._topic, self._codec.encode(job), job["job_id"].encode())]
        )


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

    async def process(self, deliveries: Sequence[Delivery]) -> None:
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


def _job_id(key: bytes | None) -> str | None:
    try:
        return str(uuid.UUID((key or b"").decode()))
    except (UnicodeDecodeError, ValueError):
        return None


async def _locked_job(conn: psycopg.AsyncConnection[Any], job_id: str) -> dict[str, Any] | None:
    cursor = await conn.execute(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE job_id = %s FOR NO KEY UPDATE", [job_id]
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    names = [d.name for d in cursor.description or ()]
    return dict(zip(names, row, strict=True))


async def _advance(conn: psycopg.AsyncConnection[Any], job: dict[str, Any]) -> dict[str, Any]:
    cursor = await conn.execute(
        "SELECT coalesce(sum(successful), 0), coalesce(sum(failed), 0), "
        "coalesce(sum(skipped), 0) FROM job_parts WHERE job_id = %s",
        [job["job_id"]],
    )
    successful, failed, skipped = await cursor.fetchone() or (0, 0, 0)
    before = JobProgress(
        JobStatus(job["status"]),
        job["total"],
        job["processed"],
        job["successful"],
        job["failed"],
        job["skipped"],
    )
    after = before.advance(int(successful), int(failed), int(skipped))
    if after == before:
        return job
    now = datetime.now(UTC)
    changes: dict[str, Any] = {
        **{f.name: getattr(after, f.name) for f in dataclasses.fields(after)},
        "status": after.status.value,
        "updated_at": now,
    }
    if job["started_at"] is None and after.processed > 0:
        changes["started_at"] = now
    if is_terminal(after.status):
        changes["completed_at"] = now
    assignments = ", ".join(f"{column} = %({column})s" for column in changes)
    await conn.execute(
        f"UPDATE jobs SET {assignments} WHERE job_id = %(job_id)s",
        {**changes, "job_id": job["job_id"]},
    )
    if is_terminal(after.status):
        await conn.execute("SELECT pg_notify(%s, %s)", [JOB_TERMINAL_CHANNEL, job["job_id"]])
    return {**job, **changes}
