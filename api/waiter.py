"""Wait for jobs to become terminal without polling the database in a tight loop.

One connection per gateway LISTENs on the channel the aggregator NOTIFYs when it commits a
terminal status. A slow re-check (once a second per waiting request) covers notifications lost
while the listening connection was reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable

import psycopg

from storage.jobs import JOB_TERMINAL_CHANNEL

log = logging.getLogger(__name__)
RECHECK_SECONDS = 1.0


class JobWaiter:
    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="job-waiter")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_terminal(
        self, job_id: str, timeout: float, is_terminal: Callable[[], Awaitable[bool]]
    ) -> bool:
        """True once ``is_terminal()`` holds, False if ``timeout`` passes first."""
        event = asyncio.Event()
        self._waiting[job_id].add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                if await is_terminal():
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, RECHECK_SECONDS))
                event.clear()
        finally:
            self._waiting[job_id].discard(event)
            if not self._waiting[job_id]:
                del self._waiting[job_id]

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {JOB_TERMINAL_CHANNEL}")
                    async for notice in conn.notifies():
                        for event in self._waiting.get(notice.payload, ()):
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect; the re-check covers the gap
                log.warning("job waiter lost its database connection (%s); reconnecting", exc)
                await asyncio.sleep(1)
