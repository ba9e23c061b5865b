"""Avro codec: both framings, schema examples, evolution, bad bytes."""

import json
from pathlib import Path

import pytest
from fastavro.validation import validate

from domain.codec import (
    HEADER_SIZE,
    MAGIC,
    AvroCodec,
    Framing,
    UndecodableMessage,
    UnknownSchemaId,
    confluent_header,
    confluent_schema_id,
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
    assert reader.latest.version == 3
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


def test_a_v2_reader_resolves_the_v3_statuses_of_a_revert_to_its_default():
    """bulk.outcomes v3 adds DELETED and RESTORED; a v2 reader given the writer schema (a
    Schema Registry) reads them as its enum default, FAILED; without it the v3 fingerprint is
    unknown to it (a typed error, never a wrong status)."""
    named = load_named_types(SCHEMAS / "entities")
    raw_v2 = json.loads((SCHEMAS / "topics" / "bulk.outcomes" / "v2.avsc").read_text())
    old_reader = AvroCodec("bulk.outcomes", {2: parse_topic_schema(raw_v2, named)})
    writer = load_codec(SCHEMAS, "bulk.outcomes")
    event = {**OUTCOME_V2, "status": "DELETED", "error_code": None, "error_message": None}
    payload = writer.encode(event)
    assert writer.decode(payload)["status"] == "DELETED"
    with pytest.raises(UndecodableMessage) as caught:
        old_reader.decode(payload)
    assert caught.value.reason == "unknown-schema"
    old_reader.learn(42, writer.latest.parsed)
    registry_framed = confluent_header(42) + payload[HEADER_SIZE:]
    assert old_reader.decode(registry_framed)["status"] == "FAILED"


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


# --- the Confluent wire format (a Schema Registry configured) ---------------------------------

OUTCOME_V2 = {
    "job_id": "j",
    "tenant_id": "t",
    "entity": "customers",
    "index": 7,
    "key": "c-7",
    "status": "FAILED",
    "record_id": None,
    "error_code": "InvalidEmail",
    "error_message": "not an address",
    "error_field": "email",
    "line": None,
}


def outcome_codecs() -> tuple[AvroCodec, AvroCodec]:
    """(the newest bulk.outcomes codec, one that can write only v1)."""
    named = load_named_types(SCHEMAS / "entities")
    raw_v1 = json.loads((SCHEMAS / "topics" / "bulk.outcomes" / "v1.avsc").read_text())
    return load_codec(SCHEMAS, "bulk.outcomes"), AvroCodec(
        "bulk.outcomes", {1: parse_topic_schema(raw_v1, named)}
    )


def test_a_codec_framed_with_a_registry_id_writes_the_confluent_wire_format():
    codec, _ = outcome_codecs()
    codec.learn(42, codec.latest.parsed)
    codec.frame_with_registry_id(42)
    framed = codec.encode(OUTCOME_V2)
    assert framed[:5] == b"\x00\x00\x00\x00\x2a"
    assert confluent_schema_id(framed) == 42
    assert codec.decode(framed) == OUTCOME_V2
    assert codec.framing is Framing.CONFLUENT


def test_both_framings_decode_side_by_side_and_an_older_writer_id_is_resolved():
    reader, old_writer = outcome_codecs()
    reader.learn(1, old_writer.latest.parsed)
    reader.learn(2, reader.latest.parsed)
    old_writer.learn(1, old_writer.latest.parsed)
    old_writer.frame_with_registry_id(1)
    v1_event = {k: v for k, v in OUTCOME_V2.items() if k not in ("error_field", "line")}
    from_registry = reader.decode(old_writer.encode(v1_event))
    assert from_registry["index"] == 7 and from_registry["error_field"] is None
    assert reader.writer_of(old_writer.encode(v1_event)).version == 1
    single_object = reader.encode(OUTCOME_V2)
    assert single_object[:2] == MAGIC and reader.decode(single_object) == OUTCOME_V2


def test_an_unknown_registry_id_is_a_typed_error_naming_the_id():
    codec, _ = outcome_codecs()
    codec.learn(2, codec.latest.parsed)
    with pytest.raises(UnknownSchemaId) as caught:
        codec.decode(confluent_header(99) + b"\x02")
    assert caught.value.reason == "unknown-schema-id" and caught.value.schema_id == 99


def test_without_a_registry_a_leading_zero_is_not_a_framing():
    codec, _ = outcome_codecs()
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(confluent_header(2) + codec.encode(OUTCOME_V2)[HEADER_SIZE:])
    assert caught.value.reason == "not-single-object-encoded"
    codec.learn(2, codec.latest.parsed)
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode(b"{not avro}")
    assert caught.value.reason == "unknown-framing"


def test_only_the_newest_version_id_frames_what_the_codec_writes():
    codec, old_writer = outcome_codecs()
    codec.learn(1, old_writer.latest.parsed)
    with pytest.raises(ValueError, match="not the newest"):
        codec.frame_with_registry_id(1)
    with pytest.raises(ValueError, match="not the newest"):
        codec.frame_with_registry_id(5)
