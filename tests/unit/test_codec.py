"""Avro single-object codec: framing, schema examples, evolution, bad bytes."""

import json
from pathlib import Path

import pytest
from fastavro.validation import validate

from domain.codec import (
    MAGIC,
    AvroCodec,
    UndecodableMessage,
    load_codec,
    load_named_types,
    parse_topic_schema,
    schema_fingerprint,
    topic_keys,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = sorted((SCHEMAS / "topics").glob("*/examples/*.json"))


def test_fingerprint_matches_the_avro_specification_vector():
    assert schema_fingerprint("int").hex() == "8f5c393f1ad57572"


def test_every_topic_with_a_schema_has_examples():
    for key in topic_keys(SCHEMAS):
        assert list((SCHEMAS / "topics" / key / "examples").glob("*.json")), key


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_example_payload_is_valid_and_round_trips(example: Path):
    codec = load_codec(SCHEMAS, example.parent.parent.name)
    payload = json.loads(example.read_text())
    assert validate(payload, codec.latest.parsed, raise_errors=True)
    framed = codec.encode(payload)
    assert framed[:2] == MAGIC
    assert framed[2:10] == codec.latest.fingerprint
    decoded = codec.decode(framed)
    assert decoded["job_id"] == payload["job_id"]
    assert set(decoded) == set(payload)


def test_message_written_with_an_older_version_is_read_by_the_newer_one():
    named = load_named_types(SCHEMAS / "entities")
    raw_v1 = json.loads((SCHEMAS / "topics" / "bulk.outcomes" / "v1.avsc").read_text())
    old_writer = AvroCodec("bulk.outcomes", {1: parse_topic_schema(raw_v1, named)})
    reader = load_codec(SCHEMAS, "bulk.outcomes")
    assert reader.latest.version == 2
    old_event = {
        "job_id": "j",
        "tenant_id": "t",
        "entity": "customers",
        "index": 4,
        "key": "c-4",
        "status": "CREATED",
        "record_id": "r",
        "error_code": None,
        "error_message": None,
    }
    decoded = reader.decode(old_writer.encode(old_event))
    assert decoded["index"] == 4 and decoded["status"] == "CREATED"
    assert decoded["error_field"] is None and decoded["line"] is None


def test_garbage_bytes_raise_a_typed_error():
    codec = load_codec(SCHEMAS, "bulk.jobs")
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(b"{not avro}")
    assert caught.value.reason == "not-single-object-encoded"


def test_unknown_fingerprint_raises_a_typed_error():
    codec = load_codec(SCHEMAS, "bulk.jobs")
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(MAGIC + b"\x00" * 8 + b"\x02")
    assert caught.value.reason == "unknown-schema"


def test_truncated_body_raises_a_typed_error():
    codec = load_codec(SCHEMAS, "bulk.progress")
    framed = codec.encode({"job_id": "j" * 40, "tenant_id": "t", "total": 3, "part_id": "0:0"})
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(framed[:20])
    assert caught.value.reason == "corrupt-body"
