"""What writing before-images (revert, design.md §8) costs the persist stage, A/B in one process.

    .venv/bin/python -m bench.before_image_cost [--records 2000] [--pairs 5]

Persists batches of ``--records`` customers straight through ``BatchPersister`` against the
database named by ``BULK_INGEST_DATABASE_URL`` (migrated): an insert job, then an upsert job
changing every row (inserts leave no before-image, updates one each). Turns alternate, *with*
before-images (the code as it is) then *without* (``Writes.before`` left empty and both
before-image writes no-ops: the code as it was before revert), for ``--pairs`` pairs; each
turn also times a COPY of the same rows into a scratch table, and the summary compares the
medians of persist time / COPY time — the ratio survives the machine's noise. Needs no Kafka:
it measures the one transaction that changed (``bench.ab`` measures the whole pipeline, and
needs the machine to itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg

from bench.common import bench_tenant, customer_records
from bulk_ingest.settings import load_settings
from bulk_ingest.topics import Codecs
from domain import outcomes
from domain.entities import EntityRegistry, default_schemas_dir
from domain.outcomes import PendingRecord
from domain.validation import to_avro_record
from storage import before_images, persist
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from streams.events import Announcer


class _Forgetful(dict[Any, Any]):
    """A ``Writes.before`` that keeps nothing: decide_batch as it was before revert."""

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return default


@contextlib.contextmanager
def without_before_images() -> Iterator[None]:
    original_writes = outcomes.Writes
    original_write, original_capture = persist.write_before_images, persist.capture_before_images

    def writes() -> outcomes.Writes:
        return original_writes(before=_Forgetful())

    async def nothing(*_: Any) -> None:
        return None

    outcomes.Writes = writes  # type: ignore[assignment,misc]
    persist.write_before_images = nothing
    persist.capture_before_images = nothing
    try:
        yield
    finally:
        outcomes.Writes = original_writes  # type: ignore[misc]
        persist.write_before_images = original_write
        persist.capture_before_images = original_capture


def parts(
    tenant_id: str, job_id: str, operation: str, rows: list[dict[str, Any]]
) -> list[BatchPart]:
    customers = EntityRegistry.load(default_schemas_dir()).get("customers")
    records = [
        PendingRecord(
            job_id,
            tenant_id,
            "customers",
            operation,
            i,
            r["externalId"],
            to_avro_record(customers, r),
        )
        for i, r in enumerate(rows)
    ]
    return [BatchPart(job_id, tenant_id, "0:0", len(records), records)]


def new_job(settings: Any, tenant_id: str, operation: str, total: int) -> str:
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, 'customers', %s, 'kafka', 'READY', %s)",
            [job_id, tenant_id, operation, total],
        )
    return job_id


def copy_seconds(settings: Any, rows: list[dict[str, Any]]) -> float:
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "CREATE TEMP TABLE scratch_copy (LIKE customers INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        started = time.perf_counter()
        with conn.cursor().copy(
            "COPY scratch_copy (id, tenant_id, external_id, first_name, last_name, email) "
            "FROM STDIN"
        ) as copy:
            for r in rows:
                copy.write_row(
                    [
                        uuid.uuid4(),
                        uuid.UUID(int=0),
                        r["externalId"],
                        r["firstName"],
                        r["lastName"],
                        r["email"],
                    ]
                )
        elapsed = time.perf_counter() - started
        conn.rollback()
    return elapsed


async def turn(persister: BatchPersister, settings: Any, tenant_id: str, count: int) -> float:
    """Seconds to persist an insert job and an upsert job of ``count`` records."""
    rows = customer_records(count, uuid.uuid4().hex[:8])
    changed = [{**r, "firstName": r["firstName"] + "x"} for r in rows]
    elapsed = 0.0
    for operation, records in (("insert", rows), ("upsert", changed)):
        batch = parts(tenant_id, new_job(settings, tenant_id, operation, count), operation, records)
        started = time.perf_counter()
        await persister.persist(batch)
        elapsed += time.perf_counter() - started
    return elapsed


SPENT = [0.0]


def timed_before_images() -> None:
    """Count the time the before-image write itself takes (printed per turn)."""
    write, capture = before_images.write_before_images, before_images.capture_before_images

    async def timed_write(*args: Any) -> None:
        started = time.perf_counter()
        await write(*args)
        SPENT[0] += time.perf_counter() - started

    async def timed_capture(*args: Any) -> None:
        started = time.perf_counter()
        await capture(*args)
        SPENT[0] += time.perf_counter() - started

    persist.write_before_images = timed_write
    persist.capture_before_images = timed_capture


async def measure(count: int, pairs: int) -> None:
    settings = load_settings()
    registry = EntityRegistry.load(default_schemas_dir())
    tables = {name: EntityTableMap.of(registry.get(name)) for name in registry.names()}
    labels = {name: registry.get(name).label for name in registry.names()}
    encode = Announcer(Codecs.load(default_schemas_dir()), settings.topics).encode_outcome
    persister = BatchPersister(settings.libpq_url, tables, encode, labels)
    tenant_id, _ = bench_tenant(settings)
    ratios: dict[str, list[float]] = {"with": [], "without": []}
    spent: dict[str, list[float]] = {"with": [], "without": []}
    timed_before_images()
    try:
        await turn(persister, settings, tenant_id, count)  # warm-up
        for pair in range(pairs):
            for arm in ("with", "without"):
                rows = customer_records(count, "copy")
                baseline = copy_seconds(settings, rows) * 2  # two batches persisted per turn
                SPENT[0] = 0.0
                if arm == "with":
                    seconds = await turn(persister, settings, tenant_id, count)
                else:
                    with without_before_images():
                        seconds = await turn(persister, settings, tenant_id, count)
                ratios[arm].append(seconds / baseline)
                spent[arm].append(seconds)
                print(
                    f"pair {pair} {arm:7} before-images: persist {seconds * 1000:.0f} ms, "
                    f"COPY {baseline * 1000:.0f} ms, ratio {seconds / baseline:.2f} "
                    f"(writing before-images {SPENT[0] * 1000:.0f} ms)"
                )
    finally:
        await persister.close()
    with_, without = statistics.median(ratios["with"]), statistics.median(ratios["without"])
    with_ms = statistics.median(spent["with"]) * 1000
    without_ms = statistics.median(spent["without"]) * 1000
    print(
        f"median persist of one insert + one upsert batch: with {with_ms:.0f} ms, "
        f"without {without_ms:.0f} ms"
    )
    print(
        f"median ratio to COPY: with {with_:.2f}, without {without:.2f}: "
        f"before-images cost {(with_ / without - 1) * 100:+.1f} % of the persist transaction"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(measure(args.records, args.pairs))


if __name__ == "__main__":
    main()
