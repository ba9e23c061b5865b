"""Side by side: a 50,000-record upsert job here and Kafka Connect's JDBC sink, in one run.

    .venv/bin/python -m bench.bench_peer --peer-dir ../shared/peer-bench [--records 50000]
        [--pairs 3] [--sync-records 1000] [--keep-peer] [--checkout DIR]

Starts both sides: the peer with its own ``setup.sh`` (its Kafka, Kafka Connect and PostgreSQL on
ports 29092/28083/25432) and this service with ``bulk-ingest up`` (its own database, topics and
consumer group, gateway on 18603). Then one discarded warm-up each, and ``--pairs`` pairs, peer
first, each side run while the other is paused with SIGSTOP (every process of it, the JVMs and
the database included, so its idle work takes no CPU) and given a few seconds to settle after
SIGCONT (our consumer groups stable, a one-record sync job through). Every run prints its
records/s, its COPY baseline and the load average.

Ours: ``POST /api/v1/customers/bulk/async`` with ``"operation": "upsert"`` and fresh keys (as the
peer upserts fresh keys); the clock starts when the request starts (its body is serialised
before, as the peer serialises its messages before) and stops when ``GET /jobs/{id}`` first
says ``COMPLETED``. The peer: its ``run.sh N`` (clock from the first produce to ``count(*) = N``).

Also, per our run, the CPU each process spent per record (µs, from /proc) — the budget table —
and, per pair, a sync call of ``--sync-records``. The headline is the ratio of the medians; it
is never printed from a run without the peer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from bench.ab import REPO, STATE, Version, load, wait_healthy
from bench.common import copy_floor, customer_records, machine, record_copy_rows
from bench.processes import Side, command_line, environment, listening_pid
from bulk_ingest.settings import load_settings
from storage.tables import metadata

PEER_LINE = re.compile(r"^peer (\d+) records: ([\d.]+) s = ([\d,]+) records/s", re.M)
PEER_COPY = re.compile(r"^copy (\d+) rows: ([\d.]+) s = ([\d,]+) rows/s", re.M)
PEER_PORTS = {"Kafka": 29092, "Kafka Connect": 28083, "PostgreSQL": 25432}
OURS_PORT = 18603
SETTLE_SECONDS = 3.0
RESUME_SECONDS = 45.0
"""How long our side may take after SIGCONT to finish a one-record sync job."""
POLL_SECONDS = 0.1
KEPT_TABLES = frozenset({"tenants", "api_keys", "reference_types", "files"})
"""What a clean slate keeps: the benchmark's tenant and its key (files are not used here)."""
"""How often our job is polled: as often as the peer counts its rows."""


@dataclass
class Figures:
    rates: list[float] = field(default_factory=list)
    copies: list[float] = field(default_factory=list)  # COPY rows/s of the same run
    accepts: list[float] = field(default_factory=list)
    syncs: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)  # µs of CPU per record, by role


