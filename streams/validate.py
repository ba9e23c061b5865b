"""Validate + partition: a request chunk becomes ``RecordBatch`` messages, one or more per
owning partition (pure apart from the reference types it is handed).

Every record gets the gateway's full basic validation — whatever ``source`` the chunk claims,
nothing on ``bulk.requests`` is trusted — then the semantic rules that need no entity rows
(country and currency codes, real dates, the tenant's reference types). A failed record travels
on with its failure so the persist stage records its outcome like any other; it carries its
values only when they fit the entity's Avro schema and are small enough to report
(:data:`MAX_KEPT_RECORD_CHARS`), so a hostile record never inflates a batch.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastavro.validation import validate as avro_valid

from domain.chunks import RequestChunk
from domain.entities import EntityDefinition, EntityRegistry
from domain.job_options import with_defaults
from domain.messages import BatchHeader, RecordBatch, RoutedRecord
from domain.outcomes import RecordFailure
from domain.routing import partition_for, routing_key
from domain.semantics import semantic_error
from domain.text import storable
from domain.validation import record_basic_failure, to_avro_record

MAX_KEPT_RECORD_CHARS = 65_536
"""A failed record larger than this (as JSON) is reported without its values."""


@dataclass(frozen=True)
class RoutedBatch:
    partition: int
    part_id: str
    payload: bytes  # an encoded RecordBatch


def routed_record(
    definition: EntityDefinition,
    index: int,
    record: object,
    reference_types: Mapping[str, frozenset[str]],
) -> RoutedRecord:
    """One record as the persist stage takes it (without the union branch named)."""
    failure = None
    basic = record_basic_failure(definition, record, index)
    if basic is not None:
        failure = RecordFailure(basic.error_code, basic.message, basic.field)
    elif isinstance(record, dict):
        semantic = semantic_error(definition, record, reference_types)
        if semantic is not None:
            code, field, message = semantic
            failure = RecordFailure(code, message, field)
    key = record.get(definition.key_field) if isinstance(record, dict) else None
    return {
        "index": index,
        "key": storable(key) if isinstance(key, str) and key else None,
        "record": record if failure is None else kept_record(definition, record),
        "error": failure.to_avro() if failure is not None else None,
        "line": None,
        "source": None,
    }


def kept_record(definition: EntityDefinition, record: object) -> dict[str, Any] | None:
    """A failed record's values for the report, if they fit the schema and are not huge."""
    if not isinstance(record, dict):
        return None
    try:
        if len(json.dumps(record, default=str)) > MAX_KEPT_RECORD_CHARS:
            return None
        candidate = storable(to_avro_record(definition, record))
        if avro_valid(candidate, definition.avro_schema, raise_errors=False):
            return candidate
    except (TypeError, ValueError, AttributeError, OverflowError, RecursionError):
        pass
    return None


def route_chunk(
    registry: EntityRegistry,
    chunk: RequestChunk,
    reference_types: Mapping[str, frozenset[str]],
    partitions: int,
    encode: Callable[[RecordBatch], bytes],
    max_message_bytes: int,
) -> list[RoutedBatch]:
    """Split one (envelope-checked) request chunk by the partition that owns each record."""
    definition = registry.get(chunk.entity)
    by_partition: dict[int, list[RoutedRecord]] = defaultdict(list)
    defaults = chunk.options.defaults
    for offset, record in enumerate(chunk.records):
        index = chunk.first_index + offset
        routed = routed_record(definition, index, with_defaults(record, defaults), reference_types)
        key = routing_key(chunk.tenant_id, chunk.entity, routed["key"], index)
        by_partition[partition_for(key, partitions)].append(routed)
    branch = str(definition.avro_schema["name"])  # fastavro's parsed schema: the full name
    header = BatchHeader(
        chunk.job_id, chunk.tenant_id, chunk.entity, chunk.operation.value, chunk.total
    )
    return [
        RoutedBatch(partition, part_id, payload)
        for partition, records in sorted(by_partition.items())
        for part_id, payload in header.encoded_parts(
            encode,
            f"{chunk.chunk_index}:{partition}",
            [_with_branch(r, branch) for r in records],
            max_message_bytes,
        )
    ]


def _with_branch(routed: RoutedRecord, branch: str) -> RoutedRecord:
    """Name the union branch explicitly: faster than fastavro guessing, and unambiguous."""
    if routed["record"] is not None:
        return {**routed, "record": (branch, routed["record"])}
    return routed
