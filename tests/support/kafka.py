"""Kafka helpers for tests: publish request chunks as a producer would, read the DLQ, and run
canary jobs that cross every partition of the pipeline."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bulk_ingest.settings import Settings, TopicNames
from domain.codec import load_codec
from domain.entities import default_schemas_dir
from domain.routing import partition_for, routing_key
from tests.support.http import Api, poll


def own_topics(prefix: str) -> dict[str, str]:
    """The ``topic_*`` settings that give a test session or module topics of its own:
    ``{prefix}.bulk.requests`` and so on, one for every topic of :class:`TopicNames`."""
    return {
        f"topic_{topic.name}": f"{prefix}.bulk.{topic.name}"
        for topic in dataclasses.fields(TopicNames)
    }


def owned_partitions(settings: Settings) -> list[dict[str, set[int]]]:
    """Per member of the workers' group (the group as the broker describes it now), the
    partitions it owns, by topic."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    group = admin.describe_consumer_groups([settings.app_id])[settings.app_id].result(30)
    members: list[dict[str, set[int]]] = []
    for member in group.members:
        owned: dict[str, set[int]] = {}
        for tp in member.assignment.topic_partitions:
            owned.setdefault(tp.topic, set()).add(tp.partition)
        members.append(owned)
    return members


def records_partition_owners(settings: Settings) -> list[set[int]]:
    """The ``bulk.records`` partitions each member of the workers' group owns, one set per
    member."""
    return [owned.get(settings.topics.records, set()) for owned in owned_partitions(settings)]


def job_partition(settings: Settings, job_id: str) -> int:
    """The ``bulk.requests`` partition of a JSON job's chunks, which is also its
    ``bulk.progress`` partition: both are keyed by the job id, placed by the producers'
    murmur2 partitioner (the Java client's, which aiokafka implements too)."""
    partitions = list(range(settings.partitions))
    return int(DefaultPartitioner()(job_id.encode(), partitions, partitions))


def customer_partition(settings: Settings, tenant_id: str, key: str) -> int:
    """The ``bulk.records`` partition that writes the customer ``key`` of this tenant."""
    return partition_for(routing_key(tenant_id, "customers", key, 0), settings.partitions)


CUSTOMER_BRANCH = "bulk_ingest.entities.Customer"
PRODUCT_BRANCH = "bulk_ingest.entities.Product"
REQUESTS_CODEC = load_codec(default_schemas_dir(), "bulk.requests")


def avro_customer(key: str, **overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "externalId": key,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": None,
        "phone": None,
        "company": None,
        "addresses": None,
        "importantDates": None,
    }
    record.update(overrides)
    return record


def chunk(tenant_id: str, job_id: str, records: list[Any], **changes: Any) -> dict[str, Any]:
    """A ``BulkRequestChunk`` holding ``records`` (Avro dicts, or (branch, dict) pairs)."""
    body: dict[str, Any] = {
        "job_id": job_id,
        "tenant_id": tenant_id,
        "entity": "customers",
        "operation": "insert",
        "source": "kafka",
        "webhook_url": None,
        "chunk_index": 0,
        "chunk_count": 1,
        "total": len(records),
        "first_index": 0,
        "records": [r if isinstance(r, tuple) else (CUSTOMER_BRANCH, r) for r in records],
        "submitted_at": datetime.now(UTC),
    }
    body.update(changes)
    return body


def publish(
    bootstrap: str,
    topic: str,
    payloads: list[bytes],
    key: bytes | None,
    partition: int | None = None,
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for payload in payloads:
        kwargs: dict[str, Any] = {"key": key} if key is not None else {}
        if partition is not None:
            kwargs["partition"] = partition
        producer.produce(topic, value=payload, **kwargs)
    assert producer.flush(30) == 0


def publish_chunks(settings: Any, job_id: str, *chunks: dict[str, Any]) -> None:
    payloads = [REQUESTS_CODEC.encode(c) for c in chunks]
    publish(settings.kafka_bootstrap, settings.topics.requests, payloads, job_id.encode())


def dead_letters(
    settings: Any, key: bytes, expected: int = 1, timeout: float = 30
) -> list[Message]:
    """The dead-lettered messages with this Kafka key, once ``expected`` of them arrived."""

    def enough() -> list[Message] | None:
        found = all_dead_letters(settings, key)
        return found if len(found) >= expected else None

    return poll(enough, timeout, f"{expected} dead letters keyed {key!r}", interval=0.5)


def all_dead_letters(settings: Any, key: bytes) -> list[Message]:
    """Every message on the dead-letter topic with this Kafka key, read from the start."""
    return [m for m in read_to_end(settings, settings.topics.dlq) if m.key() == key]


def read_to_end(settings: Any, topic: str) -> list[Message]:
    """Every message of ``topic`` up to its end as it is now, from the start."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"t-{uuid.uuid4()}"}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in partitions
    }
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found: list[Message] = []
    read: dict[int, int] = {p: 0 for p in partitions}
    deadline = time.monotonic() + 30
    try:
        while any(read[p] < ends[p] for p in partitions) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                read[message.partition()] = message.offset() + 1
                found.append(message)
    finally:
        consumer.close()
    return found


def headers_of(message: Message) -> dict[str, str]:
    return {name: value.decode() for name, value in message.headers() or []}


class Canaries:
    """Jobs that must complete: one per ``bulk.requests`` partition, each with records whose keys
    land on every ``bulk.records`` partition. If any stage of any partition is stuck, a canary
    job stays unfinished."""

    def __init__(self, settings: Any, tenant_id: str, api: Api) -> None:
        self._settings = settings
        self._tenant_id = tenant_id
        self._api = api
        self.rounds = 0

    def _keys(self, prefix: str) -> list[str]:
        partitions = self._settings.partitions
        keys: dict[int, str] = {}
        n = 0
        while len(keys) < partitions:
            key = f"{prefix}-{n}"
            keys.setdefault(customer_partition(self._settings, self._tenant_id, key), key)
            n += 1
        return [keys[p] for p in range(partitions)]

    def fly(self, timeout: float = 90) -> None:
        """Send one canary job to each request partition and wait until all completed."""
        self.rounds += 1
        jobs = []
        producer_topic = self._settings.topics.requests
        for partition in range(self._settings.partitions):
            job_id = str(uuid.uuid4())
            keys = self._keys(f"canary-{uuid.uuid4().hex[:8]}")
            payload = REQUESTS_CODEC.encode(
                chunk(self._tenant_id, job_id, [avro_customer(k) for k in keys])
            )
            publish(
                self._settings.kafka_bootstrap,
                producer_topic,
                [payload],
                job_id.encode(),
                partition,
            )
            jobs.append((job_id, len(keys)))
        for job_id, count in jobs:
            done = poll(
                lambda job_id=job_id: self._finished(job_id), timeout, f"canary job {job_id}"
            )
            assert (done["status"], done["successful"]) == ("COMPLETED", count), done

    def _finished(self, job_id: str) -> dict[str, Any] | None:
        answer = self._api.get(f"/api/v1/jobs/{job_id}")
        if answer.status != 200:
            return None
        job = answer.json()
        return job if job["status"] not in ("PENDING", "READY", "STARTED") else None
