"""The message of each Kafka topic as a typed value, one class per topic (pure).

Each class mirrors the newest version of its schema in ``schemas/topics/<topic>/`` field for
field: ``to_avro`` gives the datum the topic's codec writes, ``from_avro`` takes the datum it
reads (older writer versions are resolved to the newest schema first, so every field is there).
The topic that carries each class, with its name and codec, is :class:`bulk_ingest.topics.Topic`.

=================  ====================================================
``bulk.requests``  :class:`BulkRequestChunk`
``bulk.records``   :class:`RecordBatch` of :class:`RoutedRecord`
``bulk.outcomes``  :class:`domain.outcomes.Outcome` (the ledger row is the event)
``bulk.jobs``      :class:`JobEvent`
``bulk.progress``  :class:`JobProgressed`
``bulk.imports``   :class:`ImportRequested`
=================  ====================================================

A payload is only as trustworthy as its producer: ``bulk.requests`` is public, so the validate
stage checks its datum field by field (:func:`domain.chunks.parse_chunk`) instead of trusting
:meth:`BulkRequestChunk.from_avro`; the readers of the internal topics check what the schema
cannot (ids are UUIDs, the entity is known).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self, TypedDict

from domain.jobs import JobStatus
from domain.outcomes import PendingRecord, RecordFailure
from domain.routing import encode_parts

_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _field_names(cls: type[Any]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


class _Flat:
    """``to_avro``/``from_avro`` for a message whose fields are its schema's, one for one."""

    __slots__ = ()

    def to_avro(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _field_names(type(self))}

    @classmethod
    def from_avro(cls, datum: Mapping[str, Any]) -> Self:
        return cls(*(datum[name] for name in _field_names(cls)))


@dataclass(frozen=True, slots=True)
class BulkRequestChunk(_Flat):
    """``bulk.requests``: up to ``chunk_records`` records of one job, as a producer sends them.

    ``records`` are entity records; written, each is ``(schema full name, record)`` so the union
    branch is named rather than guessed.
    """

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    source: str
    webhook_url: str | None
    chunk_index: int
    chunk_count: int
    total: int
    first_index: int
    dry_run: bool
    defaults: Sequence[Mapping[str, Any]]
    max_error_rate: float | None
    min_records: int | None
    outcome_events: bool
    records: Sequence[Any]
    submitted_at: datetime


class RoutedRecord(TypedDict):
    """One record of a :class:`RecordBatch` (a mapping: there are thousands per batch).

    ``record`` is written as ``(schema full name, values)`` and read back as the values; it is
    None for a failed record too large or too malformed to keep. ``error`` is a
    :meth:`RecordFailure.to_avro`.
    """

    index: int
    key: str | None
    record: Any
    error: dict[str, Any] | None
    line: int | None
    source: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class RecordBatch(_Flat):
    """``bulk.records``: validated records of one job owned by one partition (internal)."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    total: int  # 0 while a file import does not know it yet
    part_id: str  # "<chunk>:<partition>[.<half>...]", stable across redelivery
    records: Sequence[RoutedRecord]

    def pending_records(self) -> list[PendingRecord]:
        return [
            PendingRecord(
                job_id=self.job_id,
                tenant_id=self.tenant_id,
                entity=self.entity,
                operation=self.operation,
                index=routed["index"],
                key=routed["key"],
                record=routed["record"],
                failure=RecordFailure.from_avro(routed["error"]) if routed["error"] else None,
                line=routed["line"],
                source=routed.get("source"),
            )
            for routed in self.records
        ]


@dataclass(frozen=True)
class BatchHeader:
    """What every :class:`RecordBatch` of one chunk shares; parts differ in id and records."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    total: int

    def batch(self, part_id: str, records: Sequence[RoutedRecord]) -> RecordBatch:
        return RecordBatch(
            self.job_id, self.tenant_id, self.entity, self.operation, self.total, part_id, records
        )

    def encoded_parts(
        self,
        encode: Callable[[RecordBatch], bytes],
        part_id: str,
        records: Sequence[RoutedRecord],
        max_bytes: int,
    ) -> list[tuple[str, bytes]]:
        """The records as (part id, payload) batches of at most ``max_bytes`` each
        (:func:`domain.routing.encode_parts` halves a batch until it fits)."""

        def encode_part(part: Mapping[str, Any]) -> bytes:
            return encode(self.batch(part["part_id"], part["records"]))

        return encode_parts(encode_part, {}, part_id, records, max_bytes)


@dataclass(frozen=True, slots=True)
class JobEvent(_Flat):
    """``bulk.jobs``: a job's row each time its status changes (keyed by job id, compacted)."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    source: str
    status: str  # a JobStatus name
    total: int
    processed: int
    successful: int
    failed: int
    skipped: int
    webhook_url: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> JobEvent:
        """The event of a job row as :mod:`storage.jobs` reads it (extra columns ignored)."""
        return cls.from_avro(row)

    @property
    def job_status(self) -> JobStatus | None:
        """The status, or None when a producer sent a symbol this version does not know."""
        return JobStatus.__members__.get(self.status)


@dataclass(frozen=True, slots=True)
class JobProgressed(_Flat):
    """``bulk.progress``: "recount this job" for the aggregator (it reads the counts itself).

    ``total`` is kept for older readers and always 0; ``part_id`` names who sent the nudge.
    """

    job_id: str
    tenant_id: str
    total: int
    part_id: str

    @classmethod
    def nudge(cls, job_id: str, tenant_id: str, sender: str) -> JobProgressed:
        return cls(job_id, tenant_id, 0, sender)


@dataclass(frozen=True, slots=True)
class ImportRequested(_Flat):
    """``bulk.imports``: read one stored file into a job, from chunk ``resume_chunk`` on."""

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    file_id: str
    path: str
    sha256: str
    format: str  # a FileFormat value
    content: str | None  # inside a ZIP: the members' format
    member: str | None
    encoding: str | None
    delimiter: str | None
    sheet: str | None
    field_mappings: Mapping[str, str | None]
    chunk_rows: int
    resume_chunk: int
    requested_at: datetime

    def resumed_at(self, chunk: int) -> ImportRequested:
        """The event handed over to the partition's next owner: resume at ``chunk``."""
        return dataclasses.replace(self, resume_chunk=max(self.resume_chunk, chunk))
