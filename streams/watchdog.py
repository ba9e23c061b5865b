"""Stall watchdog: a worker that owns a partition with waiting messages must be moving.

faust-streaming has an open bug (faust-streaming/faust#629) where, after a rebalance, a worker
can own a partition and never fetch from it: the records there wait forever and their job never
finishes. The watchdog asks the broker, independently of Faust's state, for the high watermark
and the group's committed offset of every partition this worker owns. A partition with lag whose
committed offset has not moved for ``stall_seconds`` since it began to lag, and on which no
event is being processed, is stalled — unless the topic's agent has been working on one event
for that long: then the partition waits its turn behind a slow event (a batch waiting on a row
lock, say), which a restart would not cure and whose rebalance would pause every worker. The
first remedy is to seek the partition back to its committed offset, which resets the consumer's
fetch state without a rebalance; if the same partition stalls again, the worker exits, its
supervisor starts it again, and the rebalance that follows hands the partition to a consumer
that reads it. Nothing is lost: offsets were never committed past unprocessed records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition

from bulk_ingest.metrics import set_consumer_lag

log = logging.getLogger("bulk_ingest.watchdog")


@dataclass
class InFlight:
    """Which partitions are being worked on, and when they last were (agents report here)."""

    _since: dict[tuple[str, int], float] = field(default_factory=dict)
    _last: dict[tuple[str, int], float] = field(default_factory=dict)

    def begin(self, topic: str, partition: int) -> None:
        self._since[(topic, partition)] = self._last[(topic, partition)] = time.monotonic()

    def end(self, topic: str, partition: int) -> None:
        self._since.pop((topic, partition), None)
        self._last[(topic, partition)] = time.monotonic()

    def busy(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._since

    def busy_since(self, topic: str) -> float | None:
        """When the oldest event of ``topic`` still being worked on was begun (one agent reads
        each topic, so every partition of it waits for that event); None when none is."""
        return min((t for (name, _), t in self._since.items() if name == topic), default=None)

    def last_activity(self, topic: str, partition: int) -> float:
        return self._last.get((topic, partition), 0.0)


@dataclass(frozen=True)
class Stall:
    topic: str
    partition: int
    committed: int
    high_watermark: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] at {self.committed} of {self.high_watermark}"


@dataclass
class _Observation:
    committed: int
    since: float
    lagging: bool = True


class StallWatch:
    """Decides, from broker offsets, whether an owned partition has stopped moving."""

    def __init__(self, bootstrap: str, group_id: str, stall_seconds: float) -> None:
        self._stall_seconds = stall_seconds
        # Never subscribes: it only reads watermarks and the group's committed offsets.
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
        )
        self._seen: dict[tuple[str, int], _Observation] = {}

    def stalled(self, owned: Iterable[tuple[str, int]], in_flight: InFlight) -> list[Stall]:
        """Owned partitions that lag and have neither moved nor been worked on for too long."""
        owned = sorted(set(owned))
        set_consumer_lag({}, [tp for tp in self._seen if tp not in owned])
        self._seen = {tp: obs for tp, obs in self._seen.items() if tp in owned}
        if not owned:
            return []
        try:
            return self._stalled(owned, in_flight)
        except KafkaException as exc:  # the broker is away: no verdict now, look again later
            log.warning("stall check skipped: %s", exc)
            return []

    def _stalled(self, owned: list[tuple[str, int]], in_flight: InFlight) -> list[Stall]:
        committed = self._consumer.committed([TopicPartition(t, p) for t, p in owned], timeout=10)
        now = time.monotonic()
        stalled = []
        lag: dict[tuple[str, int], int] = {}
        for tp in committed:
            key = (tp.topic, tp.partition)
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=10
            )
            position = tp.offset if tp.offset >= 0 else low
            lag[key] = max(high - position, 0)
            seen = self._seen.get(key)
            lagging = high > position
            if (
                seen is None
                or seen.committed != position
                or in_flight.busy(*key)
                or not (lagging and seen.lagging)  # the quiet that counts is while it lags
            ):
                self._seen[key] = _Observation(position, now, lagging)
                continue
            quiet_since = max(seen.since, in_flight.last_activity(*key))
            if now - quiet_since > self._stall_seconds:
                busy_since = in_flight.busy_since(tp.topic)
                if busy_since is not None and now - busy_since > self._stall_seconds:
                    log.warning(
                        "%s[%d] waits behind an event of its topic in work for %.0f s",
                        tp.topic,
                        tp.partition,
                        now - busy_since,
                    )
                    continue
                stalled.append(Stall(tp.topic, tp.partition, position, high))
                self._seen[key] = _Observation(position, now)  # give the remedy time to act
        set_consumer_lag(lag, ())
        return stalled

    def backlog(self, topics: Iterable[str]) -> int:
        """Messages of these topics the group has not committed yet (-1: the broker is away)."""
        try:
            metadata = self._consumer.list_topics(timeout=10)
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                if topic in metadata.topics
                for p in metadata.topics[topic].partitions
            ]
            waiting = 0
            for tp in self._consumer.committed(partitions, timeout=10):
                low, high = self._consumer.get_watermark_offsets(tp, timeout=10)
                waiting += max(high - (tp.offset if tp.offset >= 0 else low), 0)
            return waiting
        except KafkaException as exc:
            log.warning("backlog unknown: %s", exc)
            return -1

    def close(self) -> None:
        self._consumer.close()
