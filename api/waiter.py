"""Wait for jobs to become terminal without polling the database in a tight loop.

The aggregator NOTIFYs :data:`storage.jobs.JOB_TERMINAL_CHANNEL` when it commits a terminal
status; the gateway's :class:`api.notifications.NotificationListener` hands it here. A slow
re-check (once a second per waiting request) covers notifications lost while the listening
connection was reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable

from api.notifications import NotificationListener
from storage.jobs import JOB_TERMINAL_CHANNEL

RECHECK_SECONDS = 1.0


class JobWaiter:
    def __init__(self, listener: NotificationListener) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        listener.on(JOB_TERMINAL_CHANNEL, self._wake)

    def _wake(self, job_id: str) -> None:
        for event in self._waiting.get(job_id, ()):
            event.set()

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
