"""Validate + partition: a request chunk becomes one ``RecordBatch`` per owning partition.

Pure apart from the reference types it is handed: semantic rules that need no entity rows run
here (country and currency codes, real dates, the tenant's reference types); records from
external producers, which never passed the gateway, also get the basic checks. A failed record
travels on with its failure so the persist stage records its outcome like any other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.entities import EntityRegistry
from domain.errors import ErrorCode, InvalidInput
from domain.routing import partition_for, routing_key
from domain.validation import record_basic_failure, semantic_error


@dataclass(frozen=True)
class RoutedBatch:
    partition: int
    payload: dict[str, Any]  # a RecordBatch


def _routed_record(
    registry: EntityRegistry,
    chunk: Mapping[str, Any],
    index: int,
    record: dict[str, Any],
    reference_types: Mapping[str, frozenset[str]],
) -> dict[str, Any]:
    definition = registry.get(chunk["entity"])
    key = record.get(definition.key_field)
    error = None
    if chunk["source"] == "kafka":
        basic = record_basic_failure(definition, record, index)
        if basic is not None:
            error = {"code": basic.error_code.value, "field": basic.field, "message": basic.message}
    if error is None:
        semantic = semantic_error(definition, record, reference_types)
        if semantic is not None:
            code, field, message = semantic
            error = {"code": str(code), "field": field, "message": message}
    return {
        "index": index,
        "key": key if isinstance(key, str) and key else None,
        "record": record,
        "error": error,
        "line": None,
        "source": None,
    }


def _unknown_entity_record(index: int, message: str) -> dict[str, Any]:
    return {
        "index": index,
        "key": None,
        "record": None,
        "error": {"code": ErrorCode.UnknownEntity.value, "field": None, "message": message},
        "line": None,
        "source": None,
    }


def route_chunk(
    registry: EntityRegistry,
    chunk: Mapping[str, Any],
    reference_types: Mapping[str, frozenset[str]],
    partitions: int,
) -> list[RoutedBatch]:
    """Split one request chunk by the partition that owns each record's key."""
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    first = chunk["first_index"]
    for offset, record in enumerate(chunk["records"]):
        index = first + offset
        try:
            routed = _routed_record(registry, chunk, index, record, reference_types)
        except InvalidInput as exc:  # an entity this deployment does not know
            routed = _unknown_entity_record(index, exc.errors[0].message)
        key = routing_key(chunk["tenant_id"], chunk["entity"], routed["key"], index)
        by_partition[partition_for(key, partitions)].append(routed)
    branch = _branch_name(registry, chunk["entity"])
    return [
        RoutedBatch(
            partition,
            {
                "job_id": chunk["job_id"],
                "tenant_id": chunk["tenant_id"],
                "entity": chunk["entity"],
                "operation": chunk["operation"],
                "total": chunk["total"],
                "part_id": f"{chunk['chunk_index']}:{partition}",
                "records": [_with_branch(r, branch) for r in records],
            },
        )
        for partition, records in sorted(by_partition.items())
    ]


def _branch_name(registry: EntityRegistry, entity: str) -> str | None:
    try:
        schema = registry.get(entity).avro_schema
    except InvalidInput:
        return None
    return str(schema["name"])  # fastavro's parsed schema carries the full name


def _with_branch(routed: dict[str, Any], branch: str | None) -> dict[str, Any]:
    """Name the union branch explicitly: faster than fastavro guessing, and unambiguous."""
    if routed["record"] is not None and branch is not None:
        return {**routed, "record": (branch, routed["record"])}
    return routed
