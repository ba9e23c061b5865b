"""The gateway's live view of jobs: one reader of job rows shared by every event stream.

Whoever changes a job row NOTIFYs :data:`storage.jobs.JOB_CHANGED_CHANNEL` with the job id
(:mod:`storage.jobs`, the row's one owner). Here those ids are only collected; every
:data:`TICK_SECONDS` one query reads the rows of the changed jobs that some stream watches — by
job id or by tenant — and each stream gets the latest :class:`JobUpdate` of each job it
watches. However many clients listen, the database sees at most one read per tick per gateway,
and each job at most one update per tick (4 a second).

Rates come from one :class:`domain.progress.ProgressMeter` per job, fed at each reading.
After the listening connection was lost, every watched job is read again, and the jobs of
watched tenants changed since the loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.notifications import NotificationListener
from bulk_ingest.metrics import LIVE_VIEW_READS
from domain.job_view import event_id, job_object, progress_body
from domain.jobs import JobStatus, is_terminal
from domain.progress import ProgressMeter, eta_seconds
from storage import job_listing, ledger
from storage.jobs import JOB_CHANGED_CHANNEL, Job

log = logging.getLogger(__name__)
TICK_SECONDS = 0.25
RESUME_LIMIT = 1000
"""Jobs a resuming tenant stream is sent at most (the most recently changed are the last)."""


@dataclass(frozen=True)
class JobUpdate:
    """A job as one reading found it, in the shapes the streams send."""

    job_id: str
    tenant_id: str
    event_id: int
    status: str
    progress: dict[str, Any]
    listed: dict[str, Any]
    """The job object as ``GET /jobs`` lists it (no ``errors``): a tenant stream's ``job`` event."""
    status_changed: bool
    full: dict[str, Any] | None = None
    """The job object with its first errors; read once for a terminal job with watchers."""

    @property
    def terminal(self) -> bool:
        return is_terminal(JobStatus(self.status))


class StreamClosed(Exception):
    """The gateway is shutting down: the stream ends."""


