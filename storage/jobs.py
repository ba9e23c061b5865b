"""The job row: the one module that reads and writes the ``jobs`` table.

Every function speaks plain SQL through psycopg. It takes either a psycopg connection (the
workers') or a SQLAlchemy ``AsyncConnection`` (the gateway's and the consumers'): the latter is
used through its driver connection, inside the caller's transaction. Every status written here
is computed by :mod:`domain.jobs` and guarded by :func:`domain.jobs.allowed_transition`; a job
becomes terminal either through the aggregator's progress (:func:`save_progress`) or through
:func:`end_job`. :func:`notify` is the one place that sends notifications: every change a
watcher sees (created, ready, counts, status) also goes on :data:`JOB_CHANGED_CHANNEL`. Read-only
listings for the gateway are in :mod:`storage.job_listing`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from domain.job_options import NO_OPTIONS, JobOptions, options_from_row
from domain.jobs import TERMINAL_STATUSES, JobProgress, JobStatus, allowed_transition, is_terminal
from storage.connection import Connection, driver

JOB_TERMINAL_CHANNEL = "bulk_ingest_job_terminal"
JOB_CHANGED_CHANNEL = "bulk_ingest_job_changed"
"""Job id only: the job was created, moved or changed status (coalesced by the listeners)."""
LIVE = tuple(s.value for s in JobStatus if not is_terminal(s))
TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)

Job = dict[str, Any]
"""A job row, column by column (ids as text)."""

COLUMNS = (
    "job_id::text AS job_id, tenant_id::text AS tenant_id, entity, operation, source, status, "
    "total, processed, successful, failed, skipped, webhook_url, idempotency_key, request_hash, "
    "failure_reason, report_path, results_path, started_at, completed_at, created_at, "
    "updated_at, abandoned_at, accepted_seq, cancel_requested_at, dry_run, defaults, "
    "max_error_rate, min_records, outcome_events, error_rate_tripped_at, "
    "parent_job_id::text AS parent_job_id, revert_of_job_id::text AS revert_of_job_id, "
    "reverted_by_job_id::text AS reverted_by_job_id"
)


async def one_row(conn: Connection, query: str, params: Any) -> Job | None:
    pg = await driver(conn)
    async with pg.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchone()


async def all_rows(conn: Connection, query: str, params: Any) -> list[Job]:
    pg = await driver(conn)
    async with pg.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


async def _run(conn: Connection, query: str, params: Any) -> int:
    pg = await driver(conn)
    cursor = await pg.execute(query, params)
    return cursor.rowcount


async def notify(conn: Connection, channel: str, payload: str) -> None:
    """Tell listeners on ``channel`` (delivered when the transaction commits)."""
    await _run(conn, "SELECT pg_notify(%s, %s)", [channel, payload])


# --- accepting a job --------------------------------------------------------------------------


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
    parent_job_id: str | None = None
    """The terminal job whose failed and skipped records this one retries."""
    options: JobOptions = NO_OPTIONS
    revert_of_job_id: str | None = None
    """The terminal job whose writes this one reverts."""

    def params(self) -> dict[str, Any]:
        """The statement parameters of its row (the options as their columns)."""
        options = self.options
        return {
            **{k: v for k, v in self.__dict__.items() if k != "options"},
            "status": str(self.status),
            "dry_run": options.dry_run,
            "defaults": Jsonb(options.defaults_json()) if options.defaults else None,
            "max_error_rate": options.max_error_rate,
            "min_records": options.min_records if options.max_error_rate is not None else None,
            "outcome_events": options.outcome_events,
        }


_OPTION_COLUMNS = "dry_run, defaults, max_error_rate, min_records, outcome_events"
_OPTION_VALUES = (
    "%(dry_run)s, %(defaults)s, %(max_error_rate)s, %(min_records)s, %(outcome_events)s"
)


async def insert_job(conn: Connection, job: NewJob) -> None:
    """Register a job; it takes its acceptance number from ``job_acceptance_seq`` (default)."""
    await _run(
        conn,
        "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total, "
        "webhook_url, idempotency_key, request_hash, parent_job_id, revert_of_job_id, "
        f"{_OPTION_COLUMNS}) VALUES (%(job_id)s, %(tenant_id)s, %(entity)s, %(operation)s, "
        "%(source)s, %(status)s, %(total)s, %(webhook_url)s, %(idempotency_key)s, "
        f"%(request_hash)s, %(parent_job_id)s, %(revert_of_job_id)s, {_OPTION_VALUES})",
        job.params(),
    )
    await notify(conn, JOB_CHANGED_CHANNEL, job.job_id)


async def register_from_chunk(conn: Connection, job: NewJob) -> tuple[bool, JobRow | None]:
    """A Kafka-produced job's row, inserted by its first chunk if the tenant exists.

    (tenant exists, the job row — new or already there); one statement.
    """
    row = await one_row(
        conn,
        "WITH tenant AS (SELECT tenant_id FROM tenants WHERE tenant_id = %(tenant_id)s), "
        "registered AS (INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, "
        f"total, webhook_url, {_OPTION_COLUMNS}) SELECT %(job_id)s, tenant_id, %(entity)s, "
        f"%(operation)s, %(source)s, %(status)s, %(total)s, %(webhook_url)s, {_OPTION_VALUES} "
        "FROM tenant "
        f"ON CONFLICT (job_id) DO NOTHING RETURNING {_ROW}), "
        f"job AS (SELECT * FROM registered UNION ALL SELECT {_ROW} FROM jobs "
        "WHERE job_id = %(job_id)s AND NOT EXISTS (SELECT 1 FROM registered)) "
        "SELECT (SELECT count(*) FROM tenant) > 0 AS tenant_exists, job.* "
        "FROM (SELECT 1) AS one LEFT JOIN job ON true",
        job.params(),
    )
    assert row is not None
    if not row["tenant_exists"] or row["job_id"] is None:
        return bool(row["tenant_exists"]), None
    return True, _job_row(row)


async def job_by_idempotency_key(conn: Connection, tenant_id: str, key: str) -> Job | None:
    return await one_row(
        conn,
        f"SELECT {COLUMNS} FROM jobs WHERE tenant_id = %s AND idempotency_key = %s",
        [tenant_id, key],
    )


async def get_job(conn: Connection, job_id: str, tenant_id: str | None = None) -> Job | None:
    """The job; with ``tenant_id``, only if it is that tenant's."""
    if tenant_id is None:
        return await one_row(conn, f"SELECT {COLUMNS} FROM jobs WHERE job_id = %s", [job_id])
    return await one_row(
        conn,
        f"SELECT {COLUMNS} FROM jobs WHERE job_id = %s AND tenant_id = %s",
        [job_id, tenant_id],
    )


