"""Shared bits of the benchmarks: a tenant, customer rows, the COPY baseline, timing."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from bulk_ingest.settings import Settings
from domain.entities import DEFAULT_REFERENCE_TYPES
from storage.db import create_tenant, sync_engine


def bench_tenant(settings: Settings) -> tuple[str, str]:
    """(tenant_id, api_key) of a fresh tenant, unless BULK_INGEST_API_KEY names one."""
    engine = sync_engine(settings.sqlalchemy_url)
    try:
        tenant = create_tenant(engine, f"bench-{uuid.uuid4().hex[:6]}", DEFAULT_REFERENCE_TYPES)
    finally:
        engine.dispose()
    return tenant.tenant_id, tenant.api_key


def customer_records(count: int, prefix: str) -> list[dict[str, Any]]:
    return [
        {
            "externalId": f"{prefix}-{i}",
            "firstName": f"First{i}",
            "lastName": f"Last{i}",
            "email": f"user{i}@example.com",
            "phone": "+44 20 7946 0000",
            "company": "Acme Ltd",
            "addresses": [
                {"type": "work", "line1": f"{i} High Street", "city": "London", "country": "GB"}
            ],
        }
        for i in range(count)
    ]


COPY_COLUMNS = (
    "id",
    "tenant_id",
    "external_id",
    "first_name",
    "last_name",
    "email",
    "phone",
    "company",
    "addresses",
)


def copy_baseline(settings: Settings, rows: Iterable[Sequence[Any]]) -> float:
    """Seconds PostgreSQL takes to COPY the same rows into a scratch table (the floor).

    ``rows`` are customer column values from ``external_id`` to ``addresses`` (JSON text).
    """
    tenant = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute("CREATE TEMP TABLE bench_copy (LIKE customers INCLUDING DEFAULTS)")
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY bench_copy ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([str(uuid.uuid4()), tenant, *row])
        conn.commit()
        return time.perf_counter() - started


def copy_floor(settings: Settings, rows: Sequence[Sequence[Any]], repeats: int = 3) -> float:
    """The fastest of ``repeats`` COPYs of the same rows. One COPY of a few hundred ms on a
    shared machine swings by a factor of two (seen 2026-12-01: 0.19 to 0.5 s for 50,000 rows),
    which drowns a 10 % comparison; the minimum is the floor the baseline stands for."""
    return min(copy_baseline(settings, rows) for _ in range(repeats))


def record_copy_rows(records: Iterable[dict[str, Any]]) -> Iterator[list[Any]]:
    """The COPY rows of customer records shaped like ``customer_records`` makes them."""
    for r in records:
        yield [
            r["externalId"],
            r["firstName"],
            r["lastName"],
            r["email"],
            r["phone"],
            r["company"],
            json.dumps(r["addresses"]),
        ]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def machine() -> str:
    return f"{os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}"