class Peer:
    def __init__(self, directory: Path) -> None:
        missing = [n for n in ("setup.sh", "run.sh", "peer.py") if not (directory / n).is_file()]
        if missing:
            raise SystemExit(
                f"--peer-dir {directory}: not the peer benchmark ({', '.join(missing)} missing); "
                "it is ../shared/peer-bench beside the project checkout"
            )
        self.directory = directory
        self.side = Side("peer", PEER_PORTS)

    def setup(self) -> None:
        print("peer: setup.sh (about 50 s from nothing, 1 s when up)", flush=True)
        subprocess.run(["bash", "setup.sh"], cwd=self.directory, check=True, capture_output=True)

    def run(self, records: int) -> tuple[float, float]:
        """(records/s, COPY rows/s) of one ``run.sh``."""
        done = subprocess.run(
            ["bash", "run.sh", str(records)],
            cwd=self.directory,
            capture_output=True,
            text=True,
        )
        found, copied = PEER_LINE.search(done.stdout), PEER_COPY.search(done.stdout)
        if done.returncode != 0 or not found or not copied:
            raise SystemExit(f"peer run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return _number(found.group(3)), _number(copied.group(3))

    def teardown(self) -> None:
        subprocess.run(["bash", "teardown.sh"], cwd=self.directory, capture_output=True)


class Ours:
    def __init__(
        self,
        checkout: Path = REPO,
        name: str = "peer-side",
        up_arguments: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """``name`` picks the database, topics and group; ``up_arguments`` and ``extra_env``
        go to ``bulk-ingest up``."""
        self.checkout = checkout
        self.version = Version(name, checkout, OURS_PORT)
        self.env = self.version.environment() | (extra_env or {})
        self.up_arguments = up_arguments
        self.settings = load_settings(self.env)
        self.base = f"http://127.0.0.1:{OURS_PORT}"
        self.service: subprocess.Popen[bytes] | None = None
        self.api_key = ""
        self.restarts = 0
        """How often :meth:`settle` had to restart our processes (printed in the summary)."""
        self.side = Side(
            "ours", {"Kafka": self.settings_kafka_port(), "PostgreSQL": self.settings_pg_port()}
        )

    def settings_kafka_port(self) -> int:
        return int(self.settings.kafka_bootstrap.rsplit(":", 1)[1])

    def settings_pg_port(self) -> int:
        return int(self.settings.libpq_url.rsplit(":", 1)[1].split("/", 1)[0])

    def start(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        log = (STATE / f"{self.version.name}-up.log").open("ab")
        self.service = subprocess.Popen(
            [sys.executable, "-m", "bulk_ingest.cli", "up", *self.up_arguments],
            cwd=self.checkout,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.side.roots = [self.service.pid]
        wait_healthy(OURS_PORT, self.service)
        self.api_key = _tenant_key(self.env)

    def _stop_service(self) -> None:
        """Stop ``bulk-ingest up`` (gateway, workers, consumers); the stack keeps running."""
        if self.service is not None:
            self.side.resume()
            for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.service.pid, signum)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.service.wait(30)
                    break

    def stop(self) -> None:
        """Stop the service, then its stack (Kafka and PostgreSQL), as ``bench.ab`` does."""
        self._stop_service()
        subprocess.run(
            [sys.executable, "-m", "bulk_ingest.cli", "stack", "down"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
        )

    def roles(self) -> dict[int, str]:
        roles = {
            pid: label for label, port in self.side.ports.items() if (pid := listening_pid(port))
        }
        for pid in self.side.pids():
            cmd = command_line(pid)
            if len(cmd) > 3 and cmd[1:3] == ["-m", "bulk_ingest.cli"] and cmd[3] != "up":
                worker = environment(pid).get("BULK_INGEST_WORKER_ID", "worker")
                roles[pid] = worker if cmd[3] == "worker" else cmd[3]
        return roles

    def settle(self) -> None:
        """After SIGCONT: the group may rebalance (its sessions timed out while paused).

        If a one-record sync job is not through within :data:`RESUME_SECONDS`, the gateway,
        workers and consumers are restarted (the stack keeps running) and the restart is
        printed and counted: seen on 2026-12-03, the lone broker fenced itself on resume (its
        session had expired while paused) and a worker's producer then timed out every delivery
        for minutes."""
        for attempt in range(3):
            if self._one_sync_job_through(RESUME_SECONDS) and self._group_settled(RESUME_SECONDS):
                break
            if attempt == 2:
                raise SystemExit("our side did not come back after SIGCONT, even restarted")
            print(
                f"     ours not through {RESUME_SECONDS:.0f} s after SIGCONT: "
                "gateway, workers and consumers restarted",
                flush=True,
            )
            self.restarts += 1
            self._stop_service()
            self.start()
        time.sleep(SETTLE_SECONDS)

    def _group_settled(self, seconds: float) -> bool:
        """The workers' group stable, every worker in it with partitions, in three looks a
        second apart. After SIGCONT the paused broker expires every member at once, and they
        rejoin one by one: a one-record job can pass between two rebalances, and a run that
        starts then pays the second (on 2026-12-04 one run took 10.5 s instead of 3.4)."""
        workers = sum(role.startswith("worker") for role in self.roles().values())
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        app_id = self.settings.app_id
        deadline = time.monotonic() + seconds
        settled = 0
        while time.monotonic() < deadline and settled < 3:
            try:
                group = admin.describe_consumer_groups([app_id])[app_id].result(10)
            except (KafkaException, TimeoutError):
                settled = 0
                time.sleep(1.0)
                continue
            owners = [m for m in group.members if m.assignment.topic_partitions]
            stable = group.state == ConsumerGroupState.STABLE and len(owners) == workers
            settled = settled + 1 if stable else 0
            time.sleep(1.0)
        return settled == 3

    def _one_sync_job_through(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                left = max(deadline - time.monotonic(), 1.0)
                self.sync_call(customer_records(1, f"w{uuid.uuid4().hex[:6]}"), timeout=left)
                return True
            except (OSError, AssertionError):
                time.sleep(0.5)
        return False

    def clean_slate(self) -> None:
        """Empty what earlier runs left, as the peer truncates its table before each run: the
        entity tables, and the jobs with everything that hangs off them (tenants are kept).
        Without it the benchmark database grows by 50,000 customers and their ledger a run,
        and a table of millions of rows makes every later run slower than the peer's."""
        emptied = [t.name for t in metadata.sorted_tables if t.name not in KEPT_TABLES]
        with psycopg.connect(self.settings.libpq_url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(emptied)} CASCADE")

    def run(self, records: int) -> tuple[float, float, float, dict[str, float]]:
        """(records/s from request start to terminal, COPY rows/s, seconds to 202, CPU µs per
        record by role) of one upsert job of fresh records, from a clean slate."""
        self.clean_slate()
        batch = customer_records(records, f"p{uuid.uuid4().hex[:8]}")
        copy_s = copy_floor(self.settings, list(record_copy_rows(batch)))
        body = json.dumps({"operation": "upsert", "records": batch}).encode()
        roles = self.roles()
        cpu_before = self.side.cpu_by_role(roles)
        started = time.perf_counter()
        status, job = self._call("POST", "/api/v1/customers/bulk/async", body)
        accepted = time.perf_counter()
        assert status == 202, job
        while job["status"] != "COMPLETED":
            assert job["status"] in ("PENDING", "READY", "STARTED"), job
            time.sleep(POLL_SECONDS)
            _, job = self._call("GET", f"/api/v1/jobs/{job['job_id']}")
        finished = time.perf_counter()
        cpu_after = self.side.cpu_by_role(roles)
        assert job["successful"] == records, job
        cpu = {
            role: (cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0)) * 1e6 / records
            for role in sorted(set(cpu_after) | set(cpu_before))
        }
        return records / (finished - started), records / copy_s, accepted - started, cpu

    def sync_call(self, batch: list[dict[str, object]], timeout: float = 120) -> float:
        body = json.dumps({"operation": "upsert", "records": batch}).encode()
        started = time.perf_counter()
        status, job = self._call("POST", "/api/v1/customers/bulk", body, timeout)
        assert status == 200 and job["status"] == "COMPLETED", (status, job.get("status"))
        return time.perf_counter() - started

    def _call(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 120
    ) -> tuple[int, dict]:
        return Client(self.base, self.api_key).call(method, path, body, timeout)


@dataclass(frozen=True)
class Client:
    """One tenant's HTTP client of our gateway (urllib: a plain client, as users have)."""

    base: str
    api_key: str

    def call(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 120
    ) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())


def _tenant_key(env: dict[str, str]) -> str:
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulk_ingest.cli",
            "tenants",
            "create",
            f"peer-{uuid.uuid4().hex[:6]}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(made.stdout)["api_key"])


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def turn_peer(peer: Peer, ours: Ours, records: int, into: Figures | None) -> None:
    ours.side.pause()
    peer.side.resume()
    time.sleep(SETTLE_SECONDS)
    rate, copy_rate = peer.run(records)
    print(
        f"peer {rate:9,.0f} records/s  | COPY {copy_rate:9,.0f} rows/s | load {load()}", flush=True
    )
    if into is not None:
        into.rates.append(rate)
        into.copies.append(copy_rate)


def turn_ours(peer: Peer, ours: Ours, records: int, sync: int, into: Figures | None) -> None:
    peer.side.pause()
    ours.side.resume()
    ours.settle()
    rate, copy_rate, accept_s, cpu = ours.run(records)
    sync_s = ours.sync_call(customer_records(sync, f"s{uuid.uuid4().hex[:6]}"))
    print(
        f"ours {rate:9,.0f} records/s  | COPY {copy_rate:9,.0f} rows/s | 202 in {accept_s:.2f} s"
        f" | sync {sync} in {sync_s:.3f} s | load {load()}",
        flush=True,
    )
    print("     CPU µs/record: " + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()), flush=True)
    if into is not None:
        into.rates.append(rate)
        into.copies.append(copy_rate)
        into.accepts.append(accept_s)
        into.syncs.append(sync_s)
        into.cpu.append(cpu)


def summary(peer: Figures, ours: Figures, records: int) -> None:
    ratio = statistics.median(ours.rates) / statistics.median(peer.rates)
    print(f"\n{records:,} records, {len(ours.rates)} pairs; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(
        f"peer  median {statistics.median(peer.rates):9,.0f} records/s "
        f"(COPY {statistics.median(peer.copies):,.0f} rows/s)"
    )
    print(
        f"ours  median {statistics.median(ours.rates):9,.0f} records/s "
        f"(COPY {statistics.median(ours.copies):,.0f} rows/s); 202 in "
        f"{statistics.median(ours.accepts):.2f} s; sync in {statistics.median(ours.syncs):.3f} s"
    )
    print(f"ours / peer (ratio of the medians): {ratio:.2f}x")
    print(
        f"ours / COPY: {statistics.median(ours.rates) / statistics.median(ours.copies):.3f}; "
        f"peer / COPY: {statistics.median(peer.rates) / statistics.median(peer.copies):.3f}"
    )
    roles = sorted({role for cpu in ours.cpu for role in cpu})
    medians = {role: statistics.median(cpu.get(role, 0.0) for cpu in ours.cpu) for role in roles}
    print(
        "CPU µs/record (median): "
        + ", ".join(f"{r} {v:.0f}" for r, v in medians.items())
        + f"; total {sum(medians.values()):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-dir", type=Path, required=True)
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--sync-records", type=int, default=1_000)
    parser.add_argument("--keep-peer", action="store_true", help="leave the peer running")
    parser.add_argument(
        "--checkout", type=Path, default=REPO, help="run our side from this checkout (before/after)"
    )
    args = parser.parse_args()
    peer = Peer(args.peer_dir.resolve())
    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    peer.setup()
    ours = Ours(args.checkout.resolve())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        ours.start()
        print("warm-up (discarded):", flush=True)
        turn_peer(peer, ours, args.records, None)
        turn_ours(peer, ours, args.records, args.sync_records, None)
        peer_figures, our_figures = Figures(), Figures()
        for pair in range(1, args.pairs + 1):
            print(f"pair {pair}:", flush=True)
            turn_peer(peer, ours, args.records, peer_figures)
            turn_ours(peer, ours, args.records, args.sync_records, our_figures)
        summary(peer_figures, our_figures, args.records)
        print(f"our processes restarted after a resume: {ours.restarts} times", flush=True)
    finally:
        peer.side.resume()
        ours.stop()
        if not args.keep_peer:
            peer.teardown()


if __name__ == "__main__":
    main()
