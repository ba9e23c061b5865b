"""Job rows written straight into the database, as a Kafka producer's first chunk would leave
them, for tests that drive storage or a stage without the gateway; and a job held mid-way."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from domain.entities import DEFAULT_REFERENCE_TYPES
from storage.db import create_tenant, sync_engine


def tenant_with_a_live_job(
    settings, tenant_name: str, *, total: int, entity: str = "customers", operation: str = "insert"
) -> tuple[str, str]:
    """A new tenant and a READY job of ``total`` records from Kafka: (tenant_id, job_id)."""
    engine = sync_engine(settings.sqlalchemy_url)
    try:
        tenant_id = create_tenant(engine, tenant_name, DEFAULT_REFERENCE_TYPES).tenant_id
    finally:
        engine.dispose()
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, %s, %s, 'kafka', 'READY', %s)",
            [job_id, tenant_id, entity, operation, total],
        )
    return tenant_id, job_id


@contextlib.contextmanager
def a_batch_held_on(settings: Any, tenant_id: str, key: str) -> Iterator[Callable[[], bool]]:
    """An uncommitted row with ``key`` in this tenant: the persist batch that writes the record
    of that key waits on the unique index, inside its transaction, until the block ends (the
    row is rolled back, so the batch then writes the record as usual). Yields whether a batch
    is waiting on it now."""
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO customers (id, tenant_id, external_id, first_name, last_name) "
            "VALUES (gen_random_uuid(), %s, %s, 'held', 'held')",
            [tenant_id, key],
        )
        blocker = conn.info.backend_pid

        def waiting() -> bool:
            with psycopg.connect(settings.libpq_url) as probe:
                row = probe.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    [blocker],
                ).fetchone()
            return bool(row and row[0])

        try:
            yield waiting
        finally:
            conn.rollback()


@contextlib.contextmanager
def a_worker_held(settings: Any, tenant: Any, key: str | None = None) -> Iterator[str]:
    """One worker held: a one-record job of ``tenant`` is submitted and its persist batch waits
    on an uncommitted row of its key (:func:`a_batch_held_on`), so every batch that worker
    receives after it — of any job, on any of its partitions — queues behind it, unwritten,
    until the block ends. A job submitted inside the block therefore certainly has records left
    to write on that worker (one held batch of the job itself might carry them all). ``key``
    picks the held record's key, and with it the worker (default: a random one). Yields the
    held job's id."""
    key = key or f"held-{uuid.uuid4().hex}"
    with a_batch_held_on(settings, tenant.tenant_id, key) as waiting:
        record = {"externalId": key, "firstName": "Held", "lastName": "Worker"}
        answer = tenant.api.post("/api/v1/customers/bulk/async", {"records": [record]})
        assert answer.status == 202, answer.body
        deadline = time.monotonic() + 120
        while not waiting():
            assert time.monotonic() < deadline, "the held job's batch never waited on its key"
            time.sleep(0.05)
        yield str(answer.json()["job_id"])
