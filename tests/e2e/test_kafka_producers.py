"""Jobs published straight to Kafka by external producers, and undecodable messages."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from domain.codec import load_codec
from domain.entities import default_schemas_dir
from tests.support.http import poll
from tests.support.records import customer, unique_prefix


def _chunk(tenant_id: str, job_id: str, records: list[dict]) -> dict:
    return {
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
        "records": [("bulk_ingest.entities.Customer", r) for r in records],
        "submitted_at": datetime.now(UTC),
    }


def _avro_customer(key: str, **overrides) -> dict:
    record = {
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


def _dead_letters(settings) -> list:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"t-{uuid.uuid4()}"}
    )
    topic = settings.topics.dlq
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages = [m for m in consumer.consume(1000, timeout=3) if not m.error()]
    consumer.close()
    return messages


def test_external_producer_job_and_garbage_on_the_request_topic(tenant, settings):
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    garbage_key = f"garbage-{uuid.uuid4()}".encode()
    producer.produce(settings.topics.requests, key=garbage_key, value=b"\x00not avro at all")

    codec = load_codec(default_schemas_dir(), "bulk.requests")
    job_id = str(uuid.uuid4())
    prefix = unique_prefix()
    records = [_avro_customer(f"{prefix}-{i}") for i in range(10)]
    records[3] = _avro_customer(f"{prefix}-3", email="not-an-email")  # basic rule, async here
    records[6] = _avro_customer(
        f"{prefix}-6",
        addresses=[
            customer("x")["addresses"][0]
            | {"type": "moon", "line2": None, "region": None, "postalCode": None}
        ],
    )
    producer.produce(
        settings.topics.requests,
        key=job_id.encode(),
        value=codec.encode(_chunk(tenant.tenant_id, job_id, records)),
    )
    assert producer.flush(30) == 0

    job = poll(
        lambda: (
            tenant.api.get(f"/api/v1/jobs/{job_id}").json()
            if tenant.api.get(f"/api/v1/jobs/{job_id}").status == 200
            else None
        ),
        60,
        "the external job to be registered",
    )
    assert job["source"] == "kafka"
    done = tenant.api.wait_terminal(job_id)
    assert (done["status"], done["successful"], done["failed"]) == ("COMPLETED_WITH_ERRORS", 8, 2)
    assert [(e["index"], e["errorCode"]) for e in done["errors"]] == [
        (3, "InvalidFormat"),
        (6, "InvalidReference"),
    ]

    dead = [m for m in _dead_letters(settings) if m.key() == garbage_key]
    assert len(dead) == 1
    headers = dict(dead[0].headers())
    assert headers["dlq.reason"] == b"not-single-object-encoded"
    assert headers["dlq.topic"] == settings.topics.requests.encode()
    assert dead[0].value() == b"\x00not avro at all"
