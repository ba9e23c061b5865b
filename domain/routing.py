"""Which partition of the records topic owns a record (one key, one partition, always), which
partition of the requests topic carries a job's chunk, and record batches cut to a size Kafka
takes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from domain.job_options import FieldDefault, with_defaults
from domain.text import storable


def routing_key(tenant_id: str, entity: str, key: str | None, index: int) -> str:
    """``tenant/entity/key``; a record without a usable key is routed by its index instead."""
    return f"{tenant_id}/{entity}/{key}" if key else f"{tenant_id}/{entity}/#{index}"


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and Python versions (unlike ``hash()``)."""
    return zlib.crc32(key.encode()) % partitions


def usable_key(value: object) -> str | None:
    """A record's key as routing takes it: a non-empty string, made storable; None otherwise
    (the record is then routed by its index, :func:`routing_key`)."""
    return storable(value) if isinstance(value, str) and value else None


def keys_all_distinct(
    key_field: str, records: Iterable[object], defaults: Sequence[FieldDefault]
) -> bool:
    """Whether no key occurs twice among a job's records, taken as the validate stage takes
    them (defaults applied, :func:`usable_key`). Records without a key never collide. (A JSON
    job may not default its key field, ``InvalidValue``; the check stays exact regardless.)"""
    seen: set[str] = set()
    for record in records:
        filled = with_defaults(record, defaults)
        key = usable_key(filled.get(key_field)) if isinstance(filled, dict) else None
        if key is None:
            continue
        if key in seen:
            return False
        seen.add(key)
    return True


def chunk_partition(job_id: str, chunk_index: int, partitions: int) -> int:
    """The ``bulk.requests`` partition of a spread job's chunk: the chunks take the partitions
    in turn from the one its id hashes to, so every worker validates a share of one big job.

    Only a job whose keys are all distinct may be spread (:func:`keys_all_distinct`): two
    chunks holding the same key, validated by two workers, can reach that key's records
    partition in either order, and an insert's ``DuplicateKey`` or a dry run's outcomes would
    then depend on the race (docs/decisions.md, 2026-12-03). Any other job is keyed by its id
    alone, and one worker validates its chunks in order.
    """
    return (zlib.crc32(job_id.encode()) + chunk_index) % partitions


def encode_parts(
    encode: Callable[[Mapping[str, Any]], bytes],
    header: Mapping[str, Any],
    part_id: str,
    records: Sequence[Any],
    max_bytes: int,
) -> list[tuple[str, bytes]]:
    """One ``RecordBatch`` as (part id, payload) messages of at most ``max_bytes`` each.

    A batch too large for one message is halved (part ids ``<id>.0`` and ``<id>.1``), again
    and again; the split depends only on the records, so a redelivery yields the same parts.
    """
    payload = encode({**header, "part_id": part_id, "records": list(records)})
    if len(payload) <= max_bytes or len(records) <= 1:
        return [(part_id, payload)]
    middle = len(records) // 2
    return [
        *encode_parts(encode, header, f"{part_id}.0", records[:middle], max_bytes),
        *encode_parts(encode, header, f"{part_id}.1", records[middle:], max_bytes),
    ]
