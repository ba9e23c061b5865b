"""Revert, the pure part: the before-images a batch's writes leave (``Writes.before``) and what
each record of a revert job does (:func:`domain.revert.decide_revert`)."""

from __future__ import annotations

from typing import Any

from domain.errors import ErrorCode
from domain.jobs import RecordStatus
from domain.outcomes import PendingRecord, StoredRow, decide_batch
from domain.revert import BeforeImage, decide_revert

KEY_FIELDS = {"customers": "externalId"}
A, B, REVERT = "job-a", "job-b", "job-revert"
SEQUENCES = {A: 10, B: 11}
ROW = ("t", "customers", "k")


def write(job_id: str, index: int, name: str, operation: str = "upsert") -> PendingRecord:
    values: dict[str, Any] = {"externalId": "k", "firstName": name, "lastName": "L"}
    return PendingRecord(job_id, "t", "customers", operation, index, "k", values)


def revert_record(index: int = 0) -> PendingRecord:
    return PendingRecord(REVERT, "t", "customers", "revert", index, "k", None)


# --- before-images ------------------------------------------------------------------------------


def test_an_update_leaves_the_row_it_replaced_and_an_insert_nothing():
    stored = {ROW: StoredRow("id-1", {"firstName": "OLD"}, (5, 2), "job-old")}
    _, writes = decide_batch([write(A, 0, "NEW")], stored, KEY_FIELDS, SEQUENCES)
    assert writes.before[(A, ROW)] == ("id-1", stored[ROW])
    _, writes = decide_batch([write(A, 0, "NEW")], {}, KEY_FIELDS, SEQUENCES)
    assert writes.before == {}, "a created row is known from its CREATED outcome"


def test_each_job_keeps_the_row_as_it_was_before_its_own_first_write():
    stored = {ROW: StoredRow("id-1", {"firstName": "OLD"}, (5, 2), "job-old")}
    records = [write(A, 0, "A0"), write(A, 1, "A1"), write(B, 0, "B0")]
    _, writes = decide_batch(records, stored, KEY_FIELDS, SEQUENCES)
    assert writes.before[(A, ROW)][1].values["firstName"] == "OLD"  # not A0: its first write
    _, b_before = writes.before[(B, ROW)]
    assert b_before.values["firstName"] == "A1"
    assert b_before.last == (10, 1) and b_before.last_job_id == A


def test_a_write_that_loses_to_a_later_job_leaves_no_before_image():
    stored = {ROW: StoredRow("id-1", {"firstName": "B"}, (11, 0), B)}
    _, writes = decide_batch([write(A, 0, "A")], stored, KEY_FIELDS, SEQUENCES)
    assert writes.before == {}


# --- deciding a revert record -----------------------------------------------------------------


def test_a_row_the_reverted_job_created_and_nobody_changed_is_deleted():
    image = BeforeImage("id-1", None, None, (0, -1))
    current = StoredRow("id-1", {"firstName": "A"}, (10, 3), A)
    outcome, restore = decide_revert(revert_record(), image, current, reverted_seq=10)
    assert outcome.status is RecordStatus.DELETED and outcome.successful
    assert restore is not None and restore.deletes


def test_a_row_the_reverted_job_updated_gets_its_before_image_back():
    image = BeforeImage("id-1", {"firstName": "OLD"}, "job-old", (5, 2))
    current = StoredRow("id-1", {"firstName": "A"}, (10, 0), A)
    outcome, restore = decide_revert(revert_record(), image, current, reverted_seq=10)
    assert outcome.status is RecordStatus.RESTORED and outcome.record_id == "id-1"
    assert restore is not None and not restore.deletes and restore.image is image


def test_a_row_a_later_job_changed_since_is_left_as_it_is():
    image = BeforeImage("id-1", None, None, (0, -1))
    current = StoredRow("id-1", {"firstName": "B"}, (11, 0), B)
    outcome, restore = decide_revert(revert_record(), image, current, reverted_seq=10)
    assert restore is None
    assert outcome.status is RecordStatus.FAILED and outcome.error_code == ErrorCode.ChangedSince
    assert B in (outcome.error_message or "")


def test_a_row_gone_or_written_in_the_same_batch_is_changed_since():
    image = BeforeImage("id-1", None, None, (0, -1))
    gone, _ = decide_revert(revert_record(), image, None, reverted_seq=10)
    assert gone.error_code == ErrorCode.ChangedSince
    current = StoredRow("id-1", {"firstName": "A"}, (10, 0), A)
    racing, restore = decide_revert(revert_record(), image, current, 10, written_in_batch=True)
    assert racing.error_code == ErrorCode.ChangedSince and restore is None


def test_a_purged_before_image_fails_the_record_as_expired():
    current = StoredRow("id-1", {"firstName": "A"}, (10, 0), A)
    outcome, restore = decide_revert(revert_record(), None, current, reverted_seq=10)
    assert outcome.error_code == ErrorCode.RevertExpired and restore is None
