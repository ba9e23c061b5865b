"""Webhook deliveries and attempts: the durable schedule the dispatchers share.

One delivery per job (``webhook_id`` derived from the job id, so creating it twice is a no-op)
holds the exact body to send and the schedule: ``state`` (PENDING, DELIVERED, FAILED),
``next_attempt_at`` and the number of attempts made. Every attempt is a row of its own.

Claiming is how several dispatchers share the work without sending an attempt twice: in one
transaction a dispatcher locks due deliveries with ``FOR UPDATE SKIP LOCKED``, numbers the next
attempt, records it as started, and moves ``next_attempt_at`` one lease ahead under a fresh
``claim_token``. No one else sees the delivery as due until the lease ends. The result is
recorded only under the same token; if the dispatcher died instead, the lease runs out, the
next claim marks the attempt abandoned and makes a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.job_view import EVENT_TYPES, iso, job_object, webhook_body
from domain.jobs import JobStatus
from storage.ledger import first_failures
from storage.rows import Row, as_row, as_row_or_none, as_rows
from storage.tables import tenants, webhook_attempts, webhook_deliveries

ABANDONED = "abandoned: the dispatcher stopped before recording a result; retried"


class DeliveryState(StrEnum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


def webhook_id_for(job_id: str) -> str:
    """The stable ``webhook-id`` of a job's completion webhook."""
    return "msg_" + uuid.UUID(job_id).hex


@dataclass(frozen=True)
class ClaimedAttempt:
    """One attempt a dispatcher now owns, with everything needed to send it."""

    webhook_id: str
    job_id: str
    attempt: int
    url: str
    payload: str
    webhook_secret: str
    cycle_started_at: datetime
    claim_token: str


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int | None
    error: str | None
    state: DeliveryState
    next_attempt_at: datetime | None


async def create_delivery(
    conn: AsyncConnection,
    *,
    job_id: str,
    tenant_id: str,
    url: str,
    event_type: str,
    payload: str,
    now: datetime,
) -> bool:
    """Schedule the job's webhook now, unless it already exists; True when created."""
    result = await conn.execute(
        pg_insert(webhook_deliveries)
        .values(
            webhook_id=webhook_id_for(job_id),
            job_id=job_id,
            tenant_id=tenant_id,
            url=url,
            event_type=event_type,
            payload=payload,
            state=DeliveryState.PENDING,
            next_attempt_at=now,
        )
        .on_conflict_do_nothing()
    )
    return bool(result.rowcount)


async def delivery_for_job(conn: AsyncConnection, job_id: str) -> Row | None:
    result = await conn.execute(
        select(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id)
    )
    return as_row_or_none(result.mappings().one_or_none())


async def claim_due(
    conn: AsyncConnection, *, limit: int, now: datetime, lease_seconds: float
) -> list[ClaimedAttempt]:
    """Take up to ``limit`` due deliveries; call inside a transaction, commit before sending."""
    d = webhook_deliveries
    due = (
        select(d, tenants.c.webhook_secret)
        .join(tenants, tenants.c.tenant_id == d.c.tenant_id)
        .where(d.c.state == DeliveryState.PENDING, d.c.next_attempt_at <= now)
        .order_by(d.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=d)
    )
    rows = as_rows((await conn.execute(due)).mappings())
    return [await _claim(conn, row, now, lease_seconds) for row in rows]


async def _claim(
    conn: AsyncConnection, row: Row, now: datetime, lease_seconds: float
) -> ClaimedAttempt:
    if row["claim_token"] is not None:
        await _mark_abandoned(conn, row["webhook_id"], row["attempts"])
    attempt = row["attempts"] + 1
    token = uuid.uuid4().hex
    cycle_started_at = row["cycle_started_at"] or now
    await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.webhook_id == row["webhook_id"])
        .values(
            attempts=attempt,
            claim_token=token,
            next_attempt_at=now + timedelta(seconds=lease_seconds),
            cycle_started_at=cycle_started_at,
            updated_at=now,
        )
    )
    await conn.execute(
        insert(webhook_attempts).values(webhook_id=row["webhook_id"], attempt=attempt, at=now)
    )
    return ClaimedAttempt(
        webhook_id=row["webhook_id"],
        job_id=row["job_id"],
        attempt=attempt,
        url=row["url"],
        payload=row["payload"],
        webhook_secret=row["webhook_secret"],
        cycle_started_at=cycle_started_at,
        claim_token=token,
    )


