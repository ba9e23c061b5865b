"""What the sweepers look for in the ``jobs`` table (read-only): jobs the gateway abandoned, jobs
that stopped moving, terminal jobs whose webhook was never handed on. The writes stay in
:mod:`storage.jobs`."""

from __future__ import annotations

from datetime import datetime

from storage.connection import Connection
from storage.jobs import COLUMNS, LIVE, TERMINAL, Job, all_rows


async def abandoned_jobs(conn: Connection, limit: int) -> list[tuple[str, str | None]]:
    """(job id, reason) of live jobs the gateway gave up publishing."""
    rows = await all_rows(
        conn,
        "SELECT job_id::text AS job_id, failure_reason FROM jobs WHERE status = ANY(%s) "
        "AND abandoned_at IS NOT NULL ORDER BY abandoned_at LIMIT %s",
        [list(LIVE), limit],
    )
    return [(r["job_id"], r["failure_reason"]) for r in rows]


async def idle_jobs(conn: Connection, idle_seconds: float, limit: int) -> list[str]:
    """Live jobs with no progress, no chunk taken and no creation for ``idle_seconds``."""
    rows = await all_rows(
        conn,
        "SELECT job_id::text AS job_id FROM jobs j WHERE status = ANY(%(live)s) "
        "AND updated_at < now() - %(idle)s * interval '1 second' "
        "AND created_at < now() - %(idle)s * interval '1 second' "
        "AND NOT EXISTS (SELECT 1 FROM job_chunks c WHERE c.job_id = j.job_id "
        "AND c.received_at > now() - %(idle)s * interval '1 second') "
        "ORDER BY updated_at LIMIT %(limit)s",
        {"live": list(LIVE), "idle": idle_seconds, "limit": limit},
    )
    return [r["job_id"] for r in rows]


async def jobs_missing_delivery(
    conn: Connection, *, completed_after: datetime, completed_before: datetime, limit: int
) -> list[Job]:
    """Terminal jobs with a webhook_url and no delivery: what the webhook sweep hands on."""
    return await all_rows(
        conn,
        f"SELECT {', '.join('j.' + c.strip() for c in COLUMNS.split(','))} FROM jobs j "
        "LEFT JOIN webhook_deliveries d ON d.job_id = j.job_id WHERE j.webhook_url IS NOT NULL "
        "AND j.completed_at > %(after)s AND j.completed_at <= %(before)s "
        "AND j.status = ANY(%(terminal)s) AND d.webhook_id IS NULL "
        "ORDER BY j.completed_at LIMIT %(limit)s",
        {
            "after": completed_after,
            "before": completed_before,
            "terminal": list(TERMINAL),
            "limit": limit,
        },
    )
