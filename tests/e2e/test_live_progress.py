"""Live progress, end to end: ``GET /jobs/{id}/events`` and ``GET /jobs/events`` as
Server-Sent Events from the real gateway, while real workers run the job.

A job is held mid-way deterministically (an uncommitted row with one record's key keeps that
record's batch waiting): its stream must show it moving and not finished, then end with one
``terminal`` event equal to ``GET /jobs/{id}``.
"""

from __future__ import annotations

import pytest

from tests.support.events import EventStream
from tests.support.http import poll
from tests.support.jobs import a_batch_held_on
from tests.support.records import customers, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
TOTAL = 20_000
PROGRESS_FIELDS = {
    "job_id",
    "status",
    "total",
    "processed",
    "successful",
    "failed",
    "skipped",
    "records_per_second",
    "eta_seconds",
}


def submit(tenant, records):  # type: ignore[no-untyped-def]
    accepted = tenant.api.post(ASYNC, {"records": records})
    assert accepted.status == 202, accepted.body
    return accepted.json()["job_id"]


def test_a_job_stream_shows_it_moving_then_ends_with_the_job(tenant, settings):
    records = customers(unique_prefix(), TOTAL)
    records[7]["addresses"][0]["type"] = "moon"
    with a_batch_held_on(settings, tenant.tenant_id, records[TOTAL // 2]["externalId"]) as held:
        job_id = submit(tenant, records)
        with EventStream(tenant.api, f"/api/v1/jobs/{job_id}/events") as stream:
            assert stream.status == 200 and stream.content_type.startswith("text/event-stream")
            poll(held, 120, "a batch of the job to wait on the held key", interval=0.05)
            mid = stream.wait_for(
                lambda e: (
                    e.event == "progress"
                    and 0 < e.data["processed"] < TOTAL
                    and e.data["records_per_second"] > 0
                ),
                120,
                "a progress event of the job mid-way, with its rate",
            )
            assert stream.of("terminal") == [] and not stream.ended
            held_rows = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
            assert held_rows["status"] == "STARTED" and held_rows["processed"] < TOTAL
    # the hold is released: the job finishes; a new stream resumes after the mid-way event
    with EventStream(tenant.api, f"/api/v1/jobs/{job_id}/events", last_event_id=mid.id) as resumed:
        resumed.wait_ended(180)
    job = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
    assert set(mid.data) == PROGRESS_FIELDS and mid.data["job_id"] == job_id
    assert mid.data["eta_seconds"] is None or mid.data["eta_seconds"] > 0
    assert (
        mid.data["successful"] + mid.data["failed"] + mid.data["skipped"] == mid.data["processed"]
    )
    assert all(int(e.id) > int(mid.id) for e in resumed.events), "resumed after the event"
    *moving, last = resumed.events
    assert last.event == "terminal" and last.data == job, "one terminal event: the job object"
    assert job["status"] == "COMPLETED_WITH_ERRORS" and job["failed"] == 1, job
    assert all(e.event == "progress" for e in moving)
    processed = [e.data["processed"] for e in moving]
    assert processed == sorted(processed)
    if len(moving) > 1:
        seconds = moving[-1].at - moving[0].at
        assert len(moving) <= 4 * seconds + 2, "at most 4 progress events a second"


def test_a_finished_job_stream_sends_the_terminal_event_once(tenant):
    job_id = submit(tenant, customers(unique_prefix(), 50))
    job = tenant.api.wait_terminal(job_id)
    with EventStream(tenant.api, f"/api/v1/jobs/{job_id}/events") as stream:
        stream.wait_ended(30)
    assert [(e.event, e.data) for e in stream.events] == [("terminal", job)]
    last_id = stream.events[0].id
    with EventStream(tenant.api, f"/api/v1/jobs/{job_id}/events", last_event_id=last_id) as resumed:
        resumed.wait_ended(30)
    assert resumed.events == [], "a client that saw the terminal event gets nothing more"


def test_the_tenant_stream_carries_every_job_of_the_tenant_and_no_other(tenant, make_tenant):
    other = make_tenant()
    with EventStream(tenant.api, "/api/v1/jobs/events") as stream:
        mine = [submit(tenant, customers(unique_prefix(), 3_000)) for _ in range(2)]
        theirs = submit(other, customers(unique_prefix(), 1_000))
        for job_id in mine:
            stream.wait_for(
                lambda e, j=job_id: (
                    e.event == "job" and e.data["job_id"] == j and e.data["status"] == "COMPLETED"
                ),
                180,
                f"the terminal job event of {job_id}",
            )
        other.api.wait_terminal(theirs)
        first_seen = {
            job_id: next(e for e in stream.events if e.data["job_id"] == job_id) for job_id in mine
        }
    assert {e.data["job_id"] for e in stream.events} == set(mine), "no other tenant's job"
    for job_id, first in first_seen.items():
        assert first.event == "job", "a new job arrives as a job event"
        listed = tenant.api.get("/api/v1/jobs?limit=10").json()["jobs"]
        assert first.data.keys() == next(j for j in listed if j["job_id"] == job_id).keys()
    for event in stream.of("progress"):
        assert set(event.data) == PROGRESS_FIELDS
    # resuming after the first event brings each job's latest state
    with EventStream(
        tenant.api, "/api/v1/jobs/events", last_event_id=stream.events[0].id
    ) as resumed:
        for job_id in mine:
            resumed.wait_for(
                lambda e, j=job_id: e.data["job_id"] == j and e.data["status"] == "COMPLETED",
                30,
                f"the catch-up of {job_id}",
            )


def test_streams_answer_like_the_rest_of_the_api(tenant, make_tenant, service):
    job_id = submit(tenant, customers(unique_prefix(), 10))
    other = make_tenant()
    theirs = other.api.get(f"/api/v1/jobs/{job_id}/events")
    assert theirs.status == 404 and theirs.json()["errors"][0]["errorCode"] == "NotFound"
    unknown = tenant.api.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000/events")
    assert unknown.status == 404
    anonymous = tenant.api.get("/api/v1/jobs/events", headers={"Authorization": ""})
    assert anonymous.status == 401
    assert anonymous.json()["errors"][0]["errorCode"] == "Unauthorized"
    job = tenant.api.wait_terminal(job_id)
    for foreign in ("abc", "9" * 40, "-5", "0x10", "1e9"):  # not ids of ours: a fresh stream
        with EventStream(
            tenant.api, f"/api/v1/jobs/{job_id}/events", last_event_id=foreign
        ) as stream:
            stream.wait_ended(30)
        assert [(e.event, e.data) for e in stream.events] == [("terminal", job)], foreign
    with EventStream(tenant.api, "/api/v1/jobs/events", last_event_id="9" * 17) as far_ahead:
        assert far_ahead.status == 200 and not far_ahead.ended