async def _mark_abandoned(conn: AsyncConnection, webhook_id: str, attempt: int) -> None:
    a = webhook_attempts
    await conn.execute(
        update(a)
        .where(
            a.c.webhook_id == webhook_id,
            a.c.attempt == attempt,
            a.c.status_code.is_(None),
            a.c.error.is_(None),
        )
        .values(error=ABANDONED)
    )


async def record_result(
    conn: AsyncConnection, claim: ClaimedAttempt, result: AttemptResult, now: datetime
) -> bool:
    """Store the attempt's result and the schedule that follows; False if the claim was lost.

    A redelivery requested while the attempt was in flight starts a new cycle right away,
    whatever the attempt's result.
    """
    d = webhook_deliveries
    row = (
        await conn.execute(
            select(d.c.claim_token, d.c.redeliver_requested)
            .where(d.c.webhook_id == claim.webhook_id)
            .with_for_update()
        )
    ).one_or_none()
    owned = row is not None and row.claim_token == claim.claim_token
    next_at = result.next_attempt_at
    if owned and row is not None and row.redeliver_requested:
        next_at = now
    await conn.execute(
        update(webhook_attempts)
        .where(
            webhook_attempts.c.webhook_id == claim.webhook_id,
            webhook_attempts.c.attempt == claim.attempt,
        )
        .values(
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            next_attempt_at=next_at,
        )
    )
    if not owned:
        return False
    values: dict[str, object] = {
        "state": result.state,
        "next_attempt_at": result.next_attempt_at,
        "claim_token": None,
        "updated_at": now,
    }
    if result.state is DeliveryState.DELIVERED:
        values["delivered_at"] = now
    if row is not None and row.redeliver_requested:
        values.update(_new_cycle(now))
    await conn.execute(update(d).where(d.c.webhook_id == claim.webhook_id).values(**values))
    return True


def _new_cycle(now: datetime) -> dict[str, object]:
    return {
        "state": DeliveryState.PENDING,
        "next_attempt_at": now,
        "cycle_started_at": None,
        "redeliver_requested": False,
    }


async def request_redelivery(conn: AsyncConnection, webhook_id: str, now: datetime) -> Row:
    """Send again now with the same ``webhook-id``, starting a fresh retry cycle.

    If an attempt is in flight, the new cycle starts as soon as its result is recorded, so the
    same delivery is never sent by two dispatchers at once.
    """
    d = webhook_deliveries
    row = (
        (await conn.execute(select(d).where(d.c.webhook_id == webhook_id).with_for_update()))
        .mappings()
        .one()
    )
    in_flight = row["claim_token"] is not None and row["next_attempt_at"] > now
    values = {"redeliver_requested": True} if in_flight else _new_cycle(now)
    result = await conn.execute(
        update(d).where(d.c.webhook_id == webhook_id).values(**values, updated_at=now).returning(d)
    )
    return as_row(result.mappings().one())


async def attempts_for_job(conn: AsyncConnection, job_id: str) -> Sequence[Row]:
    a, d = webhook_attempts, webhook_deliveries
    result = await conn.execute(
        select(a)
        .join(d, d.c.webhook_id == a.c.webhook_id)
        .where(d.c.job_id == job_id)
        .order_by(a.c.attempt)
    )
    return as_rows(result.mappings())


async def schedule_webhook(conn: AsyncConnection, job: Mapping[str, Any], now: datetime) -> bool:
    """Create the terminal job's delivery unless it exists; True when created.

    ``data`` is the job object exactly as ``GET /jobs/{id}`` returns it; the event's timestamp
    is when the job finished, so a re-created body is byte-for-byte the same.
    """
    failures = await first_failures(conn, job["job_id"]) if job["failed"] else []
    event_type = EVENT_TYPES[JobStatus(job["status"])]
    timestamp = iso(job["completed_at"] or job["updated_at"])
    assert timestamp is not None
    return await create_delivery(
        conn,
        job_id=job["job_id"],
        tenant_id=job["tenant_id"],
        url=job["webhook_url"],
        event_type=event_type,
        payload=webhook_body(event_type, timestamp, job_object(job, failures)),
        now=now,
    )
