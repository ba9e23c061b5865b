"""Request chunks on ``bulk.requests`` are untrusted: what one must hold to be processed (pure).

Whatever ``source`` a chunk claims, the validate stage checks, in this order:

1. its **envelope** (:func:`parse_chunk`): job and tenant ids are UUIDs, the entity is known,
   the operation is one of ours, the webhook URL well-formed, ``1 <= total <= max_job_records``;
2. its **bookkeeping** against itself (:func:`parse_chunk`): ``0 <= chunk_index < chunk_count
   <= total``, at least one record, ``first_index >= 0`` and ``first_index + len(records) <=
   total`` (no index twice within it, by construction);
3. against the **job row** (:func:`job_mismatch`): same tenant, entity, operation, total and
   job options (:mod:`domain.job_options`, checked like a request's in step 1), and not a file
   import (those take no chunks) — a chunk that names someone else's job is
   refused and that job is left untouched;
4. against the **chunks the job took before** (:func:`bookkeeping_problem`): the same
   ``chunk_count``, no range overlapping another chunk's, the same range when a chunk index
   comes again (a redelivery).

Every record then gets the full basic validation of the gateway, and the semantic one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from domain.bulk_requests import Operation, parse_operation, parse_webhook_url
from domain.entities import EntityRegistry
from domain.errors import BulkIngestError, InvalidInput
from domain.job_options import NO_OPTIONS, JobOptions, options_from_message


class InvalidChunk(BulkIngestError):
    """A chunk that cannot be processed; ``reason`` is the dead-letter reason word.

    ``chunk`` is set when the envelope was fine and only the bookkeeping is wrong: such a chunk
    still names a job it may end (its records fail as ``RecordNotProcessed``).
    """

    def __init__(self, reason: str, detail: str, chunk: RequestChunk | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.chunk = chunk


@dataclass(frozen=True)
class RequestChunk:
    """A chunk whose envelope passed; ``records`` are as decoded, not yet validated."""

    job_id: str
    tenant_id: str
    entity: str
    operation: Operation
    webhook_url: str | None
    chunk_index: int
    chunk_count: int
    total: int
    first_index: int
    records: Sequence[Any]
    options: JobOptions = NO_OPTIONS

    @property
    def end_index(self) -> int:
        """One past the job-wide index of the chunk's last record."""
        return self.first_index + len(self.records)

    @property
    def range(self) -> ChunkRange:
        return ChunkRange(self.chunk_index, self.chunk_count, self.first_index, len(self.records))


@dataclass(frozen=True)
class ChunkRange:
    """The bookkeeping of one chunk as the job's row of chunks keeps it."""

    chunk_index: int
    chunk_count: int
    first_index: int
    record_count: int

    @property
    def end_index(self) -> int:
        return self.first_index + self.record_count

    def overlaps(self, other: ChunkRange) -> bool:
        return self.first_index < other.end_index and other.first_index < self.end_index

    def __str__(self) -> str:
        return f"chunk {self.chunk_index} (records {self.first_index}..{self.end_index - 1})"


@dataclass(frozen=True)
class JobIdentity:
    """What a chunk must agree with in the job row."""

    tenant_id: str
    entity: str
    operation: str
    total: int
    source: str
    options: JobOptions = NO_OPTIONS


def parse_chunk(
    decoded: Mapping[str, Any], registry: EntityRegistry, max_job_records: int
) -> RequestChunk:
    """The chunk's envelope and self-consistent bookkeeping; :class:`InvalidChunk` otherwise."""
    job_id = _uuid(decoded.get("job_id"), "job_id")
    tenant_id = _uuid(decoded.get("tenant_id"), "tenant_id")
    entity = decoded.get("entity")
    if not isinstance(entity, str) or entity not in registry:
        known = ", ".join(registry.names())
        raise InvalidChunk("invalid-chunk", f"entity {entity!r} is not one of {known}")
    try:
        operation = parse_operation(decoded.get("operation"), Operation.INSERT)
        webhook_url = parse_webhook_url(decoded.get("webhook_url"))
        options = options_from_message(registry.get(entity), decoded)
    except InvalidInput as exc:
        raise InvalidChunk("invalid-chunk", exc.errors[0].message) from exc
    total = decoded.get("total")
    if not isinstance(total, int) or not 1 <= total <= max_job_records:
        raise InvalidChunk(
            "invalid-chunk", f"total must be between 1 and {max_job_records}, got {total!r}"
        )
    records = decoded.get("records")
    chunk = RequestChunk(
        job_id=job_id,
        tenant_id=tenant_id,
        entity=entity,
        operation=operation,
        webhook_url=webhook_url,
        chunk_index=_int(decoded.get("chunk_index")),
        chunk_count=_int(decoded.get("chunk_count")),
        total=total,
        first_index=_int(decoded.get("first_index")),
        records=records if isinstance(records, list) else [],
        options=options,
    )
    problem = _self_inconsistency(chunk)
    if problem is not None:
        raise InvalidChunk("invalid-chunk-bookkeeping", problem, chunk)
    return chunk


def _uuid(value: object, name: str) -> str:
    try:
        return str(uuid.UUID(str(value))) if isinstance(value, str) else _not_uuid(name, value)
    except ValueError:
        return _not_uuid(name, value)


def _not_uuid(name: str, value: object) -> str:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise InvalidChunk("invalid-chunk", f"{name} must be a UUID, got {shown}")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _self_inconsistency(chunk: RequestChunk) -> str | None:
    if not 1 <= chunk.chunk_count <= chunk.total:
        return f"chunk_count must be between 1 and total ({chunk.total}), got {chunk.chunk_count}"
    if not 0 <= chunk.chunk_index < chunk.chunk_count:
        return f"chunk_index {chunk.chunk_index} is not below chunk_count {chunk.chunk_count}"
    if not chunk.records:
        return "the chunk has no records"
    if chunk.first_index < 0:
        return f"first_index must not be negative, got {chunk.first_index}"
    if chunk.end_index > chunk.total:
        return (
            f"records {chunk.first_index}..{chunk.end_index - 1} do not fit a job of "
            f"{chunk.total} records (total)"
        )
    return None


def job_mismatch(chunk: RequestChunk, job: JobIdentity) -> str | None:
    """Why the job row refuses this chunk, or ``None`` when they agree."""
    if job.source == "file":
        return f"job {chunk.job_id} is a file import; it takes no request chunks"
    theirs = (job.tenant_id, job.entity, job.operation, job.total)
    ours = (chunk.tenant_id, chunk.entity, chunk.operation.value, chunk.total)
    names = ("tenant_id", "entity", "operation", "total")
    for name, expected, got in zip(names, theirs, ours, strict=True):
        if expected != got:
            return f"job {chunk.job_id} has another {name} than this chunk"
    if job.options.identity() != chunk.options.identity():
        return f"job {chunk.job_id} has other job options than this chunk"
    return None


def bookkeeping_problem(chunk: RequestChunk, earlier: Sequence[ChunkRange]) -> str | None:
    """Why this chunk contradicts the chunks its job took before, or ``None``."""
    mine = chunk.range
    for other in earlier:
        if other.chunk_count != mine.chunk_count:
            return f"chunk_count {mine.chunk_count} differs from {other}'s {other.chunk_count}"
        if other.chunk_index == mine.chunk_index:
            if other != mine:
                return f"{mine} was received before as {other}"
        elif other.overlaps(mine):
            return f"{mine} overlaps {other}"
    return None


def is_redelivery(chunk: RequestChunk, earlier: Sequence[ChunkRange]) -> bool:
    return chunk.range in earlier
