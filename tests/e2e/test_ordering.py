"""Records of one key are applied in the order their jobs were accepted: the later upsert wins.

Jobs small enough to share persist batches, submitted back to back, over keys spread across
every bulk.records partition (so across both workers): whatever order their records reach the
persist stage in, every key ends with the later job's value, and the earlier job's write that
came too late is UNCHANGED.
"""

from __future__ import annotations

import uuid

import psycopg

from tests.support.http import poll
from tests.support.kafka import avro_customer, chunk, publish_chunks
from tests.support.records import customer, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
PAIRS = 30
KEYS = 20


def first_names(settings, tenant_id: str, prefix: str) -> dict[str, str]:
    with psycopg.connect(settings.libpq_url) as conn:
        return dict(
            conn.execute(
                "SELECT external_id, first_name FROM customers WHERE tenant_id = %s "
                "AND external_id LIKE %s",
                [tenant_id, f"{prefix}%"],
            ).fetchall()
        )


def upsert(tenant, keys: list[str], name: str) -> str:
    body = {"operation": "upsert", "records": [customer(k, firstName=name) for k in keys]}
    answer = tenant.api.post(ASYNC, body)
    assert answer.status == 202, answer.body
    return answer.json()["job_id"]


def test_the_later_upsert_wins_every_time(tenant, settings):
    prefix = unique_prefix()
    jobs = []
    for pair in range(PAIRS):
        keys = [f"{prefix}-{pair}-{i}" for i in range(KEYS)]
        jobs.append(upsert(tenant, keys, "OLD"))
        jobs.append(upsert(tenant, keys, "NEW"))
    for job_id in jobs:
        assert tenant.api.wait_terminal(job_id)["status"] == "COMPLETED"
    names = first_names(settings, tenant.tenant_id, prefix)
    assert len(names) == PAIRS * KEYS
    kept_old = sorted(key for key, name in names.items() if name != "NEW")
    assert kept_old == [], f"{len(kept_old)} of {len(names)} keys kept the earlier value"


def test_a_kafka_produced_job_and_an_http_job_apply_in_acceptance_order(tenant, settings):
    """The acceptance sequence is taken when a job row is registered, for Kafka-produced jobs
    too (when their first chunk is admitted): whichever was registered later wins."""
    prefix = unique_prefix()
    later = []
    for pair in range(10):
        keys = [f"{prefix}-{pair}-{i}" for i in range(KEYS)]
        kafka_job = str(uuid.uuid4())
        kafka_chunk = chunk(
            tenant.tenant_id,
            kafka_job,
            [avro_customer(k, firstName="KAFKA") for k in keys],
            operation="upsert",
        )
        if pair % 2:  # HTTP first, then the producer's job
            upsert(tenant, keys, "HTTP")
            publish_chunks(settings, kafka_job, kafka_chunk)
            later.append("KAFKA")
        else:  # the producer's job registered first, then HTTP
            publish_chunks(settings, kafka_job, kafka_chunk)
            poll(lambda j=kafka_job: tenant.api.get(f"/api/v1/jobs/{j}").status == 200, 60, "it")
            upsert(tenant, keys, "HTTP")
            later.append("HTTP")
    for job in tenant.api.get("/api/v1/jobs?limit=200").json()["jobs"]:
        tenant.api.wait_terminal(job["job_id"])
    names = first_names(settings, tenant.tenant_id, prefix)
    for pair, winner in enumerate(later):
        values = {names[f"{prefix}-{pair}-{i}"] for i in range(KEYS)}
        assert values == {winner}, (pair, values)


def test_an_earlier_write_arriving_late_is_unchanged(tenant, settings):
    """Same key, same batch or not: the earlier job's record is UNCHANGED when the later job's
    value is already there, and the row remembers the later job."""
    key = f"{unique_prefix()}-late"
    first = upsert(tenant, [key], "OLD")
    second = upsert(tenant, [key], "NEW")
    outcomes = {}
    for job_id in (first, second):
        tenant.api.wait_terminal(job_id)
        results = tenant.api.get(f"/api/v1/jobs/{job_id}/results?format=csv").body.decode()
        outcomes[job_id] = results.splitlines()[1].split(",")[3]
    with psycopg.connect(settings.libpq_url) as conn:
        row = conn.execute(
            "SELECT first_name, last_job_id::text, last_seq, j.accepted_seq FROM customers c "
            "JOIN jobs j ON j.job_id = %s WHERE c.tenant_id = %s AND c.external_id = %s",
            [second, tenant.tenant_id, key],
        ).fetchone()
    assert row[0] == "NEW" and row[1] == second and row[2] == row[3]
    assert outcomes[second] in ("CREATED", "UPDATED")
    assert outcomes[first] in ("CREATED", "UNCHANGED")
