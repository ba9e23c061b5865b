"""Deciding each record's outcome from what the entity table already holds (pure).

The persist stage reads the rows its batch touches, calls :func:`decide_batch`, writes what it
returns in one transaction, and emits the outcomes.

Records are applied in **acceptance order**: by their job's acceptance sequence (a database
sequence taken when the job row was registered), then by index within the job. Each decision
sees the ones before it, so "the same key twice in one insert job" fails the later record with
``DuplicateKey`` exactly as if the two had arrived in separate batches. Every row remembers the
:data:`Order` of the write that last reached it; a write ordered before that one — a job
accepted earlier whose records arrive late — loses: the row keeps the later value and the
record's outcome is ``UNCHANGED``. A later write of identical values is still recorded as the
row's last write (its outcome is ``UNCHANGED`` too), so an earlier job arriving after it loses.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from domain.errors import ErrorCode
from domain.jobs import RecordStatus
from domain.text import json_storable, storable


@dataclass(frozen=True)
class RecordFailure:
    """Why one record failed: the one shape a failure travels in, from the check that found it
    (gateway, validate stage, file row) through ``bulk.records`` to the ledger and the event."""

    code: str  # an ErrorCode value
    message: str
    field: str | None = None

    def to_avro(self) -> dict[str, Any]:
        """The ``RecordError`` of a routed record (schemas/topics/bulk.records)."""
        return {"code": str(self.code), "field": self.field, "message": self.message}

    @classmethod
    def from_avro(cls, error: Mapping[str, Any]) -> RecordFailure:
        return cls(error["code"], error["message"], error["field"])


class PendingRecord(NamedTuple):
    """One record on its way into the entity table.

    Named tuples, not frozen dataclasses, for this and :class:`Outcome`: there are two of them
    per record in the persist stage, and a frozen dataclass takes three times as long to build
    (docs/decisions.md, "Per-record value objects are named tuples").
    """

    job_id: str
    tenant_id: str
    entity: str
    operation: str
    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here calls
    key: str | None
    record: Mapping[str, Any] | None
    failure: RecordFailure | None = None
    line: int | None = None
    source: Mapping[str, str] | None = None  # file imports: first mapped source columns

    @property
    def row_key(self) -> tuple[str, str, str]:
        return (self.tenant_id, self.entity, self.key or "")


class Outcome(NamedTuple):
    """What happened to one record; the ledger row and the ``bulk.outcomes`` event."""

    job_id: str
    tenant_id: str
    entity: str
    index: int  # type: ignore[assignment]  # shadows tuple.index, which nothing here calls
    key: str | None
    status: RecordStatus
    record_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_field: str | None = None
    line: int | None = None
    submitted: Mapping[str, Any] | None = None  # kept for failed records, for the report
    source: Mapping[str, str] | None = None  # file imports: first mapped source columns

    @property
    def successful(self) -> bool:
        return self.status not in (RecordStatus.FAILED, RecordStatus.SKIPPED)

    def to_avro(self) -> dict[str, Any]:
        """The ``RecordOutcome`` event (schemas/topics/bulk.outcomes): the ledger row without
        the report's ``submitted`` and ``source``."""
        return {
            "job_id": self.job_id,
            "tenant_id": self.tenant_id,
            "entity": self.entity,
            "index": self.index,
            "key": self.key,
            "status": self.status.value,
            "record_id": self.record_id,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "error_field": self.error_field,
            "line": self.line,
        }

    @classmethod
    def from_avro(cls, event: Mapping[str, Any]) -> Outcome:
        return cls(
            job_id=event["job_id"],
            tenant_id=event["tenant_id"],
            entity=event["entity"],
            index=event["index"],
            key=event["key"],
            status=RecordStatus(event["status"]),
            record_id=event["record_id"],
            error_code=event["error_code"],
            error_message=event["error_message"],
            error_field=event["error_field"],
            line=event["line"],
        )


Order = tuple[int, int]
"""(acceptance sequence of the job, record index): the order in which writes apply."""

BEFORE_ALL: Order = (0, -1)
"""The order of a row written before acceptance order was recorded."""


class StoredRow(NamedTuple):
    record_id: str
    values: Mapping[str, Any]
    last: Order = BEFORE_ALL  # the write that last reached the row
    last_job_id: str | None = None  # the job of that write (None: unknown, or before 0005)


BeforeKey = tuple[str, tuple[str, str, str]]
"""(job id, row key): one job's first write to one row."""


