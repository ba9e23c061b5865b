"""The persist transaction against the real database: redelivery changes nothing."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from domain.entities import DEFAULT_REFERENCE_TYPES, EntityRegistry, default_schemas_dir
from domain.jobs import RecordStatus
from domain.outcomes import PendingRecord, RecordFailure
from domain.validation import to_avro_record
from storage.db import create_tenant, sync_engine
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from tests.support.records import customer


def _parts(tenant_id: str, job_id: str, operation: str, keys: list[str]) -> list[BatchPart]:
    definition = EntityRegistry.load(default_schemas_dir()).get("customers")
    records = [
        PendingRecord(
            job_id,
            tenant_id,
            "customers",
            operation,
            i,
            key,
            to_avro_record(definition, customer(key)),
        )
        for i, key in enumerate(keys)
    ]
    records.append(
        PendingRecord(
            job_id,
            tenant_id,
            "customers",
            operation,
            len(keys),
            None,
            None,
            RecordFailure("InvalidValue", "2023-02-30 is not real", "x"),
        )
    )
    return [
        BatchPart(job_id, tenant_id, "0:0", len(records), records[:2]),
        BatchPart(job_id, tenant_id, "0:1", len(records), records[2:]),
    ]


def _counts(settings, tenant_id: str, job_id: str) -> tuple:
    with psycopg.connect(settings.libpq_url) as conn:
        return (
            conn.execute(
                "SELECT count(*) FROM customers WHERE tenant_id = %s", [tenant_id]
            ).fetchone(),
            conn.execute(
                "SELECT count(*) FROM record_outcomes WHERE job_id = %s", [job_id]
            ).fetchone(),
            conn.execute(
                "SELECT sum(successful), sum(failed) FROM job_parts WHERE job_id = %s", [job_id]
            ).fetchone(),
        )


def test_a_redelivered_batch_changes_nothing_and_reemits_the_same_outcomes(settings):
    engine = sync_engine(settings.sqlalchemy_url)
    tenant = create_tenant(engine, "persist", DEFAULT_REFERENCE_TYPES)
    engine.dispose()
    registry = EntityRegistry.load(default_schemas_dir())
    tables = {name: EntityTableMap.of(registry.get(name)) for name in registry.names()}
    job_id = str(uuid.uuid4())
    prefix = uuid.uuid4().hex[:6]
    keys = [f"{prefix}-a", f"{prefix}-b", f"{prefix}-a"]  # same key twice in one insert job

    async def persist_twice():
        persister = BatchPersister(settings.libpq_url, tables)
        try:
            first = await persister.persist(_parts(tenant.tenant_id, job_id, "insert", keys))
            after_first = _counts(settings, tenant.tenant_id, job_id)
            again = await persister.persist(_parts(tenant.tenant_id, job_id, "insert", keys))
            return first, after_first, again
        finally:
            await persister.close()

    first, after_first, again = asyncio.run(persist_twice())
    statuses = [o.status for o in first.outcomes]
    assert statuses == [
        RecordStatus.CREATED,
        RecordStatus.CREATED,
        RecordStatus.FAILED,
        RecordStatus.FAILED,
    ]
    assert first.outcomes[2].error_code == "DuplicateKey"
    assert after_first == ((2,), (4,), (2, 2))
    assert _counts(settings, tenant.tenant_id, job_id) == after_first  # nothing written twice
    assert [(o.index, o.status, o.record_id, o.error_code) for o in again.outcomes] == [
        (o.index, o.status, o.record_id, o.error_code) for o in first.outcomes
    ]
