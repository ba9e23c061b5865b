"""Job rows written straight into the database, as a Kafka producer's first chunk would leave
them, for tests that drive storage or a stage without the gateway."""

from __future__ import annotations

import uuid

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
