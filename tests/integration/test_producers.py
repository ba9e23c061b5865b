"""Both producers keep the same promise against the real broker: ``send_all`` returns once every
message is acknowledged, or raises the first failure as retryable or refused."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from bulk_ingest.kafka import (
    AsyncProducer,
    BatchProducer,
    KafkaRefused,
    KafkaUnavailable,
    OutgoingMessage,
)

PRODUCERS = [AsyncProducer, BatchProducer]


@pytest.fixture
def fresh_topic(stack_settings):
    """Makes topics for one test and deletes them after it (a broker restarted by a later
    fault test recovers every partition it holds)."""
    admin = AdminClient({"bootstrap.servers": stack_settings.kafka_bootstrap})
    made: list[str] = []

    def make(**config: str) -> str:
        name = f"test.producers.{uuid.uuid4().hex[:8]}"
        for future in admin.create_topics([NewTopic(name, 3, 1, config=config)]).values():
            future.result(timeout=30)
        made.append(name)
        return name

    yield make
    for future in admin.delete_topics(made).values():
        future.result(timeout=30)


def values_on(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    values.append(bytes(message.value()))
        while (message := consumer.poll(1.0)) is not None:  # nothing more than was sent
            values.append(bytes(message.value()))
    finally:
        consumer.close()
    return values


@pytest.mark.parametrize("producer_type", PRODUCERS)
def test_concurrent_batches_are_all_acknowledged_before_send_all_returns(
    stack_settings, fresh_topic, producer_type
):
    bootstrap = stack_settings.kafka_bootstrap
    topic = fresh_topic()
    producer = producer_type(bootstrap, "test-producers")

    async def batch(name: str) -> None:
        await producer.send_all(
            OutgoingMessage(topic, f"{name}-{i}".encode(), f"key-{i}".encode()) for i in range(2000)
        )

    async def both() -> None:
        await asyncio.gather(batch("a"), batch("b"))

    asyncio.run(both())
    sent = {f"{name}-{i}".encode() for name in "ab" for i in range(2000)}
    received = values_on(bootstrap, topic, len(sent))  # before close(), which would flush
    producer.close()
    assert sorted(received) == sorted(sent)


@pytest.mark.parametrize("producer_type", PRODUCERS)
def test_a_message_the_broker_refuses_fails_the_batch_as_refused(
    stack_settings, fresh_topic, producer_type
):
    bootstrap = stack_settings.kafka_bootstrap
    topic = fresh_topic(**{"max.message.bytes": "2000"})
    producer = producer_type(bootstrap, "test-producers")
    batch = [OutgoingMessage(topic, b"small"), OutgoingMessage(topic, b"x" * 5000)]
    with pytest.raises(KafkaRefused, match=f"delivery to {topic} failed"):
        asyncio.run(producer.send_all(batch))
    asyncio.run(producer.send_all([OutgoingMessage(topic, b"after")]))  # still usable
    producer.close()


@pytest.mark.parametrize("producer_type", PRODUCERS)
def test_an_unreachable_broker_is_retryable_after_the_delivery_timeout(producer_type):
    producer = producer_type("127.0.0.1:1", "test-producers", delivery_timeout_seconds=2)
    started = time.monotonic()
    with pytest.raises(KafkaUnavailable):
        asyncio.run(producer.send_all([OutgoingMessage("anything", b"lost")]))
    assert time.monotonic() - started < 20
    producer.close(timeout=0)