async def claim_revert(conn: Connection, job_id: str, revert_job_id: str) -> bool:
    """Note that ``revert_job_id`` reverts the job; False when another revert has it already
    (one conditional UPDATE: of two concurrent reverts, one wins)."""
    return (
        await _run(
            conn,
            "UPDATE jobs SET reverted_by_job_id = %s WHERE job_id = %s "
            "AND reverted_by_job_id IS NULL",
            [revert_job_id, job_id],
        )
        > 0
    )


async def mark_ready(conn: Connection, job_id: str) -> None:
    """All its messages are published (a job that moved on already stays where it is)."""
    await _run(
        conn,
        "UPDATE jobs SET status = %s, updated_at = now() WHERE job_id = %s AND status = %s",
        [JobStatus.READY.value, job_id, JobStatus.PENDING.value],
    )
    await notify(conn, JOB_CHANGED_CHANNEL, job_id)


async def abandon_job(conn: Connection, job_id: str, reason: str) -> None:
    """The gateway could not publish the job: hand it to the incomplete-job sweeper.

    The job stays ``PENDING`` (its records may be half published) until a worker's sweeper fails
    the records that never arrived as ``RecordNotReceived`` and ends it ``INTERNAL_FAILURE``;
    its ``Idempotency-Key`` is released at once, so the client's retry creates a new job.
    """
    await _run(
        conn,
        "UPDATE jobs SET abandoned_at = now(), failure_reason = %s, idempotency_key = NULL, "
        "updated_at = now() WHERE job_id = %s AND status = %s",
        [reason, job_id, JobStatus.PENDING.value],
    )


