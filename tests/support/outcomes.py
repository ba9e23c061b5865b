"""Read a job's events back from the public bulk.outcomes topic."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from domain.codec import load_codec
from domain.entities import default_schemas_dir


def outcome_events(
    bootstrap: str, topic: str, job_id: str, expected: int, timeout: float = 60
) -> dict[int, list[dict[str, Any]]]:
    """Every outcome event of ``job_id`` by index, read from the start of the topic."""
    codec = load_codec(default_schemas_dir(), "bulk.outcomes")
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    consumer.assign(
        [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions]
    )
    by_index: dict[int, list[dict[str, Any]]] = defaultdict(list)
    import time

    deadline = time.monotonic() + timeout
    idle = 0
    try:
        while time.monotonic() < deadline:
            messages = consumer.consume(5000, timeout=1)
            if not messages:
                idle += 1
                if len(by_index) >= expected and idle >= 2:
                    break
                continue
            idle = 0
            for message in messages:
                if message.error():
                    continue
                event = codec.decode(message.value())
                if event["job_id"] == job_id:
                    by_index[event["index"]].append(event)
    finally:
        consumer.close()
    return dict(by_index)
