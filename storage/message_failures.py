"""Failures a worker recorded itself for one Kafka message (``message_failures``).

The count survives restarts, so a message that fails every time is dead-lettered after
``BULK_INGEST_POISON_ATTEMPTS`` recorded failures whichever process tried it. Only failures the
code caught and wrote here count: a SIGKILL writes nothing, so a crash never moves a message
towards the dead-letter topic.
"""

from __future__ import annotations

from storage.connection import StageConnection

_RECORD = (
    'INSERT INTO message_failures (consumer_group, topic, partition, "offset", attempts, '
    "error_class, error) VALUES (%s, %s, %s, %s, 1, %s, %s) "
    'ON CONFLICT (consumer_group, topic, partition, "offset") DO UPDATE SET '
    "attempts = message_failures.attempts + 1, error_class = EXCLUDED.error_class, "
    "error = EXCLUDED.error, last_failed_at = now() RETURNING attempts"
)


class MessageFailureLog:
    """Counts failures per (consumer group, topic, partition, offset) in PostgreSQL."""

    def __init__(self, libpq_url: str, consumer_group: str) -> None:
        self._connection = StageConnection(libpq_url, autocommit=True)
        self._group = consumer_group

    async def record(self, topic: str, partition: int, offset: int, error: BaseException) -> int:
        """Add one failure; the number recorded so far for this message."""
        conn = await self._connection.get()
        cursor = await conn.execute(
            _RECORD,
            [self._group, topic, partition, offset, type(error).__name__, str(error)[:2000]],
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def mark_dead_lettered(self, topic: str, partition: int, offset: int) -> None:
        conn = await self._connection.get()
        await conn.execute(
            "UPDATE message_failures SET dead_lettered_at = now() WHERE consumer_group = %s "
            'AND topic = %s AND partition = %s AND "offset" = %s',
            [self._group, topic, partition, offset],
        )

    async def discard(self) -> None:
        await self._connection.discard()

    async def close(self) -> None:
        await self._connection.close()