# --- the workers' view ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    """What the workers need to know of a job to decide whether a message may touch it."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    source: str
    status: JobStatus
    total: int
    options: JobOptions = NO_OPTIONS

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)


_ROW = (
    "job_id::text AS job_id, tenant_id::text AS tenant_id, entity, operation, source, status, "
    f"total, {_OPTION_COLUMNS}"
)


def _job_row(row: Job) -> JobRow:
    return JobRow(
        row["job_id"],
        row["tenant_id"],
        row["entity"],
        row["operation"],
        row["source"],
        JobStatus(row["status"]),
        int(row["total"]),
        options_from_row(row),
    )


async def lock_job(conn: Connection, job_id: str) -> JobRow | None:
    """The job row, locked ``FOR UPDATE`` until the caller's transaction ends: it also waits for
    the persist batches of the job (they hold ``FOR KEY SHARE``), for filling and ending it."""
    row = await one_row(conn, f"SELECT {_ROW} FROM jobs WHERE job_id = %s FOR UPDATE", [job_id])
    return _job_row(row) if row else None


async def job_row(conn: Connection, job_id: str) -> JobRow | None:
    """The job row, unlocked."""
    row = await one_row(conn, f"SELECT {_ROW} FROM jobs WHERE job_id = %s", [job_id])
    return _job_row(row) if row else None


class LockedJob(NamedTuple):
    status: JobStatus
    accepted_seq: int
    created_at: datetime
    dry_run: bool = False
    outcome_events: bool = True
    revert_of: str | None = None  # a revert job: the job it reverts


async def lock_for_batch(conn: Connection, job_ids: Iterable[str]) -> dict[str, LockedJob]:
    """The jobs' statuses, acceptance sequences and times, locked ``FOR KEY SHARE`` until the
    transaction ends (the persist stage).

    The weakest row lock: it conflicts only with ``FOR UPDATE``, which filling and ending a job
    take (:func:`lock_job`), and not with the aggregator's ``FOR NO KEY UPDATE``, so batches of
    one job on several workers never wait for each other or for the job's progress updates.
    """
    rows = await all_rows(
        conn,
        "SELECT job_id::text AS job_id, status, accepted_seq, created_at, dry_run, "
        "outcome_events, revert_of_job_id::text AS revert_of FROM jobs "
        "WHERE job_id = ANY(%s::uuid[]) ORDER BY job_id FOR KEY SHARE",
        [sorted(set(job_ids))],
    )
    return {
        r["job_id"]: LockedJob(
            JobStatus(r["status"]),
            int(r["accepted_seq"]),
            r["created_at"],
            bool(r["dry_run"]),
            bool(r["outcome_events"]),
            r["revert_of"],
        )
        for r in rows
    }


class Pace(NamedTuple):
    """How far the pipeline is with a job whose file is being read, and whether to go on."""

    status: JobStatus
    processed: int
    cancel_requested: bool
    error_rate_tripped: bool = False


