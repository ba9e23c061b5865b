"""One long-lived psycopg connection for a stream stage, replaced when it breaks."""

from __future__ import annotations

from typing import Any

import psycopg


class StageConnection:
    """A stage processes one batch at a time, so one connection serves it; after a database
    restart the next ``get`` connects again (the stage's retry loop replays the batch)."""

    def __init__(self, libpq_url: str, *, autocommit: bool = False) -> None:
        self._url = libpq_url
        self._autocommit = autocommit
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=self._autocommit
            )
        return self._conn

    async def discard(self) -> None:
        """Drop the connection after a connection-level failure."""
        if self._conn is not None:
            await self._conn.close()
        self._conn = None

    async def close(self) -> None:
        await self.discard()
