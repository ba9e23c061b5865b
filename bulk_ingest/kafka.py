"""Kafka adapter shared by gateway, workers and consumers: topics, producers, delivery."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions, NewTopic

from bulk_ingest.replication import Replication, replication_for
from bulk_ingest.settings import TopicNames

# Our topics carry chunks of up to a few MiB; the broker default (1 MiB) is too small.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SINGLE_BROKER = replication_for(1)


class KafkaUnavailable(Exception):
    """The broker could not be reached or timed out; retrying later may succeed."""


class KafkaRefused(Exception):
    """The client or the broker refuses this message (too large, invalid): retrying cannot help."""


_REFUSALS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError._INVALID_ARG,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
    }
)


def _delivery_error(error: KafkaError, topic: str | None) -> Exception:
    text = f"delivery to {topic} failed: {error.str()}"
    return KafkaRefused(text) if error.code() in _REFUSALS else KafkaUnavailable(text)


def ensure_topics(
    bootstrap: str,
    topics: TopicNames,
    partitions: int,
    replication: Replication = SINGLE_BROKER,
    timeout: float = 30,
) -> None:
    """Create missing topics (``replication.factor`` copies, ``min.insync.replicas`` set on each)
    and grow ones with too few partitions (idempotent)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    wanted = {name: partitions for name in topics.all()}
    to_create = [
        NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication.factor,
            config={
                "max.message.bytes": str(MAX_MESSAGE_BYTES),
                "min.insync.replicas": str(replication.min_insync),
            },
        )
        for name, count in wanted.items()
        if name not in existing
    ]
    to_grow = [
        NewPartitions(name, count)
        for name, count in wanted.items()
        if name in existing and len(existing[name].partitions) < count
    ]
    _wait_all(admin.create_topics(to_create) if to_create else {}, KafkaError.TOPIC_ALREADY_EXISTS)
    _wait_all(admin.create_partitions(to_grow) if to_grow else {}, None)
    _wait_for_leaders(admin, wanted, timeout)


def _wait_for_leaders(admin: AdminClient, wanted: dict[str, int], timeout: float) -> None:
    """Creation returns before partitions have leaders; callers need them usable."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        ready = all(
            name in topics
            and len(topics[name].partitions) >= count
            and all(p.leader >= 0 and not p.error for p in topics[name].partitions.values())
            for name, count in wanted.items()
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(f"topics {sorted(wanted)} have partitions without a leader")
        time.sleep(0.1)


def _wait_all(futures: dict[str, Any], tolerated: int | None) -> None:
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if tolerated is None or exc.args[0].code() != tolerated:
                raise KafkaUnavailable(f"could not prepare topic {name}: {exc}") from exc


COORDINATOR_WAIT_SECONDS = 60.0
_COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def _committed_once_the_coordinator_is_up(consumer: Any, partitions: list[Any]) -> list[Any]:
    """The group's committed offsets; a fresh broker answers NOT_COORDINATOR (or "loading") for
    a while as it creates ``__consumer_offsets``, so retriable errors are asked again."""
    deadline = time.monotonic() + COORDINATOR_WAIT_SECONDS
    while True:
        try:
            return list(consumer.committed(partitions, timeout=10))
        except KafkaException as exc:
            error = exc.args[0]
            waiting = error.retriable() or error.code() in _COORDINATOR_NOT_READY
            if not waiting or time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # the coordinator is being elected: a pause before asking again


def seed_committed_offsets(bootstrap: str, group_id: str, topics: Iterable[str]) -> int:
    """Give every partition without a committed offset one at its low watermark.

    faust-streaming can leave a partition that has never had a committed offset unread after a
    rebalance (faust-streaming#629; seen here on fresh partitions). Seeding the offsets before
    the workers join means no partition is ever in that state. Returns how many were seeded;
    does nothing once the group has members (their commits already cover it).
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group_id, "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            if topic in metadata.topics
            for p in metadata.topics[topic].partitions
        ]
        committed = _committed_once_the_coordinator_is_up(consumer, partitions)
        missing = [
            TopicPartition(tp.topic, tp.partition, _low_watermark(consumer, tp))
            for tp in committed
            if tp.offset < 0
        ]
        if missing:
            try:
                consumer.commit(offsets=missing, asynchronous=False)
            except KafkaException:
                return 0  # the group is active: its members own the offsets now
        return len(missing)
    finally:
        consumer.close()


