"""The persist transaction against the real database: redelivery changes nothing, a value
PostgreSQL refuses fails its own record, filled records stay filled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from bulk_ingest.topics import Codecs
from domain.entities import EntityRegistry, default_schemas_dir
from domain.jobs import RecordStatus, is_terminal
from domain.outcomes import PendingRecord, RecordFailure
from domain.validation import to_avro_record
from storage import ledger
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister, PersistedBatch
from streams.events import Announcer
from tests.support.jobs import tenant_with_a_live_job
from tests.support.records import customer

REGISTRY = EntityRegistry.load(default_schemas_dir())
CUSTOMERS = REGISTRY.get("customers")
TABLES = {name: EntityTableMap.of(REGISTRY.get(name)) for name in REGISTRY.names()}
LABELS = {name: REGISTRY.get(name).label for name in REGISTRY.names()}


@pytest.fixture
def job(settings) -> tuple[str, str]:
    """A tenant and a live insert job of 100 customers: (tenant_id, job_id)."""
    return tenant_with_a_live_job(settings, "persist", total=100)


def pending(
    tenant_id: str, job_id: str, index: int, key: str | None, record: Any, **more: Any
) -> PendingRecord:
    return PendingRecord(job_id, tenant_id, "customers", "insert", index, key, record, **more)


def valid(tenant_id: str, job_id: str, index: int, key: str) -> PendingRecord:
    return pending(tenant_id, job_id, index, key, to_avro_record(CUSTOMERS, customer(key)))


def persist(settings, *batches: Sequence[BatchPart]) -> list[PersistedBatch]:
    """Each batch in its own transaction, as consecutive deliveries would be."""

    async def run() -> list[PersistedBatch]:
        codecs = Codecs.load(default_schemas_dir())
        encode = Announcer(codecs, settings.topics).encode_outcome
        persister = BatchPersister(settings.libpq_url, TABLES, encode, LABELS)
        try:
            return [await persister.persist(batch) for batch in batches]
        finally:
            await persister.close()

    return asyncio.run(run())


def counts(settings, tenant_id: str, job_id: str) -> tuple:
    with psycopg.connect(settings.libpq_url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM customers WHERE tenant_id = %s", [tenant_id]
            ).fetchone()[0],
            conn.execute(
                "SELECT count(*) FROM record_outcomes WHERE job_id = %s", [job_id]
            ).fetchone()[0],
            conn.execute(
                "SELECT sum(successful), sum(failed) FROM job_parts WHERE job_id = %s", [job_id]
            ).fetchone(),
        )


def test_a_redelivered_batch_changes_nothing_and_reemits_the_same_outcomes(settings, job):
    tenant_id, job_id = job
    prefix = uuid.uuid4().hex[:6]
    keys = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-a"]  # same key twice in one insert job

    def parts() -> list[BatchPart]:
        records = [valid(tenant_id, job_id, i, key) for i, key in enumerate(keys)]
        records.append(
            pending(
                tenant_id,
                job_id,
                len(keys),
                None,
                None,
                failure=RecordFailure("InvalidValue", "2023-02-30 is not real", "x"),
            )
        )
        return [
            BatchPart(job_id, tenant_id, "0:0", 100, records[:2]),
            BatchPart(job_id, tenant_id, "0:1", 100, records[2:]),
        ]

    first, again = persist(settings, parts(), parts())
    assert [o.status for o in first.outcomes] == [
        RecordStatus.CREATED,
        RecordStatus.CREATED,
        RecordStatus.FAILED,
        RecordStatus.FAILED,
    ]
    assert first.outcomes[2].error_code == "DuplicateKey"
    assert counts(settings, tenant_id, job_id) == (2, 4, (2, 2))  # nothing written twice
    assert [(o.index, o.status, o.record_id, o.error_code) for o in again.outcomes] == [
        (o.index, o.status, o.record_id, o.error_code) for o in first.outcomes
    ]
    assert again.events == first.events  # byte-identical events on redelivery


def test_a_value_postgresql_refuses_fails_its_record_not_the_batch(settings, job):
    """Records that slipped past validation (here: built by hand) with values PostgreSQL cannot
    hold: each fails InvalidValue naming its field; the others are written in the same batch."""
    tenant_id, job_id = job
    prefix = uuid.uuid4().hex[:6]
    nul_name = to_avro_record(CUSTOMERS, customer(f"{prefix}-1", firstName="A\u0000b"))
    nul_address = to_avro_record(CUSTOMERS, customer(f"{prefix}-3"))
    nul_address["addresses"][0]["line1"] = "12\u0000 Main St"
    records = [
        valid(tenant_id, job_id, 0, f"{prefix}-0"),
        pending(tenant_id, job_id, 1, f"{prefix}-1", nul_name),
        valid(tenant_id, job_id, 2, f"{prefix}-2"),
        pending(tenant_id, job_id, 3, f"{prefix}-3", nul_address),
        pending(
            tenant_id,
            job_id,
            4,
            f"{prefix}-\u0000",
            to_avro_record(CUSTOMERS, customer(f"{prefix}-\u0000")),
        ),
        valid(tenant_id, job_id, 5, f"{prefix}-5"),
    ]
    (done,) = persist(settings, [BatchPart(job_id, tenant_id, "0:0", 100, records)])
    by_index = {o.index: o for o in done.outcomes}
    assert [by_index[i].status for i in range(6)] == [
        RecordStatus.CREATED,
        RecordStatus.FAILED,
        RecordStatus.CREATED,
        RecordStatus.FAILED,
        RecordStatus.FAILED,
        RecordStatus.CREATED,
    ]
    for index, field in [(1, "firstName"), (3, "addresses"), (4, "externalId")]:
        outcome = by_index[index]
        assert (outcome.error_code, outcome.error_field) == ("InvalidValue", field), outcome
        assert f"Customer at index {index} has a value in {field} that cannot be stored" in str(
            outcome.error_message
        )
    assert by_index[4].key == f"{prefix}-\ufffd"  # the key is kept, made storable
    assert counts(settings, tenant_id, job_id) == (3, 6, (3, 3))


def test_a_racing_delivery_of_the_same_records_reconciles_through_the_ledger(settings, job):
    """Two parts carrying the same indexes (a zombie consumer, or overlapping chunks that got
    past the validate stage): the second finds the first's outcomes and counts nothing twice."""
    tenant_id, job_id = job
    prefix = uuid.uuid4().hex[:6]
    first = [valid(tenant_id, job_id, i, f"{prefix}-{i}") for i in range(4)]
    overlapping = [valid(tenant_id, job_id, i, f"{prefix}-{i}") for i in range(2, 6)]
    one, two = persist(
        settings,
        [BatchPart(job_id, tenant_id, "0:0", 100, first)],
        [BatchPart(job_id, tenant_id, "1:0", 100, overlapping)],
    )
    assert [o.index for o in two.outcomes] == [2, 3, 4, 5]
    reemitted = {o.index: o for o in one.outcomes}
    assert [o.record_id for o in two.outcomes[:2]] == [
        reemitted[2].record_id,
        reemitted[3].record_id,
    ]
    assert counts(settings, tenant_id, job_id) == (6, 6, (6, 0))


