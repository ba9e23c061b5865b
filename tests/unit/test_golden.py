"""Golden bytes: what leaves the service stays byte-for-byte the same across refactorings.

``tests/golden/`` was written from the code before the issue-10 restructuring: every topic
example payload as encoded on the wire, and the job object and webhook body of a fixture job.
A change here is a change of the public contract, never a side effect.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from domain.codec import load_codec
from domain.entities import default_schemas_dir
from domain.job_view import job_object, webhook_body

SCHEMAS = default_schemas_dir()
GOLDEN = Path(__file__).resolve().parent.parent / "golden"
TOPIC_EXAMPLES = json.loads((GOLDEN / "topic_examples.json").read_text())

FIXTURE_JOB = {
    "job_id": "7c0e8a8e-3f5e-4a8e-9d54-0d7d3c1f2b6a",
    "tenant_id": "5b6f0d2a-1c3e-4f5a-8b7c-9d0e1f2a3b4c",
    "entity": "customers",
    "operation": "upsert",
    "source": "api",
    "status": "COMPLETED_WITH_ERRORS",
    "total": 5000,
    "processed": 5000,
    "successful": 4998,
    "failed": 2,
    "skipped": 0,
    "webhook_url": "https://hooks.example.com/bulk",
    "failure_reason": None,
    "created_at": datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC),
    "started_at": datetime(2026, 12, 1, 10, 0, 1, 456789, tzinfo=UTC),
    "completed_at": datetime(2026, 12, 1, 10, 0, 9, tzinfo=UTC),
    "updated_at": datetime(2026, 12, 1, 10, 0, 9, tzinfo=UTC),
}
FIXTURE_FAILURES = [
    {
        "index": 17,
        "key": "c-17",
        "error_code": "DuplicateKey",
        "error_field": "externalId",
        "error_message": "externalId c-17 already exists",
        "line": None,
    },
    {
        "index": 4242,
        "key": "c-4242",
        "error_code": "InvalidValue",
        "error_field": "addresses.0.country",
        "error_message": "XX is not an ISO 3166-1 country code",
        "line": 4244,
    },
]


@pytest.mark.parametrize("name", sorted(TOPIC_EXAMPLES))
def test_every_topic_example_encodes_to_the_same_bytes(name: str) -> None:
    topic, example = name.split("/")
    codec = load_codec(SCHEMAS, topic)
    payload = json.loads((SCHEMAS / "topics" / topic / "examples" / example).read_text())
    assert codec.encode(payload).hex() == TOPIC_EXAMPLES[name]


@pytest.mark.parametrize("topic", sorted({name.split("/")[0] for name in TOPIC_EXAMPLES}))
def test_our_fingerprints_are_fastavros_crc64_avro(topic: str) -> None:
    codec = load_codec(SCHEMAS, topic)
    parsed = codec.latest.parsed
    assert codec.latest.fingerprint.hex() == fingerprint(
        to_parsing_canonical_form(parsed), "CRC-64-AVRO"
    )


def job_view_bytes() -> tuple[bytes, bytes]:
    job = job_object(FIXTURE_JOB, FIXTURE_FAILURES)
    body = webhook_body("job.completed", "2026-12-01T10:00:09.000Z", job)
    return json.dumps(job, separators=(",", ":")).encode(), body.encode()


def test_the_job_object_and_the_webhook_body_stay_byte_equal() -> None:
    job, body = job_view_bytes()
    assert job == (GOLDEN / "job_object.json").read_bytes()
    assert body == (GOLDEN / "webhook_body.json").read_bytes()
