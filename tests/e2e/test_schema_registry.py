"""Kafka producers and consumers that speak Confluent's wire format, against a real Schema
Registry (Apicurio, built from Maven Central and started by the stack code).

The module runs its own pipeline beside the session's: a worker and the consumers, whose settings
name the registry and ``BULK_INGEST_EVENT_FRAMING=confluent``, on topics and consumer groups of
their own, writing to the session's database (so the session's gateway answers for its jobs). A
producer uses confluent-kafka's ``AvroSerializer``; a consumer reads the outcomes with
``AvroDeserializer``.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from bulk_ingest.cli import prepare_backends
from bulk_ingest.processes import ServiceProcess, spawn, stack_config
from bulk_ingest.schema_registry import subject_of
from bulk_ingest.settings import Settings
from domain.codec import confluent_header, load_codec
from domain.entities import DEFAULT_REFERENCE_TYPES, default_schemas_dir
from stack import registry as stack_registry
from storage.db import create_tenant, sync_engine
from tests.e2e.test_completion import Receiver
from tests.support.http import Api, poll
from tests.support.kafka import all_dead_letters, avro_customer, chunk, headers_of, publish
from tests.support.records import unique_prefix

pytestmark = pytest.mark.e2e

REGISTRY_PORT_OFFSET = 100
"""The test registry listens on the session gateway's port + this (a slot of its own)."""
REQUESTS = load_codec(default_schemas_dir(), "bulk.requests")
REQUESTS_SCHEMA = REQUESTS.own_versions()[-1][1]
"""The newest bulk.requests schema standing alone: what a producer's serializer is given."""


@dataclass(frozen=True)
class RegistryPipeline:
    settings: Settings
    url: str
    client: SchemaRegistryClient
    worker: ServiceProcess
    api: Api
    tenant_id: str
    registry_pid: int


def _pipeline_settings(settings: Settings, url: str) -> Settings:
    names = settings.topics
    return settings.with_overrides(
        schema_registry_url=url,
        event_framing="confluent",
        app_id=f"{settings.app_id}-sr",
        topic_requests=f"{names.requests}.sr",
        topic_records=f"{names.records}.sr",
        topic_outcomes=f"{names.outcomes}.sr",
        topic_jobs=f"{names.jobs}.sr",
        topic_dlq=f"{names.dlq}.sr",
        topic_progress=f"{names.progress}.sr",
        topic_imports=f"{names.imports}.sr",
        metrics_port=0,
    )


@pytest.fixture(scope="module")
def pipeline(settings: Settings, service: Any) -> Iterator[RegistryPipeline]:
    config = stack_config(
        settings.with_overrides(schema_registry_port=settings.http_port + REGISTRY_PORT_OFFSET)
    )
    say = lambda line: print(f"[stack] {line}")  # noqa: E731
    running = stack_registry.start(config, say)
    started: list[ServiceProcess] = []
    try:  # whatever fails from here, the registry and the processes stop
        assert running.pid is not None
        url = stack_registry.registry_url(config)
        ours = _pipeline_settings(settings, url)
        prepare_backends(ours)
        worker = spawn("worker", ours, service.log_dir, name="worker-registry")
        started.append(worker)
        started.append(spawn("consumers", ours, service.log_dir, name="consumers-registry"))
        engine = sync_engine(settings.sqlalchemy_url)
        try:
            tenant = create_tenant(engine, "registry", DEFAULT_REFERENCE_TYPES)
        finally:
            engine.dispose()
        pipeline = RegistryPipeline(
            ours,
            url,
            SchemaRegistryClient({"url": url}),
            worker,
            Api(service.base_url, tenant.api_key),
            tenant.tenant_id,
            running.pid,
        )
        # Ready once a job went through: the worker registered its schemas and owns the topics.
        job_id, body = _job(pipeline, [avro_customer(f"{unique_prefix()}-warm-up")])
        publish(ours.kafka_bootstrap, ours.topics.requests, [REQUESTS.encode(body)], None)
        assert _terminal(pipeline, job_id)["status"] == "COMPLETED"
        yield pipeline
    finally:
        for process in started:
            process.stop()
        stack_registry.stop(config, say)


def _serializer(pipeline: RegistryPipeline, schema: str = REQUESTS_SCHEMA) -> AvroSerializer:
    return AvroSerializer(pipeline.client, schema, conf={"auto.register.schemas": True})


