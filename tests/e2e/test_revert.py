"""Revert, end to end (design.md §8): ``POST /jobs/{id}/revert`` and the revert job it starts.

The acceptance sequence of the contract: job A inserts k1, k2, k3; job B updates k2; job C
upserts k3 and a new k4. Reverting A deletes k1 and leaves k2 and k3 (later jobs changed them:
``ChangedSince``); reverting C deletes k4 and restores k3 to A's values. Every outcome is on
``bulk.outcomes`` (v3: ``DELETED``, ``RESTORED``); the rows are checked in the database. Then
the refusals: twice, still running, expired, another tenant, a dry run.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_jobs_cli import cli
from tests.e2e.test_jobs_cli import finished as exited
from tests.support.imports import db
from tests.support.jobs import a_worker_held
from tests.support.outcomes import outcome_events
from tests.support.records import customer, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"


def revert(tenant: Any, job_id: str, **kwargs: Any) -> Any:
    return tenant.api.post(f"/api/v1/jobs/{job_id}/revert", **kwargs)


def finished(tenant: Any, records: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    answer = tenant.api.post(ASYNC, {"records": records, **body})
    assert answer.status == 202, answer.body
    return tenant.api.wait_terminal(answer.json()["job_id"])


def reverted(tenant: Any, job_id: str) -> dict[str, Any]:
    answer = revert(tenant, job_id)
    assert answer.status == 202, answer.body
    assert answer.headers["Location"] == f"/api/v1/jobs/{answer.json()['job_id']}"
    job = answer.json()
    assert job["operation"] == "revert" and job["revert_of_job_id"] == job_id
    return tenant.api.wait_terminal(job["job_id"])


def first_error(answer: Any) -> dict[str, Any]:
    return dict(answer.json()["errors"][0])


def row(settings: Any, tenant: Any, key: str) -> tuple | None:
    rows = db(
        settings,
        "SELECT first_name, last_job_id::text FROM customers "
        "WHERE tenant_id = %s AND external_id = %s",
        tenant.tenant_id,
        key,
    )
    return rows[0] if rows else None


def statuses(settings: Any, job: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """key → (status, error code) of every record of the job, read from bulk.outcomes."""
    events = outcome_events(
        settings.kafka_bootstrap, settings.topics.outcomes, job["job_id"], job["total"]
    )
    assert sorted(events) == list(range(job["total"])), "every (job, index) has an event"
    return {e[0]["key"]: (e[0]["status"], e[0]["error_code"]) for e in events.values()}


def test_the_acceptance_sequence_reverts_what_no_later_job_changed(tenant, settings):
    p = unique_prefix()
    k1, k2, k3, k4 = (f"{p}-k{i}" for i in range(1, 5))
    a = finished(tenant, [customer(k, firstName="A") for k in (k1, k2, k3)])
    b = finished(tenant, [customer(k2, firstName="B")], operation="update")
    c = finished(
        tenant, [customer(k3, firstName="C"), customer(k4, firstName="C")], operation="upsert"
    )
    assert (a["successful"], b["successful"], c["successful"]) == (3, 1, 2)

    revert_a = reverted(tenant, a["job_id"])
    assert revert_a["status"] == "COMPLETED_WITH_ERRORS", revert_a
    assert (revert_a["total"], revert_a["successful"], revert_a["failed"]) == (3, 1, 2)
    assert statuses(settings, revert_a) == {
        k1: ("DELETED", None),
        k2: ("FAILED", "ChangedSince"),
        k3: ("FAILED", "ChangedSince"),
    }
    assert {e["errorCode"] for e in revert_a["errors"]} == {"ChangedSince"}
    assert row(settings, tenant, k1) is None
    assert row(settings, tenant, k2) == ("B", b["job_id"])
    assert row(settings, tenant, k3) == ("C", c["job_id"])
    assert (
        tenant.api.get(f"/api/v1/jobs/{a['job_id']}").json()["reverted_by_job_id"]
        == (revert_a["job_id"])
    )

    revert_c = reverted(tenant, c["job_id"])
    assert revert_c["status"] == "COMPLETED" and revert_c["successful"] == 2
    assert statuses(settings, revert_c) == {k3: ("RESTORED", None), k4: ("DELETED", None)}
    assert row(settings, tenant, k3) == ("A", a["job_id"]), "k3 has A's values and last write"
    assert row(settings, tenant, k4) is None

    again = revert(tenant, a["job_id"])
    assert again.status == 409 and first_error(again)["errorCode"] == "JobAlreadyReverted"
    of_revert = revert(tenant, revert_a["job_id"])
    assert of_revert.status == 422 and first_error(of_revert)["errorCode"] == "NothingToRevert"


def test_a_revert_with_the_same_idempotency_key_is_replayed_not_refused(tenant):
    job = finished(tenant, [customer(f"{unique_prefix()}-idem")])
    headers = {"Idempotency-Key": f"revert-{job['job_id']}"}
    first = revert(tenant, job["job_id"], headers=headers)
    assert first.status == 202, first.body
    second = revert(tenant, job["job_id"], headers=headers)
    assert second.status == 202 and second.headers.get("Idempotent-Replayed") == "true"
    assert second.json()["job_id"] == first.json()["job_id"]
    tenant.api.wait_terminal(first.json()["job_id"])


def test_a_job_still_running_cannot_be_reverted(tenant, settings):
    with a_worker_held(settings, tenant) as held_job:
        running = revert(tenant, held_job)
        assert running.status == 409, running.body
        assert first_error(running)["errorCode"] == "JobNotTerminal"


def test_a_revert_after_the_retention_is_refused(tenant, settings):
    job = finished(tenant, [customer(f"{unique_prefix()}-old")])
    db(
        settings,
        "UPDATE jobs SET completed_at = completed_at - interval '31 days' WHERE job_id = %s",
        job["job_id"],
    )
    expired = revert(tenant, job["job_id"])
    assert expired.status == 409 and first_error(expired)["errorCode"] == "RevertExpired"


def test_another_tenants_job_is_not_found_and_a_dry_run_has_nothing_to_revert(tenant, make_tenant):
    job = finished(tenant, [customer(f"{unique_prefix()}-mine")])
    other = make_tenant()
    assert revert(other, job["job_id"]).status == 404
    dry = finished(tenant, [customer(f"{unique_prefix()}-dry")], dry_run=True)
    nothing = revert(tenant, dry["job_id"])
    assert nothing.status == 422 and first_error(nothing)["errorCode"] == "NothingToRevert"
    assert "dry run" in first_error(nothing)["message"]


def test_the_cli_reverts_a_job_and_refuses_a_second_time(tenant, settings, service):
    key = f"{unique_prefix()}-cli"
    job = finished(tenant, [customer(key)])
    code, out, err = exited(cli(service, tenant, "revert", job["job_id"], "--wait"))
    assert code == 0, err
    assert "COMPLETED" in out
    assert row(settings, tenant, key) is None
    code, _, err = exited(cli(service, tenant, "revert", job["job_id"]))
    assert code == 2 and "JobAlreadyReverted" in err
