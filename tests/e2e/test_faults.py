"""Invariants under infrastructure faults: the broker and PostgreSQL restart mid-job.

Each job must still end with exactly one stored outcome per record, exact counts, and every
record written once.
"""

from __future__ import annotations

import psycopg

from bulk_ingest.processes import stack_config
from stack import restart_kafka, restart_postgres
from tests.support.http import poll
from tests.support.records import customers, unique_prefix

TOTAL = 20_000


def _ledger_count(settings, job_id: str) -> int:
    try:
        with psycopg.connect(settings.libpq_url, connect_timeout=3) as conn:
            return conn.execute(
                "SELECT count(*) FROM record_outcomes WHERE job_id = %s", [job_id]
            ).fetchone()[0]
    except psycopg.OperationalError:
        return 0


def _assert_exact(settings, tenant, job_id: str) -> None:
    done = tenant.api.wait_terminal(job_id, timeout=240)
    assert done["status"] == "COMPLETED", done
    assert (done["processed"], done["successful"], done["failed"]) == (TOTAL, TOTAL, 0)
    with psycopg.connect(settings.libpq_url) as conn:
        ledger = conn.execute(
            "SELECT count(*), count(DISTINCT index) FROM record_outcomes WHERE job_id = %s",
            [job_id],
        ).fetchone()
        rows = conn.execute(
            "SELECT count(*) FROM customers WHERE tenant_id = %s AND last_job_id = %s",
            [tenant.tenant_id, job_id],
        ).fetchone()
    assert ledger == (TOTAL, TOTAL)
    assert rows == (TOTAL,)


def _start_job(tenant) -> str:
    answer = tenant.api.post(
        "/api/v1/customers/bulk/async", {"records": customers(unique_prefix(), TOTAL)}
    )
    assert answer.status == 202, answer.body
    return answer.json()["job_id"]


def test_broker_restart_mid_job(tenant, settings, service):
    job_id = _start_job(tenant)
    poll(lambda: _ledger_count(settings, job_id) > 0, 60, "the first outcomes", interval=0.01)
    restart_kafka(stack_config(settings))
    _assert_exact(settings, tenant, job_id)
    assert all(worker.alive() for worker in service.workers)


def test_postgres_restart_mid_job(tenant, settings, service):
    job_id = _start_job(tenant)
    poll(lambda: _ledger_count(settings, job_id) > 0, 60, "the first outcomes", interval=0.01)
    restart_postgres(stack_config(settings))
    _assert_exact(settings, tenant, job_id)
    assert service.gateway.alive() and all(worker.alive() for worker in service.workers)