def _confluent_chunk(pipeline: RegistryPipeline, body: dict[str, Any]) -> bytes:
    context = SerializationContext(pipeline.settings.topics.requests, MessageField.VALUE)
    payload = _serializer(pipeline)(body, context)
    assert payload is not None and payload[0] == 0, "the Confluent wire format"
    return payload


def _job(pipeline: RegistryPipeline, records: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    job_id = str(uuid.uuid4())
    return job_id, chunk(pipeline.tenant_id, job_id, records)


def _terminal(pipeline: RegistryPipeline, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        assert pipeline.worker.alive(), pipeline.worker.log_tail()
        answer = pipeline.api.get(f"/api/v1/jobs/{job_id}")
        if answer.status != 200:
            return None
        found = answer.json()
        return found if found["completed_at"] else None

    return dict(poll(ended, timeout, f"job {job_id} to end"))


def _outcomes(pipeline: RegistryPipeline, job_id: str, expected: int) -> list[dict[str, Any]]:
    """Every outcome event of the job, read with the standard deserializer."""
    topic = pipeline.settings.topics.outcomes
    deserialize = AvroDeserializer(pipeline.client)
    context = SerializationContext(topic, MessageField.VALUE)
    consumer = Consumer(
        {"bootstrap.servers": pipeline.settings.kafka_bootstrap, "group.id": f"t-{uuid.uuid4()}"}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found: list[dict[str, Any]] = []

    def all_read() -> bool:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error() or message.key() is None:
                continue
            event = deserialize(message.value(), context)
            if event is not None and event["job_id"] == job_id:
                found.append(event)
        return len({event["index"] for event in found}) >= expected

    try:
        poll(all_read, 60, f"{expected} outcome events of job {job_id}", interval=0.1)
    finally:
        consumer.close()
    return found


def test_a_job_sent_with_the_standard_serializer_is_read_back_with_the_standard_deserializer(
    pipeline: RegistryPipeline,
) -> None:
    prefix = unique_prefix()
    records = [avro_customer(f"{prefix}-{i}") for i in range(30)]
    records[4] = avro_customer(f"{prefix}-4", email="not-an-email")
    receiver = Receiver().start()
    job_id, body = _job(pipeline, records)
    body["webhook_url"] = receiver.url
    subject = subject_of(pipeline.settings.topics.requests)
    registered = pipeline.client.get_latest_version(subject).schema.schema_str  # as the docs do
    context = SerializationContext(pipeline.settings.topics.requests, MessageField.VALUE)
    payload = _serializer(pipeline, registered)(body, context)
    assert payload is not None and payload[0] == 0, "the Confluent wire format"
    publish(pipeline.settings.kafka_bootstrap, pipeline.settings.topics.requests, [payload], None)

    done = _terminal(pipeline, job_id)
    assert (done["status"], done["successful"], done["failed"]) == ("COMPLETED_WITH_ERRORS", 29, 1)
    assert [(e["index"], e["errorCode"]) for e in done["errors"]] == [(4, "InvalidFormat")]
    events = _outcomes(pipeline, job_id, 30)
    statuses = {event["index"]: (event["status"], event["error_code"]) for event in events}
    assert statuses == {
        i: (("FAILED", "InvalidFormat") if i == 4 else ("CREATED", None)) for i in range(30)
    }
    # The consumers read the Confluent-framed terminal job event: the webhook went out.
    try:
        hooks = poll(lambda: receiver.count() >= 1 and receiver.received, 60, "the webhook")
        event = json.loads(hooks[0].body)
        assert (event["type"], event["data"]["job_id"]) == ("job.completed", job_id)
    finally:
        receiver.stop()
    # What the service registered is what the producer's serializer found: no new version.
    versions = pipeline.client.get_versions(subject)
    assert len(versions) == len(REQUESTS.own_versions())


def test_both_framings_in_one_topic_at_once(pipeline: RegistryPipeline) -> None:
    prefix = unique_prefix()
    confluent_id, confluent_body = _job(
        pipeline, [avro_customer(f"{prefix}-c{i}") for i in range(10)]
    )
    single_id, single_body = _job(pipeline, [avro_customer(f"{prefix}-s{i}") for i in range(10)])
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap})
    topic = pipeline.settings.topics.requests
    producer.produce(
        topic, key=confluent_id.encode(), value=_confluent_chunk(pipeline, confluent_body)
    )
    producer.produce(topic, key=single_id.encode(), value=REQUESTS.encode(single_body))
    assert producer.flush(30) == 0
    for job_id in (confluent_id, single_id):
        done = _terminal(pipeline, job_id)
        assert (done["status"], done["successful"]) == ("COMPLETED", 10), done


def test_a_change_that_breaks_backward_compatibility_is_refused_and_the_producer_sees_why(
    pipeline: RegistryPipeline,
) -> None:
    schema = json.loads(REQUESTS_SCHEMA)
    schema["fields"].append({"name": "priority", "type": "int"})  # required, no default
    _, body = _job(pipeline, [avro_customer(f"{unique_prefix()}-0")])
    context = SerializationContext(pipeline.settings.topics.requests, MessageField.VALUE)
    with pytest.raises(SchemaRegistryError) as refused:
        _serializer(pipeline, json.dumps(schema))({**body, "priority": 1}, context)
    assert refused.value.http_status_code == 409
    assert "priority" in refused.value.error_message
    subject = subject_of(pipeline.settings.topics.requests)
    with pytest.raises(SchemaRegistryError) as direct:
        pipeline.client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    assert direct.value.http_status_code == 409
    assert pipeline.client.get_compatibility(subject) == "BACKWARD"


def test_a_chunk_whose_schema_id_is_unknown_is_dead_lettered_and_others_complete(
    pipeline: RegistryPipeline,
) -> None:
    key = f"unknown-id-{uuid.uuid4()}".encode()
    job_id, body = _job(pipeline, [avro_customer(f"{unique_prefix()}-0")])
    forged = confluent_header(987_654) + _confluent_chunk(pipeline, body)[5:]
    publish(pipeline.settings.kafka_bootstrap, pipeline.settings.topics.requests, [forged], key)
    after_id, after_body = _job(pipeline, [avro_customer(f"{unique_prefix()}-1")])
    publish(
        pipeline.settings.kafka_bootstrap,
        pipeline.settings.topics.requests,
        [_confluent_chunk(pipeline, after_body)],
        after_id.encode(),
    )

    assert _terminal(pipeline, after_id)["status"] == "COMPLETED"
    [dead] = poll(lambda: all_dead_letters(pipeline.settings, key) or None, 60, "the dead letter")
    headers = headers_of(dead)
    assert headers["dlq.reason"] == "unknown-schema-id"
    assert "987654" in headers["dlq.detail"]
    assert dead.value() == forged
    assert pipeline.api.get(f"/api/v1/jobs/{job_id}").status == 404, "no job from a lost chunk"


def test_a_registry_that_stops_answering_delays_a_chunk_of_a_new_schema_until_it_is_back(
    pipeline: RegistryPipeline,
) -> None:
    schema = json.loads(REQUESTS_SCHEMA)
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    subject = subject_of(pipeline.settings.topics.requests)
    new_id = pipeline.client.register_schema(subject, Schema(json.dumps(schema), "AVRO"))
    job_id, body = _job(pipeline, [avro_customer(f"{unique_prefix()}-{i}") for i in range(5)])
    context = SerializationContext(pipeline.settings.topics.requests, MessageField.VALUE)
    payload = AvroSerializer(
        pipeline.client,
        json.dumps(schema),
        conf={"auto.register.schemas": False, "use.latest.version": False},
    )({**body, "note": "v-next"}, context)
    assert payload is not None and payload[1:5] == new_id.to_bytes(4, "big")

    os.kill(pipeline.registry_pid, signal.SIGSTOP)
    try:
        publish(
            pipeline.settings.kafka_bootstrap,
            pipeline.settings.topics.requests,
            [payload],
            job_id.encode(),
        )
        poll(
            lambda: "RegistryUnavailable" in pipeline.worker.log_tail(200),
            90,
            "the worker to find the registry unavailable",
        )
        assert pipeline.api.get(f"/api/v1/jobs/{job_id}").status == 404, "held, not lost"
    finally:
        os.kill(pipeline.registry_pid, signal.SIGCONT)
    done = _terminal(pipeline, job_id)
    assert (done["status"], done["successful"]) == ("COMPLETED", 5), done
    assert all_dead_letters(pipeline.settings, job_id.encode()) == []
