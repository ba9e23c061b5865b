"""Property-based: records generated from the entity schemas, with hostile leaves.

Every generated record is either refused by basic validation — with a code and the field that
is wrong — or accepted; what is accepted survives the Avro codec and the persist step against
the real PostgreSQL unchanged. Both outcomes must be common (each at least 20 % of the
examples), so neither half of the property is tested by accident only.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql

from bulk_ingest.topics import Codecs
from domain.entities import (
    EntityDefinition,
    EntityRegistry,
    ValueKind,
    ValueSpec,
    default_schemas_dir,
)
from domain.errors import ErrorCode
from domain.jobs import RecordStatus
from domain.outcomes import PendingRecord
from domain.validation import basic_record_errors, to_avro_record
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from streams.events import Announcer
from streams.persist_stage import pending_records
from tests.support.jobs import tenant_with_a_live_job

REGISTRY = EntityRegistry.load(default_schemas_dir())
TABLES = {name: EntityTableMap.of(REGISTRY.get(name)) for name in REGISTRY.names()}
LABELS = {name: REGISTRY.get(name).label for name in REGISTRY.names()}
EXAMPLES = 300  # per entity: 600 in all

HOSTILE_CHARACTERS = ["\u0000", "\ud800", "\udfff", "\udc80"]
REFUSAL_CODES = {
    ErrorCode.InvalidFormat,
    ErrorCode.InvalidValue,
    ErrorCode.InvalidFieldType,
    ErrorCode.MissingRequiredField,
    ErrorCode.UnknownField,
}
VISIBLE = st.characters(
    blacklist_categories=("Cs", "Cc", "Cf", "Co", "Cn", "Zl", "Zp"), max_codepoint=0x2FFFF
)


def rarely(hostile: st.SearchStrategy[Any], clean: st.SearchStrategy[Any]) -> st.SearchStrategy:
    """Mostly ``clean``, one time in fourteen ``hostile``."""
    return st.integers(0, 13).flatmap(lambda n: hostile if n == 0 else clean)


def clean_string(spec: ValueSpec) -> st.SearchStrategy[str]:
    low = max(spec.min_length or 0, 1)
    high = spec.max_length or 60
    if spec.format is not None:
        return st.from_regex(spec.format.pattern, fullmatch=True).filter(
            lambda s: low <= len(s) <= high and spec.format.matches(s)  # type: ignore[union-attr]
        )
    return st.text(VISIBLE, min_size=low, max_size=min(high, 40))


def hostile_string(spec: ValueSpec) -> st.SearchStrategy[Any]:
    high = spec.max_length or 60
    injected = st.tuples(clean_string(spec), st.sampled_from(HOSTILE_CHARACTERS)).map(
        lambda pair: pair[0][: max(len(pair[0]) - 1, 0)] + pair[1]
    )
    return st.one_of(
        injected,
        st.text(VISIBLE, min_size=high + 1, max_size=high + 50),  # over-long
        st.just([["nested", ["deeper", ["than the schema"]]]]),
        st.integers(),
    )


def clean_number(spec: ValueSpec) -> st.SearchStrategy[Any]:
    low = spec.minimum if spec.minimum is not None else -1e12
    high = spec.maximum if spec.maximum is not None else 1e12
    return st.one_of(
        st.floats(low, high, allow_nan=False, allow_infinity=False),
        st.integers(math.ceil(low), int(min(high, 2**53))),
    )


def hostile_number(spec: ValueSpec) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [math.nan, math.inf, -math.inf, 10**400, 2**53 + 1, -(10**30), -1, "12.50", None]
    )


def value(spec: ValueSpec) -> st.SearchStrategy[Any]:
    if spec.kind is ValueKind.STRING:
        return rarely(hostile_string(spec), clean_string(spec))
    if spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return rarely(hostile_number(spec), clean_number(spec))
    if spec.kind is ValueKind.BOOLEAN:
        return rarely(st.just("true"), st.booleans())
    if spec.kind is ValueKind.ARRAY:
        assert spec.items is not None
        most = min(spec.max_items or 3, 3)
        items = st.lists(value(spec.items), max_size=most)
        too_many = st.lists(value(spec.items), min_size=(spec.max_items or 3) + 1, max_size=25)
        return st.integers(0, 40).flatmap(lambda n: too_many if n == 0 else items)
    return record_of(spec)


def record_of(spec: ValueSpec) -> st.SearchStrategy[dict[str, Any]]:
    required = {f.name: value(f.value) for f in spec.fields if f.required}
    optional = {f.name: value(f.value) for f in spec.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


def test_generated_records_are_refused_precisely_or_stored_unchanged(settings):
    outcomes: Counter[str] = Counter()
    for name in REGISTRY.names():
        outcomes += run_property(settings, REGISTRY.get(name))
    total = outcomes["refused"] + outcomes["accepted"]
    print(f"property outcomes: {dict(outcomes)}")
    assert total >= 500
    assert outcomes["refused"] >= 0.2 * total, outcomes
    assert outcomes["accepted"] >= 0.2 * total, outcomes


def run_property(settings, definition: EntityDefinition) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    store = Store(settings, definition)

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(record=record_of(definition.record))
    def refused_or_round_trips(record: dict[str, Any]) -> None:
        errors = basic_record_errors(definition, record, 0)
        if errors:
            outcomes["refused"] += 1
            assert {e.error_code for e in errors} <= REFUSAL_CODES, errors
            assert all(e.field and e.index == 0 for e in errors), errors
            return
        outcomes["accepted"] += 1
        avro = to_avro_record(definition, record)
        decoded = store.through_kafka(avro)
        assert decoded == avro
        assert store.persisted(decoded) == avro

    try:
        refused_or_round_trips()
    finally:
        store.close()
    return outcomes


class Store:
    """One upsert job of the entity; each example is one part persisted in its own batch."""

    def __init__(self, settings, definition: EntityDefinition) -> None:
        self.definition = definition
        self.table = TABLES[definition.name]
        self.codecs = Codecs.load(default_schemas_dir())
        self.url = settings.libpq_url
        self.tenant_id, self.job_id = tenant_with_a_live_job(
            settings, "properties", total=1_000_000, entity=definition.name, operation="upsert"
        )
        self.loop = asyncio.new_event_loop()
        encode = Announcer(self.codecs, settings.topics).encode_outcome
        self.persister = BatchPersister(self.url, TABLES, encode, LABELS)
        self.examples = 0

    def through_kafka(self, avro: dict[str, Any]) -> dict[str, Any]:
        """The record as the persist stage decodes it from a RecordBatch."""
        self.examples += 1
        batch = {
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "entity": self.definition.name,
            "operation": "upsert",
            "total": 1000000,
            "part_id": f"p{self.examples}",
            "records": [
                {
                    "index": self.examples,
                    "key": avro[self.definition.key_field],
                    "record": (str(self.definition.avro_schema["name"]), avro),
                    "error": None,
                    "line": None,
                    "source": None,
                }
            ],
        }
        self.last_batch = self.codecs.records.decode(self.codecs.records.encode(batch))
        return dict(self.last_batch["records"][0]["record"])

    def persisted(self, record: dict[str, Any]) -> dict[str, Any]:
        records: list[PendingRecord] = pending_records(self.last_batch)
        part = BatchPart(self.job_id, self.tenant_id, self.last_batch["part_id"], 0, records)
        done = self.loop.run_until_complete(self.persister.persist([part]))
        (outcome,) = done.outcomes
        assert outcome.status in (
            RecordStatus.CREATED,
            RecordStatus.UPDATED,
            RecordStatus.UNCHANGED,
        )
        with psycopg.connect(self.url) as conn:
            # The progress the aggregator records after each batch: without it the running
            # service's incomplete-job sweeper would end this long, quiet job.
            conn.execute("UPDATE jobs SET updated_at = now() WHERE job_id = %s", [self.job_id])
            row = conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE tenant_id = %s AND {} = %s").format(
                    sql.SQL(", ").join(map(sql.Identifier, self.table.columns)),
                    sql.Identifier(self.table.table),
                    sql.Identifier(self.table.key_column),
                ),
                [self.tenant_id, record[self.definition.key_field]],
            ).fetchone()
        assert row is not None
        return self.table.record_from_row(dict(zip(self.table.columns, row, strict=True)))

    def close(self) -> None:
        self.loop.run_until_complete(self.persister.close())
        self.loop.close()
