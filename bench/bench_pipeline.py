"""Benchmark: a 50,000-record async job and a 1,000-record sync call, beside a COPY baseline.

Run against the service started by ``./dev up`` (or ``.venv/bin/bulk-ingest up``):

    .venv/bin/python -m bench.bench_pipeline [--records 50000] [--sync-records 1000] [--runs 3]

It creates its own tenant through the database named by ``BULK_INGEST_DATABASE_URL`` and talks
to the gateway at ``--url`` (default http://127.0.0.1:8080). Every figure is printed beside the
baseline measured in the same run: PostgreSQL COPY of the same rows into a scratch table (the
fastest of three COPYs: the floor).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
import uuid

from bench.common import (
    bench_tenant,
    copy_baseline,
    copy_floor,
    customer_records,
    machine,
    record_copy_rows,
)
from bulk_ingest.settings import load_settings

TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}


def _call(url: str, api_key: str, method: str, body: bytes | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return answer.status, json.loads(answer.read())


def async_job(base: str, api_key: str, records: list[dict]) -> dict[str, float]:
    body = json.dumps({"records": records}).encode()
    started = time.perf_counter()
    status, job = _call(f"{base}/api/v1/customers/bulk/async", api_key, "POST", body)
    accepted = time.perf_counter()
    assert status == 202, job
    while True:
        _, job = _call(f"{base}/api/v1/jobs/{job['job_id']}", api_key, "GET")
        if job["status"] in TERMINAL:
            break
        time.sleep(0.02)
    finished = time.perf_counter()
    assert job["status"] == "COMPLETED" and job["successful"] == len(records), job
    return {"accept_s": accepted - started, "process_s": finished - accepted}


def sync_call(base: str, api_key: str, records: list[dict]) -> float:
    body = json.dumps({"records": records}).encode()
    started = time.perf_counter()
    status, job = _call(f"{base}/api/v1/customers/bulk", api_key, "POST", body)
    elapsed = time.perf_counter() - started
    assert status == 200 and job["status"] == "COMPLETED", (status, job.get("status"))
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--sync-records", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    _, api_key = bench_tenant(settings)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    rows = []
    for run in range(1, args.runs + 1):
        records = customer_records(args.records, f"a{uuid.uuid4().hex[:6]}")
        copy_s = copy_floor(settings, list(record_copy_rows(records)))
        result = async_job(args.url, api_key, records)
        sync_records = customer_records(args.sync_records, f"s{uuid.uuid4().hex[:6]}")
        sync_copy_s = copy_baseline(settings, record_copy_rows(sync_records))
        sync_s = sync_call(args.url, api_key, sync_records)
        rows.append((result, copy_s, sync_s, sync_copy_s))
        rate = args.records / result["process_s"]
        print(
            f"run {run}: async {args.records} records: 202 in {result['accept_s']:.2f} s, "
            f"terminal {result['process_s']:.2f} s after 202 = {rate:,.0f} records/s | "
            f"COPY baseline {copy_s:.2f} s = {args.records / copy_s:,.0f} rows/s "
            f"(pipeline/COPY time x{result['process_s'] / copy_s:.1f}) | "
            f"sync {args.sync_records}: {sync_s:.3f} s (COPY {sync_copy_s:.3f} s)"
        )
    process = statistics.median(r[0]["process_s"] for r in rows)
    accept = statistics.median(r[0]["accept_s"] for r in rows)
    copy_s = statistics.median(r[1] for r in rows)
    sync_s = statistics.median(r[2] for r in rows)
    print(
        f"median: 202 in {accept:.2f} s; {args.records / process:,.0f} records/s from 202 to "
        f"terminal; COPY {args.records / copy_s:,.0f} rows/s; sync {args.sync_records} in "
        f"{sync_s:.3f} s"
    )


if __name__ == "__main__":
    main()
