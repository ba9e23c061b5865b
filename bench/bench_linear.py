"""Does the cost per record stay the same as jobs grow and multiply? Sustained records/s for
50 x 1k, 5 x 10k, 1 x 50k and 5 x 50k (five tenants), first submit to last terminal.

    .venv/bin/python -m bench.bench_linear [--runs 2] [--checkout DIR]

Starts this service with ``bulk-ingest up`` (its own database, topics and consumer group, as
``bench.bench_peer`` does), runs one discarded warm-up job, then each scenario ``--runs`` times:
every job of a scenario is submitted at once (one client thread per job, bodies serialised
before the clock starts, ``"operation": "upsert"``, fresh keys), and the clock runs from the
first request's start to the moment the last job is seen ``COMPLETED`` (each tenant's job list,
``GET /jobs``, polled every 100 ms — as a client watching many jobs would, one call per tenant
and tick instead of one per job).
Prints every run, the median per scenario, its ratio to the 1 x 50k median, CPU µs per record
by process, and a COPY of 50,000 of the same rows as the floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.ab import REPO, load
from bench.bench_peer import POLL_SECONDS, Client, Ours, _tenant_key
from bench.common import copy_floor, customer_records, machine, record_copy_rows


@dataclass(frozen=True)
class Scenario:
    name: str
    jobs: int
    records: int
    tenants: int


LIST_LIMIT = 200
"""One page of a tenant's jobs holds every job of a scenario (at most 50, from a clean slate)."""

SCENARIOS = (
    Scenario("50 x 1k", 50, 1_000, 1),
    Scenario("5 x 10k", 5, 10_000, 1),
    Scenario("1 x 50k", 1, 50_000, 1),
    Scenario("5 x 50k, five tenants", 5, 50_000, 5),
)


def run_scenario(ours: Ours, scenario: Scenario, keys: list[str]) -> tuple[float, dict]:
    """(records/s, CPU µs per record by role) of one run of the scenario, from a clean slate
    (every scenario meets tables of the same size)."""
    ours.clean_slate()
    bodies = [
        json.dumps(
            {
                "operation": "upsert",
                "records": customer_records(scenario.records, f"l{uuid.uuid4().hex[:8]}"),
            }
        ).encode()
        for _ in range(scenario.jobs)
    ]
    clients = [Client(ours.base, keys[i % scenario.tenants]) for i in range(scenario.jobs)]
    job_ids: list[str] = [""] * scenario.jobs
    roles = ours.roles()
    cpu_before = ours.side.cpu_by_role(roles)

    def submit(position: int) -> None:
        status, job = clients[position].call(
            "POST", "/api/v1/customers/bulk/async", bodies[position]
        )
        assert status == 202, job
        job_ids[position] = job["job_id"]

    started = time.perf_counter()
    threads = [threading.Thread(target=submit, args=(i,)) for i in range(scenario.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pending = set(job_ids)
    listers = {keys[i % scenario.tenants]: clients[i] for i in range(scenario.jobs)}
    while pending:
        time.sleep(POLL_SECONDS)
        for client in listers.values():
            _, page = client.call("GET", f"/api/v1/jobs?limit={LIST_LIMIT}")
            for job in page["jobs"]:
                assert job["status"] in ("PENDING", "READY", "STARTED", "COMPLETED"), job
                if job["status"] == "COMPLETED":
                    pending.discard(job["job_id"])
    finished = time.perf_counter()
    total = scenario.jobs * scenario.records
    cpu_after = ours.side.cpu_by_role(roles)
    cpu = {
        role: (cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0)) * 1e6 / total
        for role in sorted(set(cpu_after) | set(cpu_before))
    }
    return total / (finished - started), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--checkout", type=Path, default=REPO)
    args = parser.parse_args()
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    ours = Ours(args.checkout.resolve())
    try:
        ours.start()
        keys = [ours.api_key] + [_tenant_key(ours.env) for _ in range(4)]
        copy_s = copy_floor(ours.settings, list(record_copy_rows(customer_records(50_000, "c"))))
        print(f"COPY of 50,000 rows: {50_000 / copy_s:,.0f} rows/s", flush=True)
        ours.settle()
        run_scenario(ours, Scenario("warm-up", 1, 10_000, 1), keys)
        medians = {}
        for scenario in SCENARIOS:
            rates = []
            for run in range(1, args.runs + 1):
                rate, cpu = run_scenario(ours, scenario, keys)
                rates.append(rate)
                shown = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
                print(
                    f"{scenario.name:24} run {run}: {rate:8,.0f} records/s | CPU µs/record: "
                    f"{shown}; total {sum(cpu.values()):.0f} | load {load()}",
                    flush=True,
                )
            medians[scenario.name] = statistics.median(rates)
        reference = medians["1 x 50k"]
        print(f"\nmedians ({time.strftime('%Y-%m-%d %H:%M %Z')}):")
        for name, rate in medians.items():
            print(f"{name:24} {rate:8,.0f} records/s  ({rate / reference - 1:+.0%} vs 1 x 50k)")
    finally:
        ours.stop()


if __name__ == "__main__":
    main()
