"""A batch that waits on a row lock for longer than the stall period restarts no worker: the
partitions queued behind it wait their turn (streams/watchdog.py), and the job completes
exactly once the lock is gone."""

from __future__ import annotations

import time
import uuid

from tests.support.exactness import assert_exact
from tests.support.http import poll
from tests.support.jobs import a_worker_held
from tests.support.kafka import customer_partition, records_partition_owners
from tests.support.records import customers, unique_prefix

TOTAL = 4_000


def test_a_batch_on_a_lock_for_three_stall_periods_restarts_no_worker(
    tenant, make_tenant, settings, service
):
    owners = records_partition_owners(settings)
    assert len(owners) == 2 and all(owners), f"two workers, each with partitions: {owners}"
    held = owners[0]
    blocker = make_tenant()
    blocker_key = next(
        key
        for key in (f"held-{uuid.uuid4().hex}" for _ in range(1000))
        if customer_partition(settings, blocker.tenant_id, key) in held
    )
    records = customers(unique_prefix(), TOTAL)
    queued = {customer_partition(settings, tenant.tenant_id, r["externalId"]) for r in records} & (
        held - {customer_partition(settings, blocker.tenant_id, blocker_key)}
    )
    assert queued, "some of the job must wait on the held worker's other partitions"
    restarts = len(service.restarts)
    with a_worker_held(settings, blocker, blocker_key):
        answer = tenant.api.post("/api/v1/customers/bulk/async", {"records": records})
        assert answer.status == 202, answer.body
        job_id = answer.json()["job_id"]
        poll(
            lambda: tenant.api.get(f"/api/v1/jobs/{job_id}").json()["processed"] > 0,
            60,
            "the free worker's share written",
        )
        # The condition under test is time passing: the old watchdog sought the queued
        # partitions back after one stall period and exited (75) after the second.
        time.sleep(3 * settings.stall_seconds + settings.stall_check_seconds)
        during = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
        assert during["status"] == "STARTED" and during["processed"] < TOTAL, during
        assert service.restarts[restarts:] == [], "a worker was restarted while it waited"
        assert all(worker.alive() for worker in service.workers)
    assert_exact(settings, tenant, job_id, TOTAL)
    assert service.restarts[restarts:] == []