@dataclass
class Writes:
    """Entity-table changes of one batch, keyed by the row's (tenant, entity, key)."""

    inserts: dict[tuple[str, str, str], tuple[str, PendingRecord]] = field(default_factory=dict)
    updates: dict[tuple[str, str, str], tuple[str, PendingRecord]] = field(default_factory=dict)
    before: dict[BeforeKey, tuple[str, StoredRow]] = field(default_factory=dict)
    """Per job and row it updated, (record id, the row before that job's first write to it in
    this batch): the before-image a revert restores (storage.before_images). A row a job
    created needs none: its ``CREATED`` outcome in the ledger says so."""


def _failed(record: PendingRecord, code: str, message: str, field_: str | None) -> Outcome:
    """A failed record's outcome: whatever the client sent, it can be stored and reported
    (code points no storage holds are replaced, see :func:`domain.text.storable`)."""
    return Outcome(
        job_id=record.job_id,
        tenant_id=record.tenant_id,
        entity=record.entity,
        index=record.index,
        key=storable(record.key),
        status=RecordStatus.FAILED,
        error_code=code,
        error_message=storable(message),
        error_field=storable(field_),
        line=record.line,
        submitted=json_storable(record.record),
        source=storable(record.source),
    )


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_record_id() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())`` gives it
    but without building a ``UUID`` object: a third of the time, and there is one per record."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _succeeded(record: PendingRecord, status: RecordStatus, record_id: str) -> Outcome:
    return Outcome(
        job_id=record.job_id,
        tenant_id=record.tenant_id,
        entity=record.entity,
        index=record.index,
        key=record.key,
        status=status,
        record_id=record_id,
        line=record.line,
        source=record.source,
    )


def decide_record(
    record: PendingRecord,
    current: MutableMapping[tuple[str, str, str], StoredRow],
    writes: Writes,
    key_field: str,
    order: Order = BEFORE_ALL,
) -> Outcome:
    """The outcome of one record given the rows as they stand after the records before it;
    ``order`` is the record's place in acceptance order."""
    if record.failure is not None:
        f = record.failure
        return _failed(record, f.code, f.message, f.field)
    assert record.record is not None and record.key is not None
    existing = current.get(record.row_key)
    if record.operation == "insert" and existing is not None:
        return _failed(
            record, ErrorCode.DuplicateKey, f"{key_field} {record.key} already exists", key_field
        )
    if record.operation == "update" and existing is None:
        return _failed(
            record, ErrorCode.RecordNotFound, f"{key_field} {record.key} does not exist", key_field
        )
    if existing is None:
        record_id = new_record_id()
        current[record.row_key] = StoredRow(record_id, record.record, order, record.job_id)
        writes.inserts[record.row_key] = (record_id, record)
        return _succeeded(record, RecordStatus.CREATED, record_id)
    if order < existing.last:  # a later job wrote the row already: this write loses
        return _succeeded(record, RecordStatus.UNCHANGED, existing.record_id)
    unchanged = dict(existing.values) == dict(record.record)
    current[record.row_key] = StoredRow(existing.record_id, record.record, order, record.job_id)
    writes.before.setdefault((record.job_id, record.row_key), (existing.record_id, existing))
    if record.row_key in writes.inserts:  # created earlier in this batch: insert the final value
        writes.inserts[record.row_key] = (existing.record_id, record)
    else:  # also when unchanged: the row must remember this (later) write
        writes.updates[record.row_key] = (existing.record_id, record)
    status = RecordStatus.UNCHANGED if unchanged else RecordStatus.UPDATED
    return _succeeded(record, status, existing.record_id)


def decide_batch(
    records: Iterable[PendingRecord],
    stored: Mapping[tuple[str, str, str], StoredRow],
    key_fields: Mapping[str, str],
    sequences: Mapping[str, int],
) -> tuple[list[Outcome], Writes]:
    """Outcomes in acceptance order and the writes that make them true.

    ``sequences`` holds each job's acceptance sequence.
    """
    current = dict(stored)
    writes = Writes()
    ordered = sorted(records, key=lambda r: (sequences[r.job_id], r.index))
    outcomes = [
        decide_record(r, current, writes, key_fields[r.entity], (sequences[r.job_id], r.index))
        for r in ordered
    ]
    return outcomes, writes


def part_counts(outcomes: Iterable[Outcome]) -> tuple[int, int, int]:
    """(successful, failed, skipped) of some outcomes."""
    successful = failed = skipped = 0
    for outcome in outcomes:
        if outcome.status is RecordStatus.FAILED:
            failed += 1
        elif outcome.status is RecordStatus.SKIPPED:
            skipped += 1
        else:
            successful += 1
    return successful, failed, skipped
