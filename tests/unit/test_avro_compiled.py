"""The compiled Avro fast path agrees with fastavro: the same bytes for every datum it encodes,
the same datum for every payload it decodes, and it never accepts a payload fastavro refuses."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.avro_compiled import _named_types, compile_codec
from domain.codec import HEADER_SIZE, AvroCodec, UndecodableMessage, load_codec, topic_keys
from domain.entities import EntityRegistry, default_schemas_dir
from domain.validation import basic_record_errors, encodable_record, to_avro_record

SCHEMAS = default_schemas_dir()
FAMILIES = list(topic_keys(SCHEMAS))
CODECS = {family: load_codec(SCHEMAS, family) for family in FAMILIES}


def data_of(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Valid data for a parsed schema; several-branch unions in (name, value) notation, as
    the pipeline writes them."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        branches = [named.get(b, b) if isinstance(b, str) else b for b in schema]
        others = [b for b in branches if b != "null"]
        options = [st.none()] if "null" in branches else []
        if len(others) == 1:
            options.append(data_of(others[0], named))
        else:
            # Named branches in (name, value) notation; primitive ones (a default's value) as
            # plain values, told apart by their Python type.
            options += [
                data_of(b, named).map(lambda v, b=b: (b["name"], v))
                if isinstance(b, dict) and "name" in b
                else data_of(b, named)
                for b in others
            ]
        return st.one_of(options)
    kind = schema["type"] if isinstance(schema, dict) else schema
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        moments = st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        )
        return st.one_of(moments, st.integers(0, 2**41))
    simple = {
        "string": st.text(max_size=12),
        "long": st.integers(-(2**63), 2**63 - 1),
        "int": st.integers(-(2**31), 2**31 - 1),
        "double": st.floats(allow_nan=False),
        "boolean": st.booleans(),
        "null": st.none(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(data_of(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=6), data_of(schema["values"], named), max_size=3)
    assert kind == "record", kind
    return st.fixed_dictionaries(
        {field["name"]: data_of(field["type"], named) for field in schema["fields"]}
    )


def fastavro_bytes(parsed: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parsed, datum)
    return buffer.getvalue()


def fastavro_datum(parsed: Any, payload: bytes) -> Any:
    return schemaless_reader(io.BytesIO(payload), parsed, None)


@st.composite
def family_and_datum(draw: st.DrawFn) -> tuple[str, Any]:
    family = draw(st.sampled_from(FAMILIES))
    parsed = CODECS[family].latest.parsed
    return family, draw(data_of(parsed, _named_types(parsed, {})))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family_and_datum())
def test_compiled_encoding_is_fastavros_byte_for_byte(case: tuple[str, Any]) -> None:
    family, datum = case
    parsed = CODECS[family].latest.parsed
    encode, decode = compile_codec(parsed)
    out = bytearray()
    encode(datum, out)
    expected = fastavro_bytes(parsed, datum)
    assert bytes(out) == expected
    assert decode(expected, 0) == (fastavro_datum(parsed, expected), len(expected))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family_and_datum(), st.data())
def test_a_corrupted_payload_decodes_as_fastavro_decodes_it_or_not_at_all(
    case: tuple[str, Any], data: st.DataObject
) -> None:
    family, datum = case
    parsed = CODECS[family].latest.parsed
    _, decode = compile_codec(parsed)
    payload = bytearray(fastavro_bytes(parsed, datum))
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.integers(0, len(payload)))
        change = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if change == "flip" and where < len(payload):
            payload[where] = data.draw(st.integers(0, 255))
        elif change == "cut":
            del payload[where:]
        else:
            payload[where:where] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        ours = decode(bytes(payload), 0)[0]
    except Exception:
        return  # the codec then asks fastavro, whose answer stands
    assert ours == fastavro_datum(parsed, bytes(payload))


@pytest.mark.parametrize("family", FAMILIES)
def test_the_codec_falls_back_to_fastavro_for_what_it_does_not_compile(family: str) -> None:
    """The examples name no union branch (a record in ``[Customer, Product]`` only fastavro can
    place), and a body of 0xFF bytes the compiled reader refuses: fastavro's answer stands."""
    codec = CODECS[family]
    parsed = codec.latest.parsed
    for example in sorted((SCHEMAS / "topics" / family / "examples").glob("*.json")):
        datum = json.loads(example.read_text())
        payload = codec.encode(datum)
        assert payload[HEADER_SIZE:] == fastavro_bytes(parsed, datum)
        assert codec.decode(payload) == fastavro_datum(parsed, payload[HEADER_SIZE:])
        with pytest.raises(UndecodableMessage):
            codec.decode(payload[:HEADER_SIZE] + b"\xff" * 3)


REGISTRY = EntityRegistry.load(SCHEMAS)
VALID_RECORDS = [
    ("customers", {"externalId": "c-1", "firstName": "Ada", "lastName": "L"}),
    (
        "customers",
        {
            "externalId": "c-2",
            "firstName": "Ada",
            "lastName": "L",
            "email": None,
            "addresses": [{"type": "work", "line1": "1 St", "city": "X", "country": "GB"}],
        },
    ),
    ("products", {"sku": "p-1", "name": "Pen", "price": 3, "currency": "EUR", "active": None}),
    ("products", {"sku": "p-2", "name": "Ink", "price": 2.5, "currency": "EUR"}),
]


@pytest.mark.parametrize(("entity", "record"), VALID_RECORDS)
def test_the_gateway_encodes_a_record_uncopied_to_the_bytes_of_its_avro_copy(
    entity: str, record: dict[str, Any]
) -> None:
    definition = REGISTRY.get(entity)
    assert basic_record_errors(definition, record, 0) == []
    codec = CODECS["bulk.requests"]
    branch = definition.avro_schema["name"]

    def chunk(records: list[Any]) -> dict[str, Any]:
        return {
            "job_id": "j",
            "tenant_id": "t",
            "entity": entity,
            "operation": "upsert",
            "source": "api",
            "webhook_url": None,
            "chunk_index": 0,
            "chunk_count": 1,
            "total": 1,
            "first_index": 0,
            "records": records,
            "submitted_at": datetime(2026, 12, 1, tzinfo=UTC),
        }

    uncopied = codec.encode(chunk([(branch, encodable_record(definition, record))]))
    copied = codec.encode(chunk([(branch, to_avro_record(definition, record))]))
    assert uncopied == copied


def test_a_schema_with_a_type_it_does_not_compile_is_left_to_fastavro() -> None:
    schema = {
        "type": "record",
        "name": "Blob",
        "fields": [{"name": "data", "type": "bytes"}, {"name": "ratio", "type": "float"}],
    }
    codec = AvroCodec("blobs", {1: parse_schema(schema)})
    datum = {"data": b"\x00\x01", "ratio": 0.5}
    assert codec.decode(codec.encode(datum)) == datum