async def pace_of(conn: Connection, job_id: str) -> Pace:
    """The :class:`Pace` of a job, for an import pacing itself (gone: INTERNAL_FAILURE)."""
    row = await one_row(
        conn,
        "SELECT status, processed, cancel_requested_at IS NOT NULL AS cancel, "
        "error_rate_tripped_at IS NOT NULL AS tripped FROM jobs WHERE job_id = %s",
        [job_id],
    )
    if row is None:
        return Pace(JobStatus.INTERNAL_FAILURE, 0, cancel_requested=False)
    return Pace(
        JobStatus(row["status"]), int(row["processed"]), bool(row["cancel"]), bool(row["tripped"])
    )


async def note_error_rate_trip(conn: Connection, job_id: str) -> None:
    """The breaker tripped on an import still reading its file: its reader stops and ends it."""
    sql = "UPDATE jobs SET error_rate_tripped_at = coalesce(error_rate_tripped_at, now()) "
    await _run(conn, sql + "WHERE job_id = %s AND status <> ALL(%s)", [job_id, list(TERMINAL)])


async def request_cancel(conn: Connection, job_id: str) -> bool:
    """Note that a live job is to be cancelled (keeping the first request's time); False when
    it is terminal. The aggregator carries it out (:mod:`streams.aggregate`)."""
    sql = "UPDATE jobs SET cancel_requested_at = coalesce(cancel_requested_at, now()) "
    where = "WHERE job_id = %s AND status <> ALL(%s)"
    return await _run(conn, sql + where, [job_id, list(TERMINAL)]) > 0


async def set_total(conn: Connection, job_id: str, total: int) -> None:
    """A file import's row count, once the whole file is read."""
    await _run(
        conn,
        "UPDATE jobs SET total = %s, updated_at = now() WHERE job_id = %s AND status <> ALL(%s)",
        [total, job_id, list(TERMINAL)],
    )
    await notify(conn, JOB_CHANGED_CHANNEL, job_id)


async def lock_for_progress(conn: Connection, job_id: str) -> Job | None:
    """The whole job row, locked ``FOR NO KEY UPDATE`` (the aggregator)."""
    return await one_row(
        conn, f"SELECT {COLUMNS} FROM jobs WHERE job_id = %s FOR NO KEY UPDATE", [job_id]
    )


async def counted(conn: Connection, job_id: str) -> tuple[int, int, int]:
    """(successful, failed, skipped) summed over the job's parts: its stored outcomes."""
    row = await one_row(
        conn,
        "SELECT coalesce(sum(successful), 0) AS s, coalesce(sum(failed), 0) AS f, "
        "coalesce(sum(skipped), 0) AS k FROM job_parts WHERE job_id = %s",
        [job_id],
    )
    assert row is not None
    return int(row["s"]), int(row["f"]), int(row["k"])


async def save_progress(conn: Connection, job: Job, after: JobProgress) -> Job:
    """Write what :meth:`domain.jobs.JobProgress.advance` made of the job; the row as saved.

    A status change must be an allowed transition; watchers are told, and a terminal job wakes
    waiting gateways.
    """
    before = JobStatus(job["status"])
    if after.status is not before and not allowed_transition(before, after.status):
        raise ValueError(f"job {job['job_id']}: {before} → {after.status} is not allowed")
    saved = await one_row(
        conn,
        "UPDATE jobs SET status = %(status)s, processed = %(processed)s, "
        "successful = %(successful)s, failed = %(failed)s, skipped = %(skipped)s, "
        "started_at = CASE WHEN %(processed)s > 0 THEN coalesce(started_at, now()) "
        "ELSE started_at END, completed_at = CASE WHEN %(terminal)s THEN now() "
        "ELSE completed_at END, updated_at = now() "
        f"WHERE job_id = %(job_id)s RETURNING {COLUMNS}",
        {
            "status": after.status.value,
            "processed": after.processed,
            "successful": after.successful,
            "failed": after.failed,
            "skipped": after.skipped,
            "terminal": is_terminal(after.status),
            "job_id": job["job_id"],
        },
    )
    assert saved is not None
    await notify(conn, JOB_CHANGED_CHANNEL, job["job_id"])
    if is_terminal(after.status):
        await notify(conn, JOB_TERMINAL_CHANNEL, job["job_id"])
    return saved