def test_records_the_service_filled_are_never_written_when_they_arrive_late(settings, job):
    tenant_id, job_id = job
    with psycopg.connect(settings.libpq_url) as conn:
        asyncio.run(_fill_missing(settings.libpq_url, job_id))
    late = [valid(tenant_id, job_id, i, f"late-{uuid.uuid4().hex[:6]}") for i in range(3)]
    (done,) = persist(settings, [BatchPart(job_id, tenant_id, "0:0", 100, late)])
    with psycopg.connect(settings.libpq_url) as conn:
        (status,) = conn.execute("SELECT status FROM jobs WHERE job_id = %s", [job_id]).fetchone()
    if done.outcomes or not is_terminal(status):
        # The stored outcomes are re-emitted for the late records.
        assert {(o.status, o.error_code) for o in done.outcomes} == {
            (RecordStatus.FAILED, "RecordNotReceived")
        }
    # else the session's sweeper announced the fill and ended the job between the two steps:
    # a terminal job takes no records at all (seen on a slow full run).
    assert counts(settings, tenant_id, job_id) == (0, 100, (0, 100))
    with psycopg.connect(settings.libpq_url) as conn:
        parts = conn.execute("SELECT part_id FROM job_parts WHERE job_id = %s", [job_id]).fetchall()
    # The fill part alone: the late batch wrote no part of its own. (Its events are announced
    # by whoever filled it — here nobody, so the session's sweeper may already have done it.)
    assert parts == [(ledger.fill_part_id("RecordNotReceived"),)]


async def _fill_missing(url: str, job_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        message = ledger.FillMessage("Customer", "was not received")
        assert await ledger.fill_all_missing(conn, job_id, 100, "RecordNotReceived", message) == 100
        assert await ledger.fill_all_missing(conn, job_id, 100, "RecordNotReceived", message) == 0


def test_a_terminal_job_takes_no_records(settings, job):
    tenant_id, job_id = job
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute("UPDATE jobs SET status = 'CANCELLED' WHERE job_id = %s", [job_id])
    (done,) = persist(
        settings, [BatchPart(job_id, tenant_id, "0:0", 100, [valid(tenant_id, job_id, 0, "x")])]
    )
    assert done.outcomes == [] and done.parts == []
    assert counts(settings, tenant_id, job_id) == (0, 0, (None, None))
