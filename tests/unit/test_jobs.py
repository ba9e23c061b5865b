"""The job state machine: forward only, counts from the ledger, terminal means final."""

from __future__ import annotations

import itertools

import pytest

from domain.jobs import (
    TERMINAL_STATUSES,
    JobProgress,
    JobStatus,
    RecordStatus,
    allowed_transition,
    is_terminal,
    terminal_status_for,
)

NON_TERMINAL = [JobStatus.PENDING, JobStatus.READY, JobStatus.STARTED]


def test_status_names_are_the_public_contract() -> None:
    assert [s.value for s in JobStatus] == [
        "PENDING",
        "READY",
        "STARTED",
        "COMPLETED",
        "COMPLETED_WITH_ERRORS",
        "FAILED",
        "INTERNAL_FAILURE",
        "CANCELLED",
    ]
    assert [s.value for s in RecordStatus] == [
        "CREATED",
        "UPDATED",
        "UNCHANGED",
        "FAILED",
        "SKIPPED",
        "DELETED",
        "RESTORED",
    ]
    assert set(NON_TERMINAL) | TERMINAL_STATUSES == set(JobStatus)
    assert not any(is_terminal(s) for s in NON_TERMINAL)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (JobStatus.PENDING, JobStatus.READY),
        (JobStatus.READY, JobStatus.STARTED),
        (JobStatus.STARTED, JobStatus.COMPLETED),
        (JobStatus.STARTED, JobStatus.COMPLETED_WITH_ERRORS),
        (JobStatus.STARTED, JobStatus.FAILED),
        (JobStatus.PENDING, JobStatus.INTERNAL_FAILURE),
        (JobStatus.READY, JobStatus.INTERNAL_FAILURE),
        (JobStatus.PENDING, JobStatus.STARTED),  # processing began before publishing ended
        (JobStatus.READY, JobStatus.COMPLETED),  # the whole job fit in one batch
    ]
    + [(old, JobStatus.CANCELLED) for old in NON_TERMINAL],
)
def test_forward_transitions_are_allowed(old: JobStatus, new: JobStatus) -> None:
    assert allowed_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (JobStatus.READY, JobStatus.PENDING),
        (JobStatus.STARTED, JobStatus.READY),
        (JobStatus.STARTED, JobStatus.PENDING),
        (JobStatus.STARTED, JobStatus.STARTED),
    ],
)
def test_backward_transitions_are_refused(old: JobStatus, new: JobStatus) -> None:
    assert not allowed_transition(old, new)


@pytest.mark.parametrize(("old", "new"), itertools.product(TERMINAL_STATUSES, JobStatus))
def test_nothing_leaves_a_terminal_status(old: JobStatus, new: JobStatus) -> None:
    assert not allowed_transition(old, new)


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ((10, 10, 0, 0), JobStatus.COMPLETED),
        ((10, 0, 10, 0), JobStatus.FAILED),
        ((10, 8, 2, 0), JobStatus.COMPLETED_WITH_ERRORS),
        ((10, 8, 0, 2), JobStatus.COMPLETED),
        ((10, 0, 5, 5), JobStatus.FAILED),
        ((0, 0, 0, 0), JobStatus.COMPLETED),
    ],
)
def test_terminal_status_for(counts: tuple[int, int, int, int], status: JobStatus) -> None:
    assert terminal_status_for(*counts) is status


def test_first_processed_record_starts_the_job() -> None:
    job = JobProgress.pending(5).advance(successful=1, failed=0)
    assert (job.status, job.processed) == (JobStatus.STARTED, 1)


def test_no_progress_leaves_the_job_as_it_was() -> None:
    ready = JobProgress(JobStatus.READY, total=5)
    assert ready.advance(0, 0) == ready


def test_last_processed_record_finishes_the_job() -> None:
    job = JobProgress(JobStatus.READY, total=5).advance(2, 0).advance(4, 1)
    assert job == JobProgress(JobStatus.COMPLETED_WITH_ERRORS, 5, 5, 4, 1, 0)
    assert job.processed == job.total == job.successful + job.failed + job.skipped


def test_all_failed_job_is_failed() -> None:
    assert JobProgress(JobStatus.STARTED, total=3).advance(0, 3).status is JobStatus.FAILED


def test_counts_never_go_backwards() -> None:
    job = JobProgress(JobStatus.STARTED, total=10).advance(6, 2)
    stale = job.advance(3, 1)  # an older progress message arriving late
    assert (stale.successful, stale.failed, stale.processed) == (6, 2, 8)


def test_applying_the_same_progress_twice_changes_nothing() -> None:
    job = JobProgress(JobStatus.STARTED, total=10).advance(4, 1)
    assert job.advance(4, 1) == job


def test_terminal_job_never_changes() -> None:
    done = JobProgress(JobStatus.READY, total=2).advance(2, 0)
    assert done.status is JobStatus.COMPLETED
    assert done.advance(5, 5, 5) is done
    cancelled = JobProgress(JobStatus.CANCELLED, total=2)
    assert cancelled.advance(2, 0) is cancelled
    assert cancelled.with_total(9) is cancelled


def test_unknown_total_is_not_finished_by_progress() -> None:
    importing = JobProgress(JobStatus.PENDING, total=0).advance(3, 0)
    assert importing.status is JobStatus.STARTED
    finished = importing.with_total(4).advance(3, 1)
    assert finished.status is JobStatus.COMPLETED_WITH_ERRORS