@dataclass(eq=False)
class Subscription:
    """One stream's mailbox: the latest update of each job, taken all at once."""

    _pending: dict[str, JobUpdate] = field(default_factory=dict)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def offer(self, update: JobUpdate) -> None:
        earlier = self._pending.get(update.job_id)
        if earlier is not None and earlier.status_changed and not update.status_changed:
            update = replace(update, status_changed=True)  # a status change is never lost
        self._pending[update.job_id] = update
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def take(self, timeout: float) -> list[JobUpdate]:
        """What arrived, oldest change first; empty after ``timeout``; StreamClosed at shutdown."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        if self._closed:
            raise StreamClosed
        self._ready.clear()
        updates, self._pending = list(self._pending.values()), {}
        return sorted(updates, key=lambda u: u.event_id)


@dataclass
class _Known:
    status: str
    meter: ProgressMeter = field(default_factory=ProgressMeter)


class LiveJobs:
    def __init__(self, engine: AsyncEngine, listener: NotificationListener) -> None:
        self._engine = engine
        self._by_job: dict[str, set[Subscription]] = defaultdict(set)
        self._by_tenant: dict[str, set[Subscription]] = defaultdict(set)
        self._changed: set[str] = set()
        self._known: dict[str, _Known] = {}
        self._lost_at: datetime | None = None
        self._task: asyncio.Task[None] | None = None
        listener.on(JOB_CHANGED_CHANNEL, self._note_change)
        listener.on_reconnect(self._caught_up)

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick_forever(), name="live-jobs")

    async def stop(self) -> None:
        """End every stream (the gateway is shutting down), then the ticks."""
        for subscription in self._subscriptions():
            subscription.close()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.asynccontextmanager
    async def watch_job(self, job_id: str) -> AsyncIterator[Subscription]:
        """Updates of one job; the next tick reads it, so nothing between the caller's own
        reading and this subscription is missed."""
        subscription = Subscription()
        self._by_job[job_id].add(subscription)
        self._changed.add(job_id)
        try:
            yield subscription
        finally:
            self._forget(self._by_job, job_id, subscription)

    @contextlib.asynccontextmanager
    async def watch_tenant(self, tenant_id: str) -> AsyncIterator[Subscription]:
        subscription = Subscription()
        self._by_tenant[tenant_id].add(subscription)
        try:
            yield subscription
        finally:
            self._forget(self._by_tenant, tenant_id, subscription)

    async def changed_since(self, tenant_id: str, moment: datetime) -> list[JobUpdate]:
        """A resuming tenant stream's catch-up: the tenant's jobs changed since ``moment``."""
        async with self._engine.connect() as conn:
            rows = await job_listing.changed_since(conn, tenant_id, moment, RESUME_LIMIT)
        return [_update(row, self._known.get(row["job_id"]), status_changed=True) for row in rows]

    # --- ticks ------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: the changes wait for the next tick
                log.warning("live job view could not read the jobs (%s)", exc)

    async def _tick(self) -> None:
        if not (self._by_job or self._by_tenant):
            self._changed.clear()
            self._known.clear()
            return
        changed, lost_at = self._changed, self._lost_at
        if not changed and lost_at is None:
            return
        self._changed, self._lost_at = set(), None
        try:
            updates = await self._read(changed, lost_at)
        except BaseException:
            self._changed |= changed
            self._lost_at = lost_at
            raise
        for update in updates:
            self._deliver(update)

    async def _read(self, changed: set[str], lost_at: datetime | None) -> list[JobUpdate]:
        LIVE_VIEW_READS.inc()
        async with self._engine.connect() as conn:
            rows = await job_listing.watched_jobs(
                conn, changed, jobs=self._by_job.keys(), tenants=self._by_tenant.keys()
            )
            if lost_at is not None:
                for tenant_id in list(self._by_tenant):
                    rows += await job_listing.changed_since(conn, tenant_id, lost_at, RESUME_LIMIT)
            return [await self._updated(conn, row) for row in _newest_of_each(rows)]

    async def _updated(self, conn: AsyncConnection, row: Job) -> JobUpdate:
        job_id = row["job_id"]
        known = self._known.get(job_id)
        status_changed = known is None or known.status != row["status"]
        if known is None:
            known = self._known[job_id] = _Known(row["status"])
        known.status = row["status"]
        known.meter.add(asyncio.get_running_loop().time(), row["processed"])
        update = _update(row, known, status_changed=status_changed)
        if update.terminal:
            del self._known[job_id]
            if self._by_job.get(job_id):
                failures = await ledger.first_failures(conn, job_id) if row["failed"] else []
                update = replace(update, full=job_object(row, failures))
        return update

    def _deliver(self, update: JobUpdate) -> None:
        for subscription in self._by_job.get(update.job_id, ()):
            subscription.offer(update)
        for subscription in self._by_tenant.get(update.tenant_id, ()):
            subscription.offer(update)

    # --- bookkeeping ------------------------------------------------------------------------

    def _note_change(self, job_id: str) -> None:
        self._changed.add(job_id)

    def _caught_up(self) -> None:
        """The listener (re)connected: what changed meanwhile is read at the next tick."""
        self._changed |= set(self._by_job)
        self._lost_at = datetime.now(UTC) - timedelta(seconds=5)

    def _subscriptions(self) -> Iterable[Subscription]:
        for watchers in (*self._by_job.values(), *self._by_tenant.values()):
            yield from watchers

    @staticmethod
    def _forget(
        watchers: dict[str, set[Subscription]], key: str, subscription: Subscription
    ) -> None:
        watchers[key].discard(subscription)
        if not watchers[key]:
            del watchers[key]


def _newest_of_each(rows: list[Job]) -> list[Job]:
    by_id = {row["job_id"]: row for row in sorted(rows, key=lambda r: r["updated_at"])}
    return list(by_id.values())


def _update(row: Job, known: _Known | None, *, status_changed: bool) -> JobUpdate:
    rate = _rate(row, known)
    eta = (
        None
        if is_terminal(JobStatus(row["status"]))
        else eta_seconds(row["total"], row["processed"], rate)
    )
    return JobUpdate(
        job_id=row["job_id"],
        tenant_id=row["tenant_id"],
        event_id=event_id(row["updated_at"]),
        status=row["status"],
        progress=progress_body(row, rate, eta),
        listed=job_object(row, []),
        status_changed=status_changed,
    )


def _rate(row: Job, known: _Known | None) -> float:
    """Records per second: over the last seconds while it runs, its average once it ended."""
    started, processed = row["started_at"], row["processed"]
    ended = row["completed_at"] if is_terminal(JobStatus(row["status"])) else None
    if started is None:
        return 0.0
    if ended is not None or known is None:
        seconds = ((ended or row["updated_at"]) - started).total_seconds()
        return processed / seconds if seconds > 0 else 0.0
    return known.meter.rate_or_average(processed, (row["updated_at"] - started).total_seconds())
