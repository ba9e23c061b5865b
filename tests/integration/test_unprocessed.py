"""Ending an incomplete job against the real database and broker: missing records fail first,
the job ends with processed == total, and a job with every outcome is never failed."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.topics import Codecs
from domain.entities import EntityRegistry, default_schemas_dir
from domain.errors import ErrorCode
from domain.outcomes import PendingRecord
from domain.validation import to_avro_record
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from streams.events import Announcer
from streams.unprocessed import UnprocessedRecords
from tests.support.jobs import tenant_with_a_live_job
from tests.support.records import customer

REGISTRY = EntityRegistry.load(default_schemas_dir())
LABELS = {name: REGISTRY.get(name).label for name in REGISTRY.names()}


def a_job_with_outcomes(settings, total: int, stored: int) -> tuple[str, str]:
    """A live job of ``total`` customers, ``stored`` of which already have their outcome."""
    tenant_id, job_id = tenant_with_a_live_job(settings, "unprocessed", total=total)
    definition = REGISTRY.get("customers")
    records = [
        PendingRecord(
            job_id,
            tenant_id,
            "customers",
            "insert",
            i,
            key,
            to_avro_record(definition, customer(key)),
        )
        for i, key in enumerate(f"{uuid.uuid4().hex[:6]}-{n}" for n in range(stored))
    ]
    tables = {name: EntityTableMap.of(REGISTRY.get(name)) for name in REGISTRY.names()}

    async def persist() -> None:
        encode = Announcer(Codecs.load(default_schemas_dir()), settings.topics).encode_outcome
        persister = BatchPersister(settings.libpq_url, tables, encode, LABELS)
        try:
            await persister.persist([BatchPart(job_id, tenant_id, "0:0", total, records)])
        finally:
            await persister.close()

    asyncio.run(persist())
    return tenant_id, job_id


def end(settings, job_id: str) -> bool:
    async def run() -> bool:
        producer = AsyncProducer(settings.kafka_bootstrap, "test-unprocessed")
        announcer = Announcer(Codecs.load(default_schemas_dir()), settings.topics)
        unprocessed = UnprocessedRecords(settings.libpq_url, producer, announcer, LABELS)
        try:
            return await unprocessed.end_incomplete(
                job_id,
                ErrorCode.RecordNotReceived,
                "was not received",
                "idle",
                only_if_missing=True,
            )
        finally:
            await unprocessed.close()
            producer.close()

    return asyncio.run(run())


def job_row(settings, job_id: str) -> tuple:
    with psycopg.connect(settings.libpq_url) as conn:
        return conn.execute(
            "SELECT status, total, processed, successful, failed, "
            "(SELECT count(*) FROM job_parts WHERE job_id = %s AND pending_events) "
            "FROM jobs WHERE job_id = %s",
            [job_id, job_id],
        ).fetchone()


def test_missing_records_fail_first_and_the_job_ends_with_exact_counts(settings):
    _, job_id = a_job_with_outcomes(settings, total=5, stored=3)
    assert end(settings, job_id) is True
    assert job_row(settings, job_id) == ("INTERNAL_FAILURE", 5, 5, 3, 2, 0)  # announced too
    assert end(settings, job_id) is False  # a terminal job never changes again


def test_a_job_with_every_outcome_is_not_failed_only_nudged(settings):
    _, job_id = a_job_with_outcomes(settings, total=3, stored=3)
    assert end(settings, job_id) is False
    status, total, processed, successful, failed, _ = job_row(settings, job_id)
    # Not ended and no record failed; the nudged aggregator (the session's workers, when they
    # run) may already have given it the status its outcomes earn.
    assert status in ("READY", "COMPLETED") and (total, failed) == (3, 0), status
    assert processed in (0, 3) and successful == processed


def test_concurrent_callers_never_share_a_transaction(settings):
    """The stages and the sweeper use one UnprocessedRecords at once: each call gets its own
    transaction, none nested in another's (which would leave one open, holding job locks, and
    lose its work when the connection closes). The rows are read from another connection."""
    jobs = [a_job_with_outcomes(settings, total=4, stored=1)[1] for _ in range(6)]

    async def run() -> list[bool]:
        producer = AsyncProducer(settings.kafka_bootstrap, "test-unprocessed")
        announcer = Announcer(Codecs.load(default_schemas_dir()), settings.topics)
        unprocessed = UnprocessedRecords(settings.libpq_url, producer, announcer, LABELS)
        try:
            ended = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        unprocessed.end_incomplete(
                            job_id, ErrorCode.RecordNotReceived, "was not received", "idle"
                        )
                        for job_id in jobs
                    )
                ),
                60,
            )
            return list(ended)
        finally:
            await unprocessed.close()
            producer.close()

    assert asyncio.run(run()) == [True] * len(jobs)
    for job_id in jobs:
        assert job_row(settings, job_id) == ("INTERNAL_FAILURE", 4, 4, 1, 3, 0)
