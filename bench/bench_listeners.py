"""Benchmark: does watching slow the pipeline? A 50,000-record job with and without 100 open
event streams, in alternating pairs, and PostgreSQL's commit rate during each.

Run against the service started by ``./dev up`` (or ``.venv/bin/bulk-ingest up``):

    .venv/bin/python -m bench.bench_listeners [--records 50000] [--listeners 100] [--pairs 3]

The bench itself always follows the job's own stream to time it (so "0 listeners" is one
stream). The listeners are half tenant streams (``GET /jobs/events``, opened before the
submit) and half job streams (``GET /jobs/{id}/events``, opened at the ``202``), all read by
one asyncio loop in this process. The clock runs from the start of the submit to the
terminal status, read from the job's own stream. Every pair is printed, then the ratio of the
medians. The commit rate is ``xact_commit + xact_rollback`` of the database per second,
counted from the moment every stream has connected (a connection costs a few reads once: its
key, its job) to the terminal status: what the open streams cost while the job runs.
PostgreSQL reports a backend's counts when it goes idle, up to 10 s late, so part of the
connections' reads lands in the window; the gateway's own count of its live-view reads
(``bulk_ingest_live_view_reads_total`` on ``/metrics``) is printed beside it. Each round also
runs a job under a tenth of the listeners, for the commit rate: it must not grow from there
to all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from dataclasses import dataclass

import aiohttp
import psycopg

from bench.common import bench_tenant, customer_records, machine
from bulk_ingest.settings import load_settings

TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}


@dataclass(frozen=True)
class Run:
    listeners: int
    seconds: float
    records: int
    commits_per_second: float
    reads_per_second: float
    events: int

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def transactions(libpq_url: str) -> int:
    with psycopg.connect(libpq_url) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def read_stream(
    session: aiohttp.ClientSession, url: str, seen: list[int], connected: asyncio.Event
) -> None:
    """Read an event stream to its end (or until cancelled), counting events."""
    async with session.get(url) as answer:
        assert answer.status == 200, await answer.text()
        connected.set()  # its headers came: the key was checked, the job read
        async for line in answer.content:
            if line.startswith(b"event:"):
                seen[0] += 1


async def live_view_reads(session: aiohttp.ClientSession, base: str) -> float:
    """The gateway's ``bulk_ingest_live_view_reads_total``: its reads for all event streams."""
    async with session.get(f"{base}/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith("bulk_ingest_live_view_reads_total "):
                return float(line.split()[1])
    raise AssertionError("the gateway has no bulk_ingest_live_view_reads_total")


async def terminal_of(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as answer:
        event = ""
        async for line in answer.content:
            text = line.decode().strip()
            if text.startswith("event:"):
                event = text.split(":", 1)[1].strip()
            elif text.startswith("data:") and event == "terminal":
                return dict(json.loads(text.split(":", 1)[1]))
    raise AssertionError("the job's stream ended without a terminal event")


async def one_job(base: str, api_key: str, records: int, listeners: int, libpq_url: str) -> Run:
    headers = {"Authorization": f"Bearer {api_key}"}
    body = json.dumps({"records": customer_records(records, f"l{uuid.uuid4().hex[:6]}")})
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as s:
        seen = [0]
        connected = [asyncio.Event() for _ in range(listeners)]
        streams = [
            asyncio.create_task(read_stream(s, f"{base}/api/v1/jobs/events", seen, connected[i]))
            for i in range(listeners // 2)
        ]
        await asyncio.sleep(0.5 if listeners else 0)  # the tenant streams are open
        started = time.perf_counter()
        async with s.post(
            f"{base}/api/v1/customers/bulk/async",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as answer:
            job = await answer.json()
            assert answer.status == 202, job
        events_url = f"{base}/api/v1/jobs/{job['job_id']}/events"
        streams += [
            asyncio.create_task(read_stream(s, events_url, seen, connected[i]))
            for i in range(listeners // 2, listeners)
        ]
        finished = asyncio.create_task(terminal_of(s, events_url))
        await asyncio.gather(*(c.wait() for c in connected))
        before, counted_from = transactions(libpq_url), time.perf_counter()
        reads_before = await live_view_reads(s, base)
        done = await finished
        seconds = time.perf_counter() - started
        commits = transactions(libpq_url) - before
        reads = await live_view_reads(s, base) - reads_before
        window = time.perf_counter() - counted_from
        for stream in streams:
            stream.cancel()
        for stream in streams:
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await stream
    assert done["status"] == "COMPLETED" and done["successful"] == records, done
    return Run(listeners, seconds, records, commits / window, reads / window, seen[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--listeners", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings()
    _, api_key = bench_tenant(settings)
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")

    def run(listeners: int) -> Run:
        result = asyncio.run(
            one_job(args.url, api_key, args.records, listeners, settings.libpq_url)
        )
        print(
            f"  {listeners:3} listeners: {result.seconds:.2f} s = {result.rate:,.0f} records/s, "
            f"{result.commits_per_second:,.0f} PostgreSQL transactions/s, live view "
            f"{result.reads_per_second:.1f} reads/s, "
            f"{result.events:,} events read; load {os.getloadavg()[0]:.2f}"
        )
        return result

    print("warm-up (discarded):")
    run(0)
    without, with_listeners, with_few = [], [], []
    few = max(args.listeners // 10, 1)
    for pair in range(1, args.pairs + 1):
        print(f"pair {pair}:")
        first, second = (0, args.listeners) if pair % 2 else (args.listeners, 0)
        for listeners in (first, second):
            (with_listeners if listeners else without).append(run(listeners))
        with_few.append(run(few))
    quiet = statistics.median(r.rate for r in without)
    watched = statistics.median(r.rate for r in with_listeners)
    quiet_tx = statistics.median(r.commits_per_second for r in without)
    watched_tx = statistics.median(r.commits_per_second for r in with_listeners)
    few_tx = statistics.median(r.commits_per_second for r in with_few)
    reads = {
        name: statistics.median(r.reads_per_second for r in runs)
        for name, runs in (("few", with_few), ("all", with_listeners))
    }
    print(
        f"median: {quiet:,.0f} records/s without, {watched:,.0f} with {args.listeners} listeners "
        f"(x{watched / quiet:.2f}); PostgreSQL transactions/s: {quiet_tx:,.0f} with none, "
        f"{few_tx:,.0f} with {few}, {watched_tx:,.0f} with {args.listeners}; the live view "
        f"read {reads['few']:.1f}/s for {few} and {reads['all']:.1f}/s for {args.listeners}"
    )


if __name__ == "__main__":
    main()
