"""Workers scaled by partitions: records/s of one 50,000-record upsert job run by 1, 2 and 4
workers over topics of 8 partitions.

    .venv/bin/python -m bench.bench_workers [--records 50000] [--runs 3] [--workers 1 2 4]
        [--brokers 1] [--checkout DIR]

For each worker count, starts this service with ``bulk-ingest up --workers N`` and
``BULK_INGEST_PARTITIONS=8`` (its own database, topics and consumer group, as
``bench.bench_peer`` does), settles it (a sync call through), then ``--runs`` jobs from a clean
slate, the clock from the request's start to ``COMPLETED``; prints every run with the load
average, the CPU µs per record by process, and the median per worker count with its ratio to
one worker. On a machine of two cores the workers share the same cores, so expect it flat.
``--brokers 3`` runs the same on the local three-node cluster (replication factor 3,
``min.insync.replicas`` 2); its Kafka CPU column counts the first node only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.ab import REPO, load
from bench.bench_peer import Ours
from bench.common import machine

PARTITIONS = 8
WORKER_COUNTS = (1, 2, 4)


def measure(checkout: Path, workers: int, brokers: int, records: int, runs: int) -> list[float]:
    ours = Ours(
        checkout,
        name=f"workers-{brokers}b",
        up_arguments=("--workers", str(workers), "--brokers", str(brokers)),
        extra_env={"BULK_INGEST_PARTITIONS": str(PARTITIONS)},
    )
    rates = []
    try:
        ours.start()
        ours.settle()
        ours.run(records)  # discarded warm-up
        for run in range(1, runs + 1):
            rate, _, accepted, cpu = ours.run(records)
            rates.append(rate)
            shown = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
            print(
                f"{workers} worker(s) run {run}: {rate:8,.0f} records/s (202 after "
                f"{accepted:.2f} s) | CPU µs/record: {shown} | load {load()}",
                flush=True,
            )
    finally:
        ours.stop()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=list(WORKER_COUNTS))
    parser.add_argument("--brokers", type=int, default=1)
    parser.add_argument("--checkout", type=Path, default=REPO)
    args = parser.parse_args()
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    checkout = args.checkout.resolve()
    medians = {
        workers: statistics.median(
            measure(checkout, workers, args.brokers, args.records, args.runs)
        )
        for workers in args.workers
    }
    first = next(iter(medians.values()))
    print(
        f"\nmedians, {PARTITIONS} partitions, {args.brokers} broker(s) "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}):"
    )
    for workers, rate in medians.items():
        print(f"{workers} worker(s) {rate:8,.0f} records/s  ({rate / first:.2f}x the first)")


if __name__ == "__main__":
    main()
