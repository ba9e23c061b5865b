"""Reverting a job (design.md §8), the pure part: what each record of a revert job does.

A revert job's records are the reverted job's before-images, one per row it wrote. Each is
decided on its own — a revert job names every row once — against the row as it stands now:

- the row is gone, or its last write (by acceptance sequence) is no longer the reverted job's,
  or a record of this batch writes it too: a later job changed it, and the revert leaves it
  (``FAILED`` with ``ChangedSince``);
- else the reverted job created it: it is deleted (``DELETED``);
- else it gets its before-image back, values and previous last write (``RESTORED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from domain.errors import ErrorCode
from domain.jobs import RecordStatus
from domain.outcomes import Order, Outcome, PendingRecord, StoredRow

REVERT_OPERATION = "revert"
"""The ``operation`` of a revert job (and of its ``bulk.records`` batches)."""


class BeforeImage(NamedTuple):
    """A row as it was before the reverted job first wrote it (``storage.before_images``)."""

    record_id: str
    before: Mapping[str, Any] | None  # None: the reverted job created the row
    last_job_id: str | None
    last: Order


class Restore(NamedTuple):
    """One entity-row change of a revert: delete the row, or put ``image`` back."""

    record: PendingRecord
    image: BeforeImage

    @property
    def deletes(self) -> bool:
        return self.image.before is None


def decide_revert(
    record: PendingRecord,
    image: BeforeImage | None,
    current: StoredRow | None,
    reverted_seq: int,
    written_in_batch: bool = False,
) -> tuple[Outcome, Restore | None]:
    """The outcome of one revert record and the change that makes it true (None: no change)."""
    key = record.key
    if record.failure is not None:
        return _failed(record, record.failure.code, record.failure.message), None
    if image is None:
        message = f"{key} has no before-image any more (it was purged); the revert leaves it"
        return _failed(record, ErrorCode.RevertExpired, message), None
    if current is None:
        return _failed(record, ErrorCode.ChangedSince, f"{key} was deleted since"), None
    if written_in_batch or current.last[0] != reverted_seq or current.record_id != image.record_id:
        changed_by = f" (by job {current.last_job_id})" if current.last_job_id else ""
        message = f"{key} was changed since{changed_by}; the revert leaves it as it is"
        return _failed(record, ErrorCode.ChangedSince, message, current.record_id), None
    status = RecordStatus.DELETED if image.before is None else RecordStatus.RESTORED
    outcome = Outcome(
        job_id=record.job_id,
        tenant_id=record.tenant_id,
        entity=record.entity,
        index=record.index,
        key=key,
        status=status,
        record_id=current.record_id,
    )
    return outcome, Restore(record, image)


def _failed(
    record: PendingRecord, code: str, message: str, record_id: str | None = None
) -> Outcome:
    return Outcome(
        job_id=record.job_id,
        tenant_id=record.tenant_id,
        entity=record.entity,
        index=record.index,
        key=record.key,
        status=RecordStatus.FAILED,
        record_id=record_id,
        error_code=code,
        error_message=message,
    )
