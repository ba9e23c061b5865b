"""The dead-letter topic: a message no stage can use, unchanged, with why in its headers.

Headers: ``dlq.reason`` (a short machine-readable word), ``dlq.detail`` (for a person),
``dlq.topic`` / ``dlq.partition`` / ``dlq.offset`` (where it came from), and for a message that
failed repeatedly ``dlq.attempts``, ``dlq.error_class`` and ``dlq.error``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bulk_ingest.kafka import AsyncProducer, OutgoingMessage
from bulk_ingest.metrics import DEAD_LETTERS

log = logging.getLogger("bulk_ingest.dlq")
MAX_HEADER_BYTES = 1000


@dataclass(frozen=True)
class Delivery:
    """One consumed Kafka message, whatever client consumed it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class DeadLetterQueue:
    def __init__(self, producer: AsyncProducer, topic: str) -> None:
        self._producer = producer
        self._topic = topic

    async def send(
        self,
        delivery: Delivery,
        reason: str,
        detail: str,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        log.warning("dead-lettering %s: %s: %s", delivery, reason, detail)
        headers = [
            ("dlq.reason", reason),
            ("dlq.detail", detail),
            ("dlq.topic", delivery.topic),
            ("dlq.partition", str(delivery.partition)),
            ("dlq.offset", str(delivery.offset)),
            *extra,
        ]
        encoded = [
            (name, value.encode(errors="replace")[:MAX_HEADER_BYTES]) for name, value in headers
        ]
        await self._producer.send_all(
            [OutgoingMessage(self._topic, delivery.value, delivery.key, headers=encoded)]
        )
        DEAD_LETTERS.labels(delivery.topic, reason).inc()
