"""Benchmark: what a job option costs or saves, A/B in one run on one service.

Run against the service started by ``./dev up`` (or ``.venv/bin/bulk-ingest up``):

    .venv/bin/python -m bench.bench_options [--option outcome_events=false] [--pairs 3]

Each pair submits the same number of fresh customers twice, once plainly and once with the
option (``name=json-value``; repeat ``--option`` for several), alternating which goes first;
one discarded warm-up pair. The clock runs from the start of ``POST /bulk/async`` to the first
``GET /jobs/{id}`` (every 100 ms) that says terminal. Every pair is printed with the load
average and a COPY of the same rows measured in the same pair; the summary is the ratio of the
medians, which is what survives the machine's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from typing import Any

from bench.bench_pipeline import TERMINAL, _call
from bench.common import bench_tenant, copy_floor, customer_records, machine, record_copy_rows
from bulk_ingest.settings import load_settings


def timed_job(base: str, api_key: str, records: list[dict[str, Any]], **options: Any) -> float:
    body = json.dumps({"records": records, "operation": "upsert", **options}).encode()
    started = time.perf_counter()
    status, job = _call(f"{base}/api/v1/customers/bulk/async", api_key, "POST", body)
    assert status == 202, job
    while job["status"] not in TERMINAL:
        time.sleep(0.1)
        _, job = _call(f"{base}/api/v1/jobs/{job['job_id']}", api_key, "GET")
    assert job["processed"] == len(records), job
    return time.perf_counter() - started


def parse_option(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    return name, json.loads(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--option", action="append", default=[], metavar="NAME=JSON")
    args = parser.parse_args()
    options = dict(parse_option(o) for o in args.option or ["outcome_events=false"])
    settings = load_settings()
    _, api_key = bench_tenant(settings)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; option {options}")
    plain_rates, option_rates = [], []
    for pair in range(args.pairs + 1):
        turns = [("plain", {}), ("option", options)]
        if pair % 2:
            turns.reverse()
        rates: dict[str, float] = {}
        for name, chosen in turns:
            records = customer_records(args.records, f"o{uuid.uuid4().hex[:6]}")
            rates[name] = args.records / timed_job(args.url, api_key, records, **chosen)
        copy_s = copy_floor(settings, list(record_copy_rows(records)))
        label = "warm-up" if pair == 0 else f"pair {pair}"
        print(
            f"{label}: plain {rates['plain']:,.0f} records/s, with option "
            f"{rates['option']:,.0f} records/s (x{rates['option'] / rates['plain']:.2f}) | "
            f"COPY {args.records / copy_s:,.0f} rows/s | load {os.getloadavg()[0]:.1f}"
        )
        if pair:
            plain_rates.append(rates["plain"])
            option_rates.append(rates["option"])
    plain, chosen = statistics.median(plain_rates), statistics.median(option_rates)
    print(
        f"median: plain {plain:,.0f} records/s, with {options} {chosen:,.0f} records/s: "
        f"x{chosen / plain:.2f}"
    )


if __name__ == "__main__":
    main()
