"""Cancel, end to end: ``POST /jobs/{id}/cancel`` against the real service.

A cancel is accepted while batches of the job are still being written; the job row's owner
then skips what is not written yet. Every place a record's fate is kept must agree afterwards:
the job's counts, the outcome ledger, ``bulk.outcomes``, the report and the webhook.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import psycopg
import pytest

from tests.e2e.test_completion import Receiver
from tests.support.http import poll
from tests.support.imports import MAPPING, people, spreadsheet_csv, start, uploaded
from tests.support.jobs import a_batch_held_on, a_worker_held
from tests.support.kafka import customer_partition, records_partition_owners
from tests.support.outcomes import outcome_events
from tests.support.records import customers, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
TOTAL = 30_000


def cancel(tenant: Any, job_id: str) -> Any:
    return tenant.api.post(f"/api/v1/jobs/{job_id}/cancel")


def job(tenant: Any, job_id: str) -> dict[str, Any]:
    return dict(tenant.api.get(f"/api/v1/jobs/{job_id}").json())


def ledger_counts(settings: Any, job_id: str) -> dict[str, int]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM record_outcomes WHERE job_id = %s GROUP BY status",
            [job_id],
        ).fetchall()
    return {status: int(count) for status, count in rows}


def ledger_status(settings: Any, job_id: str, index: int) -> str:
    with psycopg.connect(settings.libpq_url) as conn:
        row = conn.execute(
            "SELECT status FROM record_outcomes WHERE job_id = %s AND index = %s", [job_id, index]
        ).fetchone()
    return str(row[0]) if row else "missing"


def is_terminal(found: dict[str, Any]) -> bool:
    return found["status"] in {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"}


def under_way(tenant: Any, job_id: str, total: int) -> dict[str, Any]:
    return poll(
        lambda: (found := job(tenant, job_id)) and 0 < found["processed"] < total and found,
        120,
        f"job {job_id} to be under way",
        interval=0.02,
    )


def _held_keys(settings: Any, tenant: Any, blocker: Any, records: list[dict[str, Any]]):
    """(a key of ``blocker`` on one worker's partitions, the index of a record of ``records``
    on the other worker's): the first holds that worker, the second is the job's batch in
    flight when the cancel comes."""
    owners = records_partition_owners(settings)
    assert len(owners) == 2 and all(owners), f"two workers, each with partitions: {owners}"
    held_worker, racing_worker = owners
    blocker_key = next(
        key
        for key in (f"held-{uuid.uuid4().hex}" for _ in range(1000))
        if customer_partition(settings, blocker.tenant_id, key) in held_worker
    )
    racing_index = next(
        index
        for index in range(TOTAL // 2, TOTAL)
        if customer_partition(settings, tenant.tenant_id, records[index]["externalId"])
        in racing_worker
    )
    return blocker_key, racing_index


def test_a_cancel_racing_the_batches_skips_the_rest_and_everything_agrees(
    tenant, make_tenant, settings
):
    """One worker is held by another tenant's batch, so this job's records on it wait,
    unwritten; on the other worker a batch of this job is held inside its transaction when the
    cancel comes. The cancel waits for that batch (written after it), then skips the rest."""
    receiver = Receiver().start()
    try:
        records = customers(unique_prefix(), TOTAL)
        other = make_tenant()
        blocker_key, racing_index = _held_keys(settings, tenant, other, records)
        with (
            a_worker_held(settings, other, blocker_key),
            a_batch_held_on(
                settings, tenant.tenant_id, records[racing_index]["externalId"]
            ) as waiting,
        ):
            body = {"records": records, "webhook_url": receiver.url}
            accepted = tenant.api.post(ASYNC, body)
            assert accepted.status == 202, accepted.body
            job_id = accepted.json()["job_id"]
            bystanding = make_tenant()
            bystander = bystanding.api.post(ASYNC, {"records": customers(unique_prefix(), 2_000)})
            assert bystander.status == 202, bystander.body
            poll(waiting, 120, "a batch of the job to wait on the held key", interval=0.05)
            written = lambda: sum(ledger_counts(settings, job_id).values())  # noqa: E731
            answer = cancel(tenant, job_id)
            written_at_cancel = written()
            assert answer.status == 202, answer.body
            assert not is_terminal(job(tenant, job_id)), "the cancel waits for the held batch"
        assert answer.headers["Location"] == f"/api/v1/jobs/{job_id}"
        assert answer.json()["job_id"] == job_id
        assert written_at_cancel < TOTAL, "cancelled mid-job"
        done = tenant.api.wait_terminal(job_id, timeout=180)
        ledger = ledger_counts(settings, job_id)

        assert done["status"] == "CANCELLED", done
        assert done["failure_reason"].startswith("The job was cancelled")
        assert done["processed"] == TOTAL == done["successful"] + done["failed"] + done["skipped"]
        assert done["skipped"] > 0 and done["failed"] == 0
        assert ledger == {"CREATED": done["successful"], "SKIPPED": done["skipped"]}
        # The race: the batch in flight when the cancel was accepted was written after it.
        assert done["successful"] > written_at_cancel, (done, written_at_cancel)
        assert ledger_status(settings, job_id, racing_index) == "CREATED"

        events = outcome_events(settings.kafka_bootstrap, settings.topics.outcomes, job_id, TOTAL)
        assert sorted(events) == list(range(TOTAL)), "every record has an outcome event"
        skipped = {i for i, copies in events.items() if copies[0]["status"] == "SKIPPED"}
        assert len(skipped) == done["skipped"]
        assert all(events[i][0]["error_code"] == "JobCancelled" for i in skipped)
        assert all(copy == copies[0] for copies in events.values() for copy in copies)

        report = tenant.api.get(f"/api/v1/jobs/{job_id}/report")
        assert report.status == 200, report.body
        rows = list(csv.DictReader(io.StringIO(report.body.decode())))
        assert len(rows) == done["skipped"]
        assert {row["errorCode"] for row in rows} == {"JobCancelled"}
        assert {int(row["index"]) for row in rows} == skipped
        assert rows[0]["failureReason"].endswith("was not processed: its job was cancelled")

        hooks = poll(lambda: receiver.count() >= 1 and receiver.received, 60, "the webhook")
        assert json.loads(hooks[0].body)["type"] == "job.cancelled"
        assert bystanding.api.wait_terminal(bystander.json()["job_id"])["status"] == "COMPLETED"
    finally:
        receiver.stop()


@pytest.mark.parametrize("moment", ["at once", "mid-job", "near the end"])
def test_a_cancel_at_any_moment_ends_the_job_cancelled_with_counts_that_add_up(
    tenant, settings, moment
):
    total = 6_000
    job_id = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), total)}).json()["job_id"]
    if moment != "at once":
        least = 1 if moment == "mid-job" else total * 9 // 10
        poll(
            lambda: job(tenant, job_id)["processed"] >= least,
            120,
            f"{least} records processed",
            interval=0.01,
        )
    answer = cancel(tenant, job_id)
    if answer.status == 409:  # the last batch won the race: the job had ended (an answer too)
        assert answer.json()["errors"][0]["errorCode"] == "JobNotCancellable"
        assert moment != "at once" and job(tenant, job_id)["status"] == "COMPLETED"
        return
    assert answer.status == 202, answer.body
    done = tenant.api.wait_terminal(job_id, timeout=180)
    assert done["status"] == "CANCELLED", done
    assert done["processed"] == total == done["successful"] + done["failed"] + done["skipped"]
    assert sum(ledger_counts(settings, job_id).values()) == total
    events = outcome_events(settings.kafka_bootstrap, settings.topics.outcomes, job_id, total)
    assert sorted(events) == list(range(total))
    if moment == "at once":
        assert done["skipped"] > 0


def test_cancelling_twice_is_harmless_and_an_ended_job_is_not_cancellable(tenant, settings):
    job_id = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), TOTAL)}).json()["job_id"]
    under_way(tenant, job_id, TOTAL)
    assert cancel(tenant, job_id).status == 202
    assert cancel(tenant, job_id).status == 202
    done = tenant.api.wait_terminal(job_id, timeout=180)
    assert done["status"] == "CANCELLED"
    again = cancel(tenant, job_id)
    assert again.status == 202 and again.json()["status"] == "CANCELLED"
    assert job(tenant, job_id) == done, "a cancel of a cancelled job changes nothing"
    assert sum(ledger_counts(settings, job_id).values()) == TOTAL

    finished = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), 3)}).json()
    ended = tenant.api.wait_terminal(finished["job_id"])
    refused = cancel(tenant, finished["job_id"])
    assert refused.status == 409, refused.body
    [error] = refused.json()["errors"]
    assert error["errorCode"] == "JobNotCancellable"
    assert "has already ended COMPLETED" in error["message"]
    assert job(tenant, finished["job_id"]) == ended


def test_only_the_owner_can_cancel(tenant, make_tenant):
    job_id = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), 3)}).json()["job_id"]
    stranger = make_tenant()
    assert cancel(stranger, job_id).status == 404
    assert cancel(tenant, str(uuid.uuid4())).status == 404
    assert cancel(tenant, "not-a-job").status == 404
    assert (
        tenant.api.request(
            "POST", f"/api/v1/jobs/{job_id}/cancel", headers={"Authorization": "Bearer wrong"}
        ).status
        == 401
    )
    assert tenant.api.wait_terminal(job_id)["status"] == "COMPLETED"


def test_a_cancelled_import_stops_reading_its_file(tenant, settings):
    prefix = unique_prefix()
    rows = [row for part in range(60) for row in people(f"{prefix}{part}-")]  # 60,000 rows
    profile = uploaded(tenant.api, spreadsheet_csv(rows))
    answer = start(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert answer.status == 202, answer.body
    job_id = answer.json()["job_id"]
    reading = poll(
        lambda: (found := job(tenant, job_id)) and found["processed"] > 0 and found,
        120,
        "the import to be under way",
        interval=0.05,
    )
    assert reading["total"] == 0, "still reading the file (its total is not known yet)"

    assert cancel(tenant, job_id).status == 202
    done = tenant.api.wait_terminal(job_id, timeout=180)

    assert done["status"] == "CANCELLED", done
    assert 0 < done["total"] < len(rows), "the reading stopped before the end of the file"
    assert done["processed"] == done["total"]
    assert done["successful"] + done["failed"] + done["skipped"] == done["total"]
    assert sum(ledger_counts(settings, job_id).values()) == done["total"]
