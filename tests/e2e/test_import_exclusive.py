"""Exclusive imports: one at a time per tenant and entity, and never beside a non-exclusive one."""

from __future__ import annotations

import uuid

import psycopg

from tests.support.imports import MAPPING, db, imported, people, spreadsheet_csv, start, uploaded
from tests.support.records import unique_prefix


def _live_import_row(settings, tenant_id: str, file_id: str, exclusive: bool) -> str:
    """A job the service believes is still importing (READY), written straight to the DB."""
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, 'customers', 'insert', 'file', 'READY', 0)",
            [job_id, tenant_id],
        )
        conn.execute(
            "INSERT INTO imports (job_id, tenant_id, entity, file_id, exclusive, options) "
            "VALUES (%s, %s, 'customers', %s, %s, '{}')",
            [job_id, tenant_id, file_id, exclusive],
        )
    return job_id


def test_second_exclusive_import_is_blocked_until_the_first_finishes(tenant, settings):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    running = _live_import_row(settings, tenant.tenant_id, profile["file_id"], exclusive=True)

    blocked = start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True)
    assert blocked.status == 409
    body = blocked.json()
    assert body["status"] == "BLOCKED"
    assert [e["errorCode"] for e in body["errors"]] == ["ImportBlocked"]
    assert running in body["errors"][0]["message"]
    also_blocked = start(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert also_blocked.status == 409, "a running exclusive import blocks every other import"

    db(settings, "UPDATE jobs SET status = 'COMPLETED' WHERE job_id = %s", running)
    done = imported(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True)
    assert done["status"] == "COMPLETED_WITH_ERRORS"


def test_exclusive_import_waits_for_a_non_exclusive_one(tenant, settings):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    running = _live_import_row(settings, tenant.tenant_id, profile["file_id"], exclusive=False)
    assert (
        start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True).status == 409
    )
    db(settings, "UPDATE jobs SET status = 'CANCELLED' WHERE job_id = %s", running)
    assert (
        start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True).status == 202
    )
