"""The exactness check of a job that ran through faults: every record in exactly one stored
outcome, the counts exact, every (job, index) on ``bulk.outcomes``, nothing dead-lettered."""

from __future__ import annotations

from typing import Any

import psycopg

from bulk_ingest.settings import Settings
from tests.support.kafka import all_dead_letters
from tests.support.outcomes import outcome_events


def ledger(settings: Settings, job_id: str) -> tuple[int, int]:
    """(rows, distinct indexes) of the job in the ledger."""
    with psycopg.connect(settings.libpq_url) as conn:
        [(rows, indexes)] = conn.execute(
            "SELECT count(*), count(DISTINCT index) FROM record_outcomes WHERE job_id = %s",
            [job_id],
        ).fetchall()
    return int(rows), int(indexes)


def stored_rows(settings: Settings, tenant_id: str, job_id: str) -> tuple[int, int]:
    """(rows, distinct external ids) of the tenant's customers last written by the job."""
    with psycopg.connect(settings.libpq_url) as conn:
        [(rows, keys)] = conn.execute(
            "SELECT count(*), count(DISTINCT external_id) FROM customers "
            "WHERE tenant_id = %s AND last_job_id = %s",
            [tenant_id, job_id],
        ).fetchall()
    return int(rows), int(keys)


def _ledger_record_ids(settings: Settings, job_id: str) -> dict[int, str]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(
            "SELECT index, record_id::text FROM record_outcomes WHERE job_id = %s", [job_id]
        ).fetchall()
    return {int(index): str(record_id) for index, record_id in rows}


def assert_exact(
    settings: Settings, tenant: Any, job_id: str, total: int, timeout: float = 180
) -> dict[str, Any]:
    """The job of ``total`` new customers completed with every record accounted for once, the
    same outcome in the ledger and on the topic."""
    done: dict[str, Any] = tenant.api.wait_terminal(job_id, timeout=timeout)
    assert done["status"] == "COMPLETED", done
    counts = (done["total"], done["processed"], done["successful"], done["failed"])
    assert counts == (total, total, total, 0), done
    assert ledger(settings, job_id) == (total, total)
    assert stored_rows(settings, tenant.tenant_id, job_id) == (total, total)
    events = outcome_events(settings.kafka_bootstrap, settings.topics.outcomes, job_id, total)
    assert sorted(events) == list(range(total)), "every record has an outcome event"
    stored = _ledger_record_ids(settings, job_id)
    for index, copies in events.items():  # a redelivered batch re-emits the very same outcome
        assert all(copy == copies[0] for copy in copies), (index, copies)
        assert copies[0]["record_id"] == stored[index] and copies[0]["status"] == "CREATED"
    # A kill is not a failure the worker recorded: nothing of the job was dead-lettered.
    assert all_dead_letters(settings, job_id.encode()) == []
    return done
