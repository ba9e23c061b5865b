"""The gateway's live job view against the real database: however many event streams watch,
each change is read once per tick — the database's work does not grow with listeners."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
from sqlalchemy import event

from api.live_jobs import LiveJobs, Subscription
from api.notifications import NotificationListener
from storage.db import async_engine
from storage.jobs import JOB_CHANGED_CHANNEL
from tests.support.jobs import tenant_with_a_live_job

ROUNDS = 8


async def move(settings, job_id: str, processed: int) -> None:  # type: ignore[no-untyped-def]
    """What the aggregator does: counts saved and the change notified, in one transaction."""
    async with await psycopg.AsyncConnection.connect(settings.libpq_url) as conn:
        await conn.execute(
            "UPDATE jobs SET status = 'STARTED', processed = %s, successful = %s, "
            "started_at = coalesce(started_at, now()), updated_at = clock_timestamp() "
            "WHERE job_id = %s",
            [processed, processed, job_id],
        )
        await conn.execute("SELECT pg_notify(%s, %s)", [JOB_CHANGED_CHANNEL, job_id])


async def received(subscription: Subscription, job_id: str, processed: int) -> None:
    while True:
        for update in await subscription.take(1.0):
            if update.job_id == job_id and update.progress["processed"] == processed:
                return


async def reads_while_moving(settings, listeners: int) -> int:  # type: ignore[no-untyped-def]
    """Database reads of the live view while a job moves ROUNDS times under ``listeners``
    streams of that job and ``listeners`` streams of its tenant."""
    tenant_id, job_id = tenant_with_a_live_job(settings, "live-view", total=1_000)
    engine = async_engine(settings.sqlalchemy_url, pool_size=2)
    reads = 0

    def counted(*_: object) -> None:
        nonlocal reads
        reads += 1

    event.listen(engine.sync_engine, "checkout", counted)
    listener = NotificationListener(settings.libpq_url)
    live = LiveJobs(engine, listener)
    listener.start()
    live.start()
    try:
        async with contextlib.AsyncExitStack() as streams:
            watching = [await streams.enter_async_context(live.watch_job(job_id))]
            watching += [
                await streams.enter_async_context(live.watch_job(job_id))
                for _ in range(listeners - 1)
            ]
            watching += [
                await streams.enter_async_context(live.watch_tenant(tenant_id))
                for _ in range(listeners)
            ]
            await move(settings, job_id, 1)  # also proves the listener is connected
            await asyncio.wait_for(asyncio.gather(*(received(s, job_id, 1) for s in watching)), 30)
            before = reads
            for round_ in range(2, ROUNDS + 2):
                await move(settings, job_id, round_ * 10)
                await asyncio.wait_for(
                    asyncio.gather(*(received(s, job_id, round_ * 10) for s in watching)), 30
                )
            return reads - before
    finally:
        await live.stop()
        await listener.stop()
        await engine.dispose()


async def test_every_change_is_read_once_for_all_listeners(settings):
    alone = await reads_while_moving(settings, listeners=1)
    crowded = await reads_while_moving(settings, listeners=100)
    assert alone == ROUNDS, "one read per change (each change waits for the last)"
    assert crowded == alone, "200 streams cost the database what 2 do"


async def test_a_stream_of_another_tenant_gets_nothing(settings):
    tenant_id, job_id = tenant_with_a_live_job(settings, "live-view-a", total=10)
    other_tenant, _their_job = tenant_with_a_live_job(settings, "live-view-b", total=10)
    engine = async_engine(settings.sqlalchemy_url, pool_size=2)
    listener = NotificationListener(settings.libpq_url)
    live = LiveJobs(engine, listener)
    listener.start()
    live.start()
    try:
        async with live.watch_tenant(other_tenant) as theirs, live.watch_job(job_id) as mine:
            await move(settings, job_id, 5)
            await asyncio.wait_for(received(mine, job_id, 5), 30)
            seen = [update.job_id for update in await theirs.take(0.5)]
            assert job_id not in seen
    finally:
        await live.stop()
        await listener.stop()
        await engine.dispose()
    assert tenant_id != other_tenant
