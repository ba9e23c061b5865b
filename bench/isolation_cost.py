"""What isolating a value PostgreSQL refuses costs the persist stage (the failure path).

    .venv/bin/python -m bench.isolation_cost [--records 2000] [--runs 5]

Persists one batch of ``--records`` customers straight through ``BatchPersister`` against the
database named by ``BULK_INGEST_DATABASE_URL`` (migrated; e.g. the one ``./dev up`` uses):
clean, with one record holding ``\\u0000`` (smuggled past validation, as a new entity's rules or
a hand-written internal message could), and with ten. Prints the median time of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import psycopg

from bench.common import bench_tenant, customer_records
from bulk_ingest.settings import load_settings
from bulk_ingest.topics import Codecs
from domain.entities import EntityRegistry, default_schemas_dir
from domain.outcomes import PendingRecord
from domain.validation import to_avro_record
from storage.entity_rows import EntityTableMap
from storage.persist import BatchPart, BatchPersister
from streams.events import Announcer


def parts(tenant_id: str, job_id: str, count: int, bad: set[int]) -> list[BatchPart]:
    customers = EntityRegistry.load(default_schemas_dir()).get("customers")
    records = []
    for index, record in enumerate(customer_records(count, uuid.uuid4().hex[:6])):
        avro = to_avro_record(customers, record)
        if index in bad:
            avro["firstName"] = "A\x00b"
        key = avro["externalId"]
        records.append(PendingRecord(job_id, tenant_id, "customers", "insert", index, key, avro))
    quarter = max(count // 4, 1)
    return [
        BatchPart(job_id, tenant_id, f"0:{n}", count, records[n * quarter : (n + 1) * quarter])
        for n in range(4)
    ]


async def measure(records: int, runs: int) -> None:
    settings = load_settings()
    registry = EntityRegistry.load(default_schemas_dir())
    tables = {name: EntityTableMap.of(registry.get(name)) for name in registry.names()}
    labels = {name: registry.get(name).label for name in registry.names()}
    encode = Announcer(Codecs.load(default_schemas_dir()), settings.topics).encode_outcome
    persister = BatchPersister(settings.libpq_url, tables, encode, labels)
    tenant_id, _ = bench_tenant(settings)
    cases = [
        ("clean", set()),
        ("1 refused", {records // 2}),
        ("10 refused", set(range(0, records, records // 10))),
    ]
    try:
        for label, bad in cases:
            times = []
            for _ in range(runs):
                job_id = str(uuid.uuid4())
                with psycopg.connect(settings.libpq_url, autocommit=True) as conn:
                    conn.execute(
                        "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, "
                        "total) VALUES (%s, %s, 'customers', 'insert', 'kafka', 'READY', %s)",
                        [job_id, tenant_id, records],
                    )
                batch = parts(tenant_id, job_id, records, bad)
                started = time.perf_counter()
                done = await persister.persist(batch)
                times.append(time.perf_counter() - started)
                assert sum(o.error_code == "InvalidValue" for o in done.outcomes) == len(bad)
            print(f"{label:10} {records} records: median {statistics.median(times) * 1000:.0f} ms")
    finally:
        await persister.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(measure(args.records, args.runs))


if __name__ == "__main__":
    main()
