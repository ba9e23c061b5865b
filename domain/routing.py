"""Which partition of the records topic owns a record: one key, one partition, always."""

from __future__ import annotations

import zlib


def routing_key(tenant_id: str, entity: str, key: str | None, index: int) -> str:
    """``tenant/entity/key``; a record without a usable key is routed by its index instead."""
    return f"{tenant_id}/{entity}/{key}" if key else f"{tenant_id}/{entity}/#{index}"


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and Python versions (unlike ``hash()``)."""
    return zlib.crc32(key.encode()) % partitions
