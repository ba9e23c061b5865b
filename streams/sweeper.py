"""The incomplete-job sweeper: no job stays non-terminal for ever (design.md §8).

Every ``BULK_INGEST_INCOMPLETE_JOB_CHECK_SECONDS`` each worker looks for

- jobs the gateway **abandoned** (it could not publish them and answered ``503``), and
- **idle** jobs: live, with no chunk taken, no row read and no progress for
  ``BULK_INGEST_INCOMPLETE_JOB_SECONDS`` (default 600) — a producer that never sent its last
  chunk, a ``total`` larger than what was sent, a gateway that died mid-publish.

Each such job fails the records that never arrived as ``RecordNotReceived`` (in the ledger
first, so a late chunk changes nothing) and ends ``INTERNAL_FAILURE`` with
``processed == total``. An idle job none of whose records is missing is not incomplete — only
its last progress nudge is late — and the aggregator is nudged instead. Idle jobs are swept
only while the consumer group has read everything on ``bulk.requests``, ``bulk.imports``,
``bulk.records`` and ``bulk.progress``: a job whose messages wait behind a backlog, or on the
partitions of a worker that just died, is slow, not abandoned. The job row's lock makes
concurrent sweepers harmless. The sweeper also finishes announcements a crash interrupted
(:mod:`streams.unprocessed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from domain.errors import ErrorCode
from storage import job_sweeps
from storage.connection import StageConnection
from streams.unprocessed import UnprocessedRecords

log = logging.getLogger("bulk_ingest.sweeper")
BATCH = 50


class IncompleteJobSweeper:
    def __init__(
        self,
        libpq_url: str,
        unprocessed: UnprocessedRecords,
        backlog: Callable[[Iterable[str]], int],
        watched_topics: Iterable[str],
        idle_seconds: float,
    ) -> None:
        self._connection = StageConnection(libpq_url, autocommit=True)
        self._unprocessed = unprocessed
        self._backlog = backlog
        self._watched = tuple(watched_topics)
        self._idle_seconds = idle_seconds

    async def close(self) -> None:
        await self._connection.close()

    async def sweep(self) -> int:
        """One pass; the number of jobs ended."""
        await self._unprocessed.announce_pending()
        ended = 0
        for job_id, reason in await self._abandoned():
            text = "was not received: the gateway could not publish the job"
            ended += await self._end(job_id, text, reason or "the gateway could not publish it")
        idle = await self._idle()
        if idle:
            waiting = await asyncio.to_thread(self._backlog, self._watched)
            if waiting:
                log.info("%d idle jobs wait: %d messages are still to be read", len(idle), waiting)
                return ended
        for job_id in idle:
            seconds = f"{self._idle_seconds:g}"
            text = f"was not received: the job received no chunk or row for {seconds} s"
            reason = (
                f"The job received no chunk or row for {seconds} s (BULK_INGEST_INCOMPLETE_JOB_"
                "SECONDS); the records that never arrived failed as RecordNotReceived."
            )
            ended += await self._end(job_id, text, reason)
        return ended

    async def _end(self, job_id: str, text: str, reason: str) -> int:
        done = await self._unprocessed.end_incomplete(
            job_id, ErrorCode.RecordNotReceived, text, reason, only_if_missing=True
        )
        return int(done)

    async def _abandoned(self) -> list[tuple[str, str | None]]:
        return await job_sweeps.abandoned_jobs(await self._connection.get(), BATCH)

    async def _idle(self) -> list[str]:
        return await job_sweeps.idle_jobs(await self._connection.get(), self._idle_seconds, BATCH)
