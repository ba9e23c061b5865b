"""A big JSON job's chunks are spread over the ``bulk.requests`` partitions, so every worker
validates a share of it, only when no key occurs twice in it; a job repeating a key keeps all
its chunks on one partition, validated in order by one worker.

The spread itself is read back from the topic (the chunk index of each message keyed by the
job id, and its partition), not inferred from timings.
"""

from __future__ import annotations

import zlib
from typing import Any

import psycopg

from tests.support.kafka import chunk_partitions, topic_ends
from tests.support.records import customer, customers, unique_prefix

ASYNC = "/api/v1/customers/bulk/async"
RECORDS = 3_500
"""Four chunks of at most 1,000 records (``BULK_INGEST_PUBLISH_CHUNK_RECORDS``)."""


def ledger_statuses(settings: Any, job_id: str) -> dict[int, tuple[str, str | None]]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(
            "SELECT index, status, error_code FROM record_outcomes WHERE job_id = %s",
            [job_id],
        ).fetchall()
    return {int(index): (status, code) for index, status, code in rows}


def submitted(tenant: Any, settings: Any, body: dict[str, Any]) -> tuple[str, dict[int, int]]:
    """The job id, and the partition of each of its chunks (by chunk index). Not spread, a job
    is keyed by its id alone, placed by the producer's partitioner (murmur2, as Java's)."""
    before = topic_ends(settings, settings.topics.requests)
    answer = tenant.api.post(ASYNC, body)
    assert answer.status == 202, answer.body
    job_id = answer.json()["job_id"]
    return job_id, chunk_partitions(settings, job_id, before)


def test_a_job_of_distinct_keys_takes_every_requests_partition_in_turn(tenant, settings):
    records = customers(unique_prefix(), RECORDS)
    job_id, partitions = submitted(tenant, settings, {"operation": "upsert", "records": records})
    start = zlib.crc32(job_id.encode())
    assert partitions == {i: (start + i) % settings.partitions for i in range(4)}
    job = tenant.api.wait_terminal(job_id, timeout=180)
    assert (job["status"], job["processed"], job["failed"]) == ("COMPLETED", RECORDS, 0)
    assert len(ledger_statuses(settings, job_id)) == RECORDS


def test_a_key_repeated_two_chunks_later_keeps_the_job_on_one_partition(tenant, settings):
    """Spread, the repeat (chunk 2) could reach its records partition before the first
    occurrence (chunk 0) and take its ``CREATED``; on one partition it cannot."""
    prefix = unique_prefix()
    records = customers(prefix, RECORDS)
    records[2_300] = customer(records[10]["externalId"], firstName="Repeat")
    job_id, partitions = submitted(tenant, settings, {"operation": "insert", "records": records})
    assert sorted(partitions) == [0, 1, 2, 3] and len(set(partitions.values())) == 1, partitions
    job = tenant.api.wait_terminal(job_id, timeout=180)
    assert (job["status"], job["processed"], job["failed"]) == ("COMPLETED_WITH_ERRORS", RECORDS, 1)
    statuses = ledger_statuses(settings, job_id)
    assert statuses[10][0] == "CREATED"
    assert statuses[2_300] == ("FAILED", "DuplicateKey")
