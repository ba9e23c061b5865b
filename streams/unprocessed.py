"""Records the service gives up on still get exactly one outcome (design.md §8).

- A dead-lettered chunk or record batch fails the records it carried as ``RecordNotProcessed``
  — only when the job row agrees with the message (a forged message naming another tenant's
  job leaves that job untouched); the job then ends normally once its other records are in.
- A job that stopped receiving chunks or rows (or that the gateway abandoned) fails the
  records that never arrived as ``RecordNotReceived`` and ends ``INTERNAL_FAILURE``;
  an import whose file became unreadable fails the rows it had sent but that were not yet
  processed as ``RecordNotProcessed``.
- A job whose cancel was requested skips the records not written yet as ``JobCancelled`` and
  ends ``CANCELLED``.

Each is one transaction holding the job row's lock (persist batches of that job hold it for
share, so they never interleave): outcomes go into the ledger first (never over an existing
one, so a late record changes nothing), counted in a fill part marked ``pending_events``. Then
the outcome events are produced, the aggregator is nudged (it publishes the job's terminal
event), and the part is marked announced. A crash in between leaves the part pending, and
:meth:`UnprocessedRecords.announce_pending` (run by the sweeper) finishes the announcement.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.metrics import count_records
from domain.errors import ErrorCode
from domain.job_options import error_rate_reason
from domain.jobs import JobStatus, RecordStatus
from storage import jobs as job_store
from storage import ledger
from storage.connection import StageConnection
from storage.jobs import JobRow
from storage.ledger import FillMessage, UnprocessedRecord
from streams.events import Announcer

log = logging.getLogger("bulk_ingest.unprocessed")


@dataclass(frozen=True)
class _Ending:
    """How a job the service stops is ended: its missing records' code, the words of their
    messages and of the job's ``failure_reason``, the job's status and theirs."""

    code: ErrorCode
    text: str
    reason: str
    status: JobStatus | None  # None: by the counts (FAILED if none succeeded)
    outcome: RecordStatus


CANCELLED = _Ending(
    ErrorCode.JobCancelled,
    "was not processed: its job was cancelled",
    "The job was cancelled; records not written by then were skipped as JobCancelled.",
    JobStatus.CANCELLED,
    RecordStatus.SKIPPED,
)


ERROR_RATE = _Ending(
    ErrorCode.ErrorRateExceeded,
    "was not processed: its job was stopped by the error-rate breaker",
    "",  # error_rate_reason, from the counts when it tripped
    None,
    RecordStatus.SKIPPED,
)


class UnprocessedRecords:
    """Shared by the validate, persist and import stages and the sweeper, which call it
    concurrently: every transaction goes through :meth:`StageConnection.transaction`."""

    def __init__(
        self,
        libpq_url: str,
        producer: AsyncProducer,
        announcer: Announcer,
        labels: Mapping[str, str],
    ) -> None:
        self._connection = StageConnection(libpq_url)
        self._producer = producer
        self._announcer = announcer
        self._labels = labels

    async def close(self) -> None:
        await self._connection.close()

    async def fail_records(
        self,
        job_id: str,
        accepts: Callable[[JobRow], bool],
        records: Sequence[UnprocessedRecord],
        text: str,
        where: str,
        *,
        chunk_index: int | None = None,
    ) -> int:
        """Fail these records ``RecordNotProcessed`` if the job is live and ``accepts`` its row.

        ``text`` completes "<Label> at index <i> ..." in each message; ``where`` names the
        message that carried them (it qualifies the fill part); ``chunk_index``, for records of
        a request chunk, spares the indexes other admitted chunks of the job carry. The number
        of records failed.
        """
        code = ErrorCode.RecordNotProcessed.value
        part_id = ledger.fill_part_id(code, where)
        async with self._connection.transaction() as conn:
            job = await job_store.lock_job(conn, job_id)
            if job is None or job.terminal or not accepts(job):
                return 0
            wanted = [
                r for r in records if r.index >= 0 and (job.total == 0 or r.index < job.total)
            ]
            message = self._message(job, text)
            failed = await ledger.fill(
                conn, job_id, wanted, code, message, part_id, chunk_index=chunk_index
            )
        count_records({(job.entity, RecordStatus.FAILED.value): failed})
        log.warning("job %s: %d records failed %s (%s)", job_id, failed, code, where)
        await self.announce(job_id, part_id)
        return failed

    async def end_incomplete(
        self,
        job_id: str,
        code: ErrorCode,
        text: str,
        reason: str,
        *,
        total: int | None = None,
        only_if_missing: bool = False,
    ) -> bool:
        """Fail every record without an outcome with ``code`` and end the job INTERNAL_FAILURE.

        A job whose total is not known yet (an import still reading its file) takes ``total``
        (the rows it sent), or else one past the highest index with an outcome. With
        ``only_if_missing`` a job whose records all have an outcome is not ended: it is complete,
        only its last progress nudge is late, and the aggregator is nudged to give it the status
        its outcomes earn. True when the job ended.
        """
        return await self._end(
            job_id,
            _Ending(code, text, reason, JobStatus.INTERNAL_FAILURE, RecordStatus.FAILED),
            total=total,
            only_if_missing=only_if_missing,
        )

    async def cancel(self, job_id: str, *, total: int | None = None) -> bool:
        """Skip every record without an outcome as ``JobCancelled`` and end the job CANCELLED
        — even when none is left: the cancel was accepted. ``total`` as for
        :meth:`end_incomplete`. True when the job ended (False: it was terminal already)."""
        return await self._end(job_id, CANCELLED, total=total, only_if_missing=False)

    async def stop_for_error_rate(self, job_id: str, *, total: int | None = None) -> bool:
        """The error-rate breaker tripped: skip every record without an outcome as
        ``ErrorRateExceeded`` and end the job ``FAILED`` if none succeeded, else
        ``COMPLETED_WITH_ERRORS``, its ``failure_reason`` giving the rate and the threshold.
        ``total`` as for :meth:`end_incomplete`. True when the job ended."""
        return await self._end(job_id, ERROR_RATE, total=total, only_if_missing=False)

    async def _end(
        self, job_id: str, ending: _Ending, *, total: int | None, only_if_missing: bool
    ) -> bool:
        code = ending.code.value
        part_id = ledger.fill_part_id(code)
        async with self._connection.transaction() as conn:
            job = await job_store.lock_job(conn, job_id)
            if job is None or job.terminal:
                return False
            known = job.total if job.total > 0 else total
            if known is None:
                known = await _ledger_extent(conn, job_id)
            status, reason = await _status_and_reason(conn, job, ending)
            message = self._message(job, ending.text)
            filled = await ledger.fill_all_missing(
                conn, job_id, known, code, message, status=ending.outcome
            )
            complete = filled == 0 and job.total > 0
            if not (complete and only_if_missing):
                await job_store.end_job(
                    conn,
                    job_id,
                    status,
                    reason=reason,
                    total=known if job.total != known else None,
                )
        count_records({(job.entity, ending.outcome.value): filled})
        if complete and only_if_missing:
            log.info("job %s has every outcome; nudging the aggregator", job_id)
            await self._producer.send_all(
                [self._announcer.progress_nudge(job_id, job.tenant_id, "sweeper")]
            )
            return False
        log.warning("job %s ended %s: %s", job_id, status.value, reason)
        await self.announce(job_id, part_id)
        return True

    async def announce(self, job_id: str, part_id: str) -> None:
        """Produce the fill part's outcome events, nudge the aggregator, mark it announced."""
        async with self._connection.transaction() as conn:
            job = await job_store.job_row(conn, job_id)
            if job is None:
                return
            tenant_id, entity = job.tenant_id, job.entity
            code = ledger.code_of_fill_part(part_id)
            silent = job.options.dry_run or not job.options.outcome_events
            async for page in ledger.filled_outcomes(conn, job_id, tenant_id, entity, code):
                if not silent:
                    await self._producer.send_all(self._announcer.outcome_messages(page))
            await self._producer.send_all(
                [self._announcer.progress_nudge(job_id, tenant_id, part_id)]
            )
            await ledger.mark_announced(conn, job_id, part_id)

    async def announce_pending(self) -> int:
        """Finish announcements a crash interrupted; the number of parts announced."""
        async with self._connection.transaction() as conn:
            pending = await ledger.pending_fill_parts(conn)
        for job_id, part_id in pending:
            await self.announce(job_id, part_id)
        return len(pending)

    def _message(self, job: JobRow, text: str) -> FillMessage:
        return FillMessage(self._labels.get(job.entity, "Record"), text)


async def _status_and_reason(conn: Any, job: JobRow, ending: _Ending) -> tuple[JobStatus, str]:
    """How the job ends: the ending's status and reason, or (the breaker) from the counts of
    the outcomes stored before the fill."""
    if ending.status is not None:
        return ending.status, ending.reason
    successful, failed, skipped = await job_store.counted(conn, job.job_id)
    processed = successful + failed + skipped
    status = JobStatus.COMPLETED_WITH_ERRORS if successful else JobStatus.FAILED
    return status, error_rate_reason(job.options, processed, failed)


async def _ledger_extent(conn: Any, job_id: str) -> int:
    cursor = await conn.execute(
        "SELECT coalesce(max(index) + 1, 0) FROM record_outcomes WHERE job_id = %s", [job_id]
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0