def _low_watermark(consumer: Any, tp: Any, timeout: float = 30) -> int:
    """Retried: just after a broker start, leadership may still be settling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=10)[0])
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def topic_partition_counts(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(metadata.topics[name].partitions) for name in names}


def producer_config(
    bootstrap: str, client_id: str, delivery_timeout_seconds: float = 30.0
) -> dict[str, Any]:
    return {
        # Fail a delivery after 30 s instead of librdkafka's 5 minutes: the caller is waiting.
        "delivery.timeout.ms": int(delivery_timeout_seconds * 1000),
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # No compression: aiokafka (Faust) would need extra codec libraries, and on loopback
        # CPU, not bandwidth, is the limit.
        "compression.type": "none",
        "partitioner": "murmur2_random",  # the Java/aiokafka partitioner: Faust tables agree
        "message.max.bytes": MAX_MESSAGE_BYTES,
        "queue.buffering.max.kbytes": 512 * 1024,
        "queue.buffering.max.messages": 1_000_000,
    }


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None
    headers: Sequence[tuple[str, bytes]] | None = None


class MessageSender(Protocol):
    """What a stage needs of a producer: send messages, return once all are acknowledged."""

    async def send_all(self, messages: Iterable[OutgoingMessage]) -> None: ...


class AsyncProducer:
    """confluent-kafka's idempotent producer, with delivery awaitable from asyncio.

    A background thread serves delivery callbacks; ``send_all`` returns once the broker has
    acknowledged every message, or raises :class:`KafkaUnavailable` naming the first failure.
    """

    def __init__(
        self, bootstrap: str, client_id: str, delivery_timeout_seconds: float = 30.0
    ) -> None:
        self._producer = Producer(producer_config(bootstrap, client_id, delivery_timeout_seconds))
        self._stopping = threading.Event()
        self._poller = threading.Thread(target=self._poll_forever, daemon=True, name="kafka-poll")
        self._poller.start()

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(0.05)

    async def send_all(self, messages: Iterable[OutgoingMessage]) -> None:
        """Produce every message and return once the broker acknowledged all of them.

        Raises :class:`KafkaUnavailable` (retry later) or :class:`KafkaRefused` (a message the
        broker will never take) for the first message that failed.

        One latch per call, not one future per message: at tens of thousands of outcome events
        a second, per-message futures and cross-thread wake-ups cost more than the produce.
        """
        loop = asyncio.get_running_loop()
        latch = _DeliveryLatch(loop)
        for message in messages:
            latch.expect()
            _produce(self._producer, message, latch.on_delivery)
        latch.close()
        await latch.done

    def list_topics(self, timeout: float) -> Any:
        return self._producer.list_topics(timeout=timeout)

    def close(self, timeout: float = 10) -> None:
        self._producer.flush(timeout)
        self._stopping.set()
        self._poller.join(timeout=1)


class BatchProducer:
    """An idempotent producer one stage owns and sends one batch at a time through.

    ``send_all`` produces the batch, then waits in a thread for librdkafka's ``flush``; delivery
    reports come only for failures (``delivery.report.only.error``). For a stage that emits an
    event per record, one wait per batch instead of a callback per message (across threads, with
    the GIL) halves the CPU per message and the time to the last acknowledgement
    (docs/benchmarks.md). ``flush`` waits for every message queued in the producer, so calls
    are serialised by a lock: concurrent senders would otherwise wait on each other's messages.
    """

    def __init__(
        self, bootstrap: str, client_id: str, delivery_timeout_seconds: float = 30.0
    ) -> None:
        config = producer_config(bootstrap, client_id, delivery_timeout_seconds)
        config["delivery.report.only.error"] = True
        self._producer = Producer(config)
        self._flush_seconds = delivery_timeout_seconds + 5.0  # a delivery fails before this
        self._one_batch = asyncio.Lock()

    async def send_all(self, messages: Iterable[OutgoingMessage]) -> None:
        """As :meth:`AsyncProducer.send_all`: every message acknowledged, or the first failure
        raised (:class:`KafkaUnavailable` also when the flush did not finish in time)."""
        async with self._one_batch:
            failures: list[Exception] = []

            def on_failure(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    failures.append(_delivery_error(error, message.topic()))

            for message in messages:
                _produce(self._producer, message, on_failure)
            loop = asyncio.get_running_loop()
            undelivered = await loop.run_in_executor(
                None, self._producer.flush, self._flush_seconds
            )
            if failures:
                raise failures[0]
            if undelivered:
                raise KafkaUnavailable(
                    f"{undelivered} messages not acknowledged within {self._flush_seconds:.0f} s"
                )

    def close(self, timeout: float = 10) -> None:
        self._producer.flush(timeout)


def _produce(producer: Producer, message: OutgoingMessage, on_delivery: Any) -> None:
    kwargs: dict[str, Any] = {"value": message.value, "on_delivery": on_delivery}
    if message.key is not None:
        kwargs["key"] = message.key
    if message.partition is not None:
        kwargs["partition"] = message.partition
    if message.headers:
        kwargs["headers"] = list(message.headers)
    while True:
        try:
            producer.produce(message.topic, **kwargs)
            return
        except BufferError:  # local queue full: let deliveries drain (backpressure)
            producer.poll(0.05)
        except KafkaException as exc:
            raise _delivery_error(exc.args[0], message.topic) from exc


class _DeliveryLatch:
    """Counts outstanding deliveries; resolves ``done`` when all arrived (or one failed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = False
        self._error: Exception | None = None
        self._settled = False
        self.done: asyncio.Future[None] = loop.create_future()

    def expect(self) -> None:
        with self._lock:
            self._pending += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._maybe_settle()

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            self._pending -= 1
            if error is not None and self._error is None:
                self._error = _delivery_error(error, message.topic())
            self._maybe_settle()

    def _maybe_settle(self) -> None:
        if self._settled or not self._closed:
            return
        if self._pending == 0 or self._error is not None:
            self._settled = True
            self._loop.call_soon_threadsafe(self._settle, self._error)

    def _settle(self, error: Exception | None) -> None:
        if self.done.done():
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)