async def end_job(
    conn: Connection,
    job_id: str,
    status: JobStatus,
    *,
    reason: str | None = None,
    total: int | None = None,
) -> bool:
    """Make a job terminal — the one way to do so outside the aggregator's progress.

    Guarded by the state machine (a terminal job never changes again); the counts are summed
    from ``job_parts`` (the stored outcomes); ``total`` replaces an unknown total (0, a file
    still being read). Gateways waiting on the job are woken when the transaction commits.
    True when the job changed.
    """
    row = await one_row(conn, "SELECT status FROM jobs WHERE job_id = %s FOR UPDATE", [job_id])
    if row is None or not allowed_transition(JobStatus(row["status"]), status):
        return False
    await _run(
        conn,
        "UPDATE jobs SET status = %(status)s, failure_reason = coalesce(%(reason)s, "
        "failure_reason), total = coalesce(%(total)s, total), processed = c.successful + "
        "c.failed + c.skipped, successful = c.successful, failed = c.failed, skipped = c.skipped, "
        "started_at = coalesce(started_at, now()), completed_at = now(), updated_at = now() "
        "FROM (SELECT coalesce(sum(successful), 0) AS successful, coalesce(sum(failed), 0) AS "
        "failed, coalesce(sum(skipped), 0) AS skipped FROM job_parts WHERE job_id = %(job_id)s) c "
        "WHERE jobs.job_id = %(job_id)s",
        {"status": status.value, "reason": reason, "total": total, "job_id": job_id},
    )
    await notify(conn, JOB_CHANGED_CHANNEL, job_id)
    await notify(conn, JOB_TERMINAL_CHANNEL, job_id)
    return True


async def record_report_paths(conn: Connection, job_id: str, report: str, results: str) -> None:
    """Where a terminal job's files are; ``updated_at`` stays: the job did not change."""
    await _run(
        conn,
        "UPDATE jobs SET report_path = %s, results_path = %s "
        "WHERE job_id = %s AND report_path IS NULL",
        [report, results, job_id],
    )


# --- file imports -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveImport:
    """A live import that keeps an exclusive one from starting (or is exclusive itself)."""

    job_id: str
    status: str
    exclusive: bool


async def live_import(
    conn: Connection, tenant_id: str, entity: str, *, exclusive_only: bool
) -> LiveImport | None:
    """The oldest live import of the tenant and entity (only exclusive ones if asked)."""
    row = await one_row(
        conn,
        "SELECT j.job_id::text AS job_id, j.status, i.exclusive FROM jobs j "
        "JOIN imports i ON i.job_id = j.job_id WHERE j.tenant_id = %(tenant)s "
        "AND j.entity = %(entity)s AND j.source = 'file' AND j.status = ANY(%(live)s) "
        "AND (i.exclusive OR NOT %(exclusive_only)s) ORDER BY j.created_at LIMIT 1",
        {
            "tenant": tenant_id,
            "entity": entity,
            "live": list(LIVE),
            "exclusive_only": exclusive_only,
        },
    )
    return LiveImport(row["job_id"], row["status"], row["exclusive"]) if row else None


async def files_read_by_live_jobs(
    conn: Connection, file_ids: Sequence[str] | None = None
) -> set[str]:
    """Which files (of these, or of all) a live import still reads: their bytes must stay."""
    rows = await all_rows(
        conn,
        "SELECT DISTINCT i.file_id::text AS file_id FROM imports i JOIN jobs j "
        "ON j.job_id = i.job_id WHERE j.status = ANY(%(live)s) "
        "AND (%(ids)s::uuid[] IS NULL OR i.file_id = ANY(%(ids)s::uuid[]))",
        {"live": list(LIVE), "ids": None if file_ids is None else list(file_ids)},
    )
    return {r["file_id"] for r in rows}
