"""Stall watchdog: a worker that owns a partition with waiting messages must be moving.

faust-streaming has an open bug (faust-streaming/faust#629) where, after a rebalance, a worker
can own a partition and never fetch from it: the records there wait forever and their job never
finishes. The watchdog asks the broker, independently of Faust's state, for the high watermark
and the group's committed offset of every partition this worker owns. A partition with lag whose
committed offset has not moved for ``stall_seconds``, and on which no event is being processed,
is stalled: the worker exits, its supervisor starts it again, and the rebalance that follows
hands the partition to a consumer that reads it. Nothing is lost: offsets were never committed
past unprocessed records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

log = logging.getLogger("bulk_ingest.watchdog")


@dataclass
class InFlight:
    """Which partitions have an event being processed right now (agents report here)."""

    _since: dict[tuple[str, int], float] = field(default_factory=dict)

    def begin(self, topic: str, partition: int) -> None:
        self._since[(topic, partition)] = time.monotonic()

    def end(self, topic: str, partition: int) -> None:
        self._since.pop((topic, partition), None)

    def busy(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._since


@dataclass
class _Observation:
    committed: int
    since: float


class StallWatch:
    """Decides, from broker offsets, whether an owned partition has stopped moving."""

    def __init__(self, bootstrap: str, group_id: str, stall_seconds: float) -> None:
        self._stall_seconds = stall_seconds
        # Never subscribes: it only reads watermarks and the group's committed offsets.
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
        )
        self._seen: dict[tuple[str, int], _Observation] = {}

    def stalled(self, owned: Iterable[tuple[str, int]], in_flight: InFlight) -> list[str]:
        """Descriptions of owned partitions that lag and have not moved for too long."""
        owned = sorted(set(owned))
        self._seen = {tp: obs for tp, obs in self._seen.items() if tp in owned}
        if not owned:
            return []
        try:
            return self._stalled(owned, in_flight)
        except KafkaException as exc:  # the broker is away: no verdict now, look again later
            log.warning("stall check skipped: %s", exc)
            return []

    def _stalled(self, owned: list[tuple[str, int]], in_flight: InFlight) -> list[str]:
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in owned], timeout=10)
        now = time.monotonic()
        stalled = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10
            )
            position = tp.offset if tp.offset >= 0 else low
            seen = self._seen.get(key)
            if seen is None or seen.committed != position or in_flight.busy(*key):
                self._seen[key] = _Observation(position, now)
                continue
            if high > position and now - seen.since > self._stall_seconds:
                stalled.append(f"{tp.topic}[{tp.partition}] at {position} of {high}")
        return stalled

    def close(self) -> None:
        self._consumer.close()
