"""Which partition of the records topic owns a record (one key, one partition, always), and
record batches cut to a size Kafka takes."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def routing_key(tenant_id: str, entity: str, key: str | None, index: int) -> str:
    """``tenant/entity/key``; a record without a usable key is routed by its index instead."""
    return f"{tenant_id}/{entity}/{key}" if key else f"{tenant_id}/{entity}/#{index}"


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and Python versions (unlike ``hash()``)."""
    return zlib.crc32(key.encode()) % partitions


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
