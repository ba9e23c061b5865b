"""The job state machine, pure.

``PENDING`` (accepted, records being published) → ``READY`` (all published) → ``STARTED`` (first
record processed) → one terminal status. A job may skip forward (its records can all be processed
before the gateway marks it ``READY``), never back, and a terminal job never changes again.

Counts are *absolute*, as counted from the stored outcomes, so applying the same progress twice —
a redelivered batch, a restarted aggregator — changes nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status as the API, the job topic and the database spell it."""

    PENDING = "PENDING"
    READY = "READY"
    STARTED = "STARTED"
    COMPLETED = "COMPLETED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    INTERNAL_FAILURE = "INTERNAL_FAILURE"
    CANCELLED = "CANCELLED"


class RecordStatus(StrEnum):
    """What happened to one record."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    DELETED = "DELETED"  # a revert removed the row the reverted job created
    RESTORED = "RESTORED"  # a revert put back the row the reverted job updated


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.COMPLETED_WITH_ERRORS,
        JobStatus.FAILED,
        JobStatus.INTERNAL_FAILURE,
        JobStatus.CANCELLED,
    }
)

_PROGRESS_ORDER = {JobStatus.PENDING: 0, JobStatus.READY: 1, JobStatus.STARTED: 2}
_TERMINAL_RANK = 3


def is_terminal(status: JobStatus) -> bool:
    """True once the job can never change again."""
    return status in TERMINAL_STATUSES


def allowed_transition(old: JobStatus, new: JobStatus) -> bool:
    """Whether a job may move from ``old`` to a different status ``new``.

    Forward along PENDING → READY → STARTED → terminal, skipping steps allowed; CANCELLED and
    INTERNAL_FAILURE from any non-terminal status; nothing out of a terminal status.
    """
    if is_terminal(old) or old == new:
        return False
    return _rank(new) > _rank(old)


def _rank(status: JobStatus) -> int:
    return _PROGRESS_ORDER.get(status, _TERMINAL_RANK)


def terminal_status_for(total: int, successful: int, failed: int, skipped: int = 0) -> JobStatus:
    """The terminal status of a job whose records are all processed.

    No failure (an empty job included): COMPLETED. Failures and no success: FAILED. Otherwise
    COMPLETED_WITH_ERRORS. Skipped records are neither.
    """
    if failed == 0 or total == 0:
        return JobStatus.COMPLETED
    if successful == 0:
        return JobStatus.FAILED
    return JobStatus.COMPLETED_WITH_ERRORS


@dataclass(frozen=True)
class JobProgress:
    """A job's status and counts; ``processed == successful + failed + skipped``."""

    status: JobStatus
    total: int
    processed: int = 0
    successful: int = 0
    failed: int = 0
    skipped: int = 0

    @classmethod
    def pending(cls, total: int) -> JobProgress:
        """A job just accepted, with ``total`` records to process."""
        return cls(JobStatus.PENDING, total)

    def advance(self, successful: int, failed: int, skipped: int = 0) -> JobProgress:
        """The job after the outcome ledger counted these (absolute) numbers.

        Counts never go down; a terminal job is returned unchanged. The first processed record
        makes the job STARTED, the last one (``processed >= total > 0``) terminal.
        """
        if is_terminal(self.status):
            return self
        successful = max(self.successful, successful)
        failed = max(self.failed, failed)
        skipped = max(self.skipped, skipped)
        moved = dataclasses.replace(
            self,
            processed=successful + failed + skipped,
            successful=successful,
            failed=failed,
            skipped=skipped,
        )
        return dataclasses.replace(moved, status=moved._status_after_progress())

    def with_total(self, total: int) -> JobProgress:
        """The job once its record count is known (file imports learn it while parsing)."""
        if is_terminal(self.status):
            return self
        updated = dataclasses.replace(self, total=total)
        return dataclasses.replace(updated, status=updated._status_after_progress())

    def _status_after_progress(self) -> JobStatus:
        # A total of 0 means "not known yet" (an import still parsing), so progress alone never
        # finishes it; a file with no rows is finished explicitly: terminal_status_for(0, 0, 0).
        if self.total > 0 and self.processed >= self.total:
            return terminal_status_for(self.total, self.successful, self.failed, self.skipped)
        if self.processed > 0 and self.status in (JobStatus.PENDING, JobStatus.READY):
            return JobStatus.STARTED
        return self.status
