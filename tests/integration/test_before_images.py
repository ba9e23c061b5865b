"""Before-images in the persist transaction against the real database (revert, design.md §8):
each job keeps the row as it was before *its* first write, whether the row gives it (the
common case, copied in PostgreSQL) or an earlier job of the same batch wrote it first."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from domain.validation import to_avro_record
from storage.persist import BatchPart
from tests.integration.test_persist import CUSTOMERS, pending, persist
from tests.support.jobs import tenant_with_a_live_job
from tests.support.records import customer


@pytest.fixture
def job(settings) -> tuple[str, str]:
    """A tenant and a live job whose records seed the rows: (tenant_id, job_id)."""
    return tenant_with_a_live_job(settings, "before-images", total=100)


def new_job(settings: Any, tenant_id: str, operation: str, total: int) -> str:
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, 'customers', %s, 'kafka', 'READY', %s)",
            [job_id, tenant_id, operation, total],
        )
    return job_id


def part(tenant_id: str, job_id: str, part_id: str, total: int, writes: list[tuple]) -> BatchPart:
    records = [
        pending(
            tenant_id, job_id, index, key, to_avro_record(CUSTOMERS, customer(key, firstName=name))
        )._replace(operation="upsert")
        for index, key, name in writes
    ]
    return BatchPart(job_id, tenant_id, part_id, total, records)


def images(settings: Any, job_id: str) -> dict[str, tuple]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(
            "SELECT key, before->>'first_name', last_job_id::text FROM before_images "
            "WHERE job_id = %s",
            [job_id],
        ).fetchall()
    return {key: (name, last_job) for key, name, last_job in rows}


def test_each_job_keeps_the_row_before_its_own_first_write(settings, job):
    tenant_id, seed = job
    key, alone = f"bi-{uuid.uuid4().hex[:8]}", f"bi-{uuid.uuid4().hex[:8]}"
    persist(settings, [part(tenant_id, seed, "0:0", 100, [(0, key, "Seed"), (1, alone, "Seed")])])
    assert images(settings, seed) == {}, "rows a job created need no image (its ledger says)"

    a = new_job(settings, tenant_id, "upsert", 3)
    b = new_job(settings, tenant_id, "upsert", 1)
    # One batch: A updates both keys, B then updates the first: B's image is A's value.
    persist(
        settings,
        [
            part(tenant_id, a, "0:0", 3, [(0, key, "A"), (1, alone, "A")]),
            part(tenant_id, b, "0:0", 1, [(0, key, "B")]),
        ],
    )
    assert images(settings, a) == {key: ("Seed", seed), alone: ("Seed", seed)}
    assert images(settings, b) == {key: ("A", a)}
    # A's later batch writes the key again: its image stays the pre-A state.
    persist(settings, [part(tenant_id, a, "1:0", 3, [(2, alone, "A again")])])
    assert images(settings, a)[alone] == ("Seed", seed)
