"""One PostgreSQL ``LISTEN`` connection per gateway, shared by everything that waits on jobs.

Handlers are registered per channel before :meth:`NotificationListener.start`; each gets the
notification's payload (a job id). Notifications sent while the connection was down are lost:
the reconnect handlers run after every (re)connection, so each part can catch up its own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 1.0

Handler = Callable[[str], None]


class NotificationListener:
    def __init__(self, libpq_url: str) -> None:
        self._url = libpq_url
        self._handlers: dict[str, list[Handler]] = defaultdict(list)
        self._reconnected: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None

    def on(self, channel: str, handler: Handler) -> None:
        self._handlers[channel].append(handler)

    def on_reconnect(self, handler: Callable[[], None]) -> None:
        self._reconnected.append(handler)

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen_forever(), name="notification-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    for channel in self._handlers:
                        await conn.execute(f"LISTEN {channel}")
                    for caught_up in self._reconnected:
                        caught_up()
                    async for notice in conn.notifies():
                        for handler in self._handlers.get(notice.channel, ()):
                            handler(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # reconnect; the reconnect handlers cover the gap
                log.warning("notification listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(RECONNECT_SECONDS)
