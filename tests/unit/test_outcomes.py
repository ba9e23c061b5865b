"""Deciding outcomes in acceptance order (pure): the later job's write wins, whatever arrives
first, and a write that comes too late is UNCHANGED."""

from __future__ import annotations

import uuid
from typing import Any

from domain.jobs import RecordStatus
from domain.outcomes import PendingRecord, StoredRow, decide_batch, new_record_id

KEY_FIELDS = {"customers": "externalId"}
# Job ids whose alphabetical order is the opposite of their acceptance order.
EARLY, LATE = "ffffffff-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"
SEQUENCES = {EARLY: 10, LATE: 11}


def record(job_id: str, index: int, name: str, operation: str = "upsert") -> PendingRecord:
    values: dict[str, Any] = {"externalId": "k", "firstName": name, "lastName": "L"}
    return PendingRecord(job_id, "t", "customers", operation, index, "k", values)


def decided(records: list[PendingRecord], stored: dict | None = None):
    return decide_batch(records, stored or {}, KEY_FIELDS, SEQUENCES)


def test_in_one_batch_the_later_accepted_job_wins_not_the_smaller_job_id():
    outcomes, writes = decided([record(LATE, 0, "NEW"), record(EARLY, 0, "OLD")])
    assert [(o.job_id, o.status) for o in outcomes] == [
        (EARLY, RecordStatus.CREATED),
        (LATE, RecordStatus.UPDATED),
    ]
    _, written = writes.inserts[("t", "customers", "k")]
    assert written.record["firstName"] == "NEW"


def test_an_earlier_job_arriving_after_a_later_one_loses():
    stored = {("t", "customers", "k"): StoredRow("id-1", {"firstName": "NEW"}, (11, 0))}
    outcomes, writes = decided([record(EARLY, 5, "OLD")], stored)
    assert [o.status for o in outcomes] == [RecordStatus.UNCHANGED]
    assert outcomes[0].record_id == "id-1"
    assert writes.inserts == {} and writes.updates == {}


def test_within_one_job_the_higher_index_wins():
    stored = {("t", "customers", "k"): StoredRow("id-1", {"firstName": "B"}, (10, 7))}
    outcomes, writes = decided([record(EARLY, 3, "A"), record(EARLY, 9, "C")], stored)
    assert [o.status for o in outcomes] == [RecordStatus.UNCHANGED, RecordStatus.UPDATED]
    assert writes.updates[("t", "customers", "k")][1].record["firstName"] == "C"


def test_a_later_write_of_the_same_values_is_unchanged_but_remembered():
    """Otherwise an earlier job arriving after it would overwrite the later job's value."""
    values = {"externalId": "k", "firstName": "SAME", "lastName": "L"}
    stored = {("t", "customers", "k"): StoredRow("id-1", values, (5, 0))}
    outcomes, writes = decided([record(LATE, 0, "SAME")], stored)
    assert [o.status for o in outcomes] == [RecordStatus.UNCHANGED]
    assert ("t", "customers", "k") in writes.updates  # last_seq moves to the later job


def test_insert_outcomes_follow_acceptance_order_too():
    outcomes, _ = decided([record(LATE, 0, "B", "insert"), record(EARLY, 0, "A", "insert")])
    assert [(o.job_id, o.status, o.error_code) for o in outcomes] == [
        (EARLY, RecordStatus.CREATED, None),
        (LATE, RecordStatus.FAILED, "DuplicateKey"),
    ]


def test_the_same_key_twice_in_one_insert_job_fails_the_later_record():
    outcomes, _ = decided([record(EARLY, 4, "B", "insert"), record(EARLY, 1, "A", "insert")])
    assert [(o.index, o.status) for o in outcomes] == [
        (1, RecordStatus.CREATED),
        (4, RecordStatus.FAILED),
    ]


def test_record_ids_are_random_version_4_uuids_in_canonical_form() -> None:
    ids = [new_record_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
