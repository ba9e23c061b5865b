"""One long-lived psycopg connection for a stream stage, replaced when it breaks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg.pq import PipelineStatus, TransactionStatus
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("bulk_ingest.storage")

Connection = AsyncConnection | psycopg.AsyncConnection[Any]
"""A workers' psycopg connection, or the gateway's SQLAlchemy one (see :func:`driver`)."""


async def driver(conn: Connection) -> psycopg.AsyncConnection[Any]:
    """The psycopg connection behind ``conn``, inside the caller's transaction: storage modules
    written in plain SQL serve the gateway's SQLAlchemy connections through it."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    raw = await conn.get_raw_connection()
    pg = raw.driver_connection
    assert isinstance(pg, psycopg.AsyncConnection)
    return pg


PER_EXECUTION_PLANS = "SET plan_cache_mode = force_custom_plan"
"""A stage's statements are planned for their parameters every time, never cached generically.

psycopg prepares a statement it has run five times, and PostgreSQL may then keep a generic plan
costed with the statistics of that moment. For the persist stage's lookup of existing rows
(``tenant_id = $1 AND key = ANY($2)``) that moment is the start of a tenant's first big job, when
the table or the tenant is small, and the plan that wins then reads all of it — a sequential scan,
or the index for the tenant alone with the keys filtered — which every later batch repeats as the
job grows: quadratic (measured: PostgreSQL at 412 µs per record instead of 39 in a
50,000-record upsert). Planned each time, the lookup meets the table's current size; with the
key leading the unique index (migration 0006) the keys are then its condition
(docs/decisions.md). Planning a handful of statements per batch costs well under a millisecond.
"""


class StageConnection:
    """A stage processes one batch at a time, so one connection serves it; after a database
    restart the next ``get`` connects again (the stage's retry loop replays the batch)."""

    def __init__(self, libpq_url: str, *, autocommit: bool = False) -> None:
        self._url = libpq_url
        self._autocommit = autocommit
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._one_at_a_time = asyncio.Lock()

    async def get(self) -> psycopg.AsyncConnection[Any]:
        """The connection, for a new unit of work: never inside a transaction left open (a
        transaction block opened on it would only be a savepoint of that one)."""
        if self._conn is not None and not self._usable(self._conn):
            await self.discard()
        if self._conn is None:
            self._conn = await self._connect()
        elif self._conn.info.transaction_status is not TransactionStatus.IDLE:
            log.warning("a transaction was left open on a stage connection; rolling it back")
            await self._conn.rollback()
        return self._conn

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        try:
            await conn.execute(PER_EXECUTION_PLANS)
            await conn.set_autocommit(self._autocommit)
        except BaseException:  # the server went away in between: do not leak the socket
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
            raise
        return conn

    @staticmethod
    def _usable(conn: psycopg.AsyncConnection[Any]) -> bool:
        """False for a connection that is gone, or left in a state no rollback gets it out of:
        still in pipeline mode (a server shut down mid-pipeline leaves it busy there, and every
        retry would fail with "cannot exit pipeline mode while busy"), or of unknown status."""
        if conn.closed or conn.broken:
            return False
        if conn.info.pipeline_status is not PipelineStatus.OFF:
            log.warning("a stage connection was left in pipeline mode; replacing it")
            return False
        return conn.info.transaction_status is not TransactionStatus.UNKNOWN

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One transaction on the connection, never two at once. An object that several tasks
        use concurrently (stages and timers) must take its transactions here: two transaction
        blocks interleaved on one connection nest — the second a savepoint of the first — and
        the first can be left open for ever, holding its locks."""
        async with self._one_at_a_time:
            conn = await self.get()
            async with conn.transaction():
                yield conn

    async def discard(self) -> None:
        """Drop the connection after a connection-level failure."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):  # it is being dropped anyway
                await conn.close()

    async def close(self) -> None:
        await self.discard()
