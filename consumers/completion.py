"""What happens when a job reaches a terminal status: its webhook is scheduled, its files written.

The job row in PostgreSQL is the truth (a terminal row never changes again), so the handler
re-reads it instead of trusting the event, and every step is idempotent: the same terminal event
seen twice, or a job found by the sweep after Kafka already delivered it, changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.jobs import JobStatus, is_terminal
from storage import job_sweeps
from storage import jobs as job_store
from storage import webhooks as webhook_store
from storage.reports import ReportStore

log = logging.getLogger(__name__)

SWEEP_GRACE_SECONDS = 30.0  # the Kafka path normally schedules a webhook within a second
SWEEP_BATCH = 200


class CompletionHandler:
    """Runs the completion steps for one job: webhook first (the contract), then the files."""

    def __init__(
        self, engine: AsyncEngine, reports: ReportStore, on_scheduled: Callable[[], None]
    ) -> None:
        self._engine = engine
        self._reports = reports
        self._on_scheduled = on_scheduled

    async def on_terminal(self, job_id: str) -> None:
        async with self._engine.begin() as conn:
            job = await job_store.get_job(conn, job_id)
            if job is None or not is_terminal(JobStatus(job["status"])):
                log.warning("job %s is not terminal in the database; event ignored", job_id)
                return
            scheduled = bool(job["webhook_url"]) and await webhook_store.schedule_webhook(
                conn, job, datetime.now(UTC)
            )
        if scheduled:
            log.info("job %s is %s; webhook scheduled", job_id, job["status"])
            self._on_scheduled()
        await self._reports.ensure(job)


class MissedWebhookSweep:
    """Safety net: schedules webhooks of terminal jobs no terminal event announced.

    A job can end without an event on ``bulk.jobs`` (the gateway marks a job it could not
    publish INTERNAL_FAILURE itself). Every ``interval`` seconds the jobs that finished within
    the retry horizon, with a webhook_url and no delivery, get one.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        interval_seconds: float,
        horizon_seconds: float,
        on_scheduled: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._interval = interval_seconds
        self._horizon = timedelta(seconds=horizon_seconds)
        self._on_scheduled = on_scheduled

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                found = await self.sweep_once(datetime.now(UTC))
                if found:
                    log.warning("sweep scheduled %s webhook(s) no job event announced", found)
                    self._on_scheduled()
            except Exception:
                log.exception("webhook sweep failed; trying again in %ss", self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._interval)

    async def sweep_once(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            missing = await job_sweeps.jobs_missing_delivery(
                conn,
                completed_after=now - self._horizon,
                completed_before=now - timedelta(seconds=SWEEP_GRACE_SECONDS),
                limit=SWEEP_BATCH,
            )
            return sum([await webhook_store.schedule_webhook(conn, job, now) for job in missing])
