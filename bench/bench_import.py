"""Benchmark: a 1,000,000-row CSV import — records/s and peak RSS of gateway and workers, beside
a PostgreSQL COPY of the same rows measured in the same run.

Run against the service started by ``./dev up`` (or ``.venv/bin/bulk-ingest up``):

    .venv/bin/python -m bench.bench_import [--rows 1000000] [--url http://127.0.0.1:8080]
        [--api-key KEY] [--file rows.csv] [--gateway-pid PID] [--worker-pids PID,PID]

- The CSV (customers with one address: 10 columns, nested targets ``addresses.0.*``) is written
  to a temporary file, or reused from ``--file`` when it exists.
- Without ``--api-key`` a fresh tenant is created in the database named by
  ``BULK_INGEST_DATABASE_URL`` (the COPY baseline needs that database anyway).
- Gateway and worker processes are found in ``/proc`` (``bulk_ingest.cli gateway|worker`` whose
  ``BULK_INGEST_APP_ID`` matches the settings), or named with ``--gateway-pid`` /
  ``--worker-pids``. Their peak RSS (``VmHWM``) is reset before the upload through
  ``/proc/<pid>/clear_refs`` when the kernel allows it, so the peak is this import's; RSS is also
  sampled twice a second during the run.

Printed: upload time, import time from 202 to terminal and records/s, the job's own timestamps,
peak RSS per process, the CPU each process spent (µs per record and share of one core over the
import: the worker that reads the file at ~100 % of a core while the others idle means parsing
is the ceiling), and the COPY baseline (rows/s, and the import/COPY time ratio).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import bench_tenant, copy_baseline, machine, rss_mb
from bench.processes import Side, listening_pid
from bulk_ingest.gateway_client import ClientError, Gateway
from bulk_ingest.import_client import StatusLine, upload
from bulk_ingest.job_client import progress_text
from bulk_ingest.settings import load_settings
from domain.progress import ProgressMeter

HEADER = [
    "External ID",
    "First Name",
    "Last Name",
    "Email",
    "Phone",
    "Company",
    "Address Type",
    "Street",
    "City",
    "Country",
]
MAPPING = {
    "External ID": "externalId",
    "First Name": "firstName",
    "Last Name": "lastName",
    "Address Type": "addresses.0.type",
    "Street": "addresses.0.line1",
    "City": "addresses.0.city",
    "Country": "addresses.0.country",
}
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}


def write_csv(path: Path, rows: int, prefix: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        for i in range(rows):
            writer.writerow(
                [
                    f"{prefix}-{i}",
                    f"First{i}",
                    f"Last{i}",
                    f"user{i}@example.com",
                    "+44 20 7946 0000",
                    "Acme Ltd",
                    "work",
                    f"{i} High Street",
                    "London",
                    "GB",
                ]
            )


# --- processes ------------------------------------------------------------------------------------


def find_processes(role: str, app_id: str) -> list[int]:
    """PIDs of ``bulk_ingest.cli <role>`` processes of this deployment (by BULK_INGEST_APP_ID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bulk_ingest.cli" in argv and role.encode() in argv[-2:]:
            env_app = next(
                (e.split(b"=", 1)[1] for e in environ if e.startswith(b"BULK_INGEST_APP_ID=")),
                b"bulk-ingest",
            )
            if env_app.decode() == app_id:
                found.append(int(entry.name))
    return sorted(found)


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class RssWatch:
    pids: dict[str, int]
    sampled_peak: dict[str, float] = field(default_factory=dict)

    def sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                current, _ = rss_mb(pid)
            except OSError:
                continue
            self.sampled_peak[name] = max(self.sampled_peak.get(name, 0.0), current)

    def report(self, reset: dict[str, bool]) -> list[str]:
        lines = []
        for name, pid in self.pids.items():
            try:
                current, peak = rss_mb(pid)
            except OSError:
                lines.append(f"  {name} (pid {pid}): gone")
                continue
            since = "this run" if reset.get(name) else "process start"
            lines.append(
                f"  {name} (pid {pid}): peak RSS {peak:,.0f} MB (VmHWM since {since}), "
                f"sampled peak {self.sampled_peak.get(name, 0.0):,.0f} MB, now {current:,.0f} MB"
            )
        return lines


# --- the run --------------------------------------------------------------------------------------


@dataclass
class CpuWatch:
    """CPU seconds of every process of the deployment, by role, around the import."""

    side: Side
    roles: dict[int, str]
    before: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, pids: dict[str, int], kafka_port: int, postgres_port: int) -> CpuWatch:
        servers = {"Kafka": kafka_port, "PostgreSQL": postgres_port}
        roles = {pid: label for label, port in servers.items() if (pid := listening_pid(port))}
        roles.update({pid: name for name, pid in pids.items()})
        return cls(Side("ours", servers, roots=list(pids.values())), roles)

    def start(self) -> None:
        self.before = self.side.cpu_by_role(self.roles)

    def report(self, records: int, seconds: float) -> list[str]:
        after = self.side.cpu_by_role(self.roles)
        lines = []
        for role in sorted(after):
            spent = after[role] - self.before.get(role, 0.0)
            lines.append(
                f"  {role:12} {spent * 1e6 / records:7.1f} µs/record   "
                f"{100 * spent / seconds:5.1f} % of a core"
            )
        total = sum(after.values()) - sum(self.before.values())
        lines.append(f"  {'total':12} {total * 1e6 / records:7.1f} µs/record")
        return lines


def run_import(gateway: Gateway, path: Path, watch: RssWatch) -> tuple[dict, float, float]:
    line = StatusLine(sys.stderr)
    started = time.perf_counter()
    profile = upload(gateway, path, keep=False, on_progress=lambda sent: None)
    uploaded = time.perf_counter()
    body = {"file_id": profile["file_id"], "entity": "customers", "field_mappings": MAPPING}
    job = gateway.json("POST", "/api/v1/imports", 202, body=body)
    accepted = time.perf_counter()
    meter = ProgressMeter()
    while job["status"] not in TERMINAL:
        time.sleep(0.5)  # the benchmark's polling interval
        job = poll_job(gateway, job)
        watch.sample()
        meter.add(time.monotonic(), job["processed"])
        moving = {**job, "records_per_second": meter.rate}
        line.show(
            progress_text({**moving, "eta_seconds": meter.eta(job["total"], job["processed"])})
        )
    line.done()
    return job, uploaded - started, time.perf_counter() - accepted


def poll_job(gateway: Gateway, job: dict, patience: float = 120.0) -> dict:
    """The job now; a gateway that is briefly unavailable (restarts) is asked again."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return gateway.json("GET", f"/api/v1/jobs/{job['job_id']}", 200)
        except ClientError as exc:
            if time.monotonic() > deadline:
                raise
            print(f"\n(gateway unavailable, retrying: {str(exc).splitlines()[0]})", file=sys.stderr)
            time.sleep(2)


def csv_copy_rows(path: Path) -> Iterator[list[Any]]:
    """The benchmark CSV's rows as customer COPY rows (see bench.common.copy_baseline)."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for r in reader:
            address = [{"type": r[6], "line1": r[7], "city": r[8], "country": r[9]}]
            yield [*r[:6], json.dumps(address)]


def _seconds(job: dict, start: str, end: str) -> float | None:
    if not job.get(start) or not job.get(end):
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(job[end]) - parse(job[start])).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("BULK_INGEST_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--api-key", default=os.environ.get("BULK_INGEST_API_KEY"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, help="reuse (or keep) the generated CSV here")
    parser.add_argument("--gateway-pid", type=int)
    parser.add_argument("--worker-pids", help="comma-separated")
    args = parser.parse_args()
    settings = load_settings()
    api_key = args.api_key or bench_tenant(settings)[1]
    gateway = Gateway(args.url, api_key, timeout=600)

    path = args.file or Path(tempfile.mkdtemp()) / f"customers-{args.rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        write_csv(path, args.rows, f"b{uuid.uuid4().hex[:6]}")
        print(
            f"generated {path} ({path.stat().st_size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
    rows = sum(1 for _ in path.open("rb")) - 1

    gateway_pids = (
        [args.gateway_pid] if args.gateway_pid else find_processes("gateway", settings.app_id)
    )
    worker_pids = (
        [int(p) for p in args.worker_pids.split(",")]
        if args.worker_pids
        else find_processes("worker", settings.app_id)
    )
    pids = {f"gateway-{i + 1}": pid for i, pid in enumerate(gateway_pids)}
    pids.update({f"worker-{i + 1}": pid for i, pid in enumerate(worker_pids)})
    reset = {name: reset_peak(pid) for name, pid in pids.items()}
    watch = RssWatch(pids)
    consumers = find_processes("consumers", settings.app_id)
    cpu = CpuWatch.of(
        {**pids, **{f"consumers-{i + 1}": pid for i, pid in enumerate(consumers)}},
        int(settings.kafka_bootstrap.rsplit(":", 1)[1]),
        int(settings.libpq_url.rsplit(":", 1)[1].split("/", 1)[0]),
    )
    cpu.start()

    print(f"machine: {machine()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; {rows:,} rows")
    job, upload_s, import_s = run_import(gateway, path, watch)
    size_mb = path.stat().st_size / 1e6
    print(f"upload: {upload_s:.1f} s ({size_mb / upload_s:,.0f} MB/s)")
    print(
        f"import: {job['status']}, {job['successful']:,} succeeded, {job['failed']:,} failed; "
        f"202 -> terminal {import_s:.1f} s = {rows / import_s:,.0f} records/s"
    )
    server = _seconds(job, "created_at", "completed_at")
    if server:
        print(
            f"  job timestamps: created -> completed {server:.1f} s "
            f"= {rows / server:,.0f} records/s"
        )
    print("memory:")
    for text in watch.report(reset):
        print(text)
    print("CPU (upload included):")
    for text in cpu.report(rows, upload_s + import_s):
        print(text)
    copy_s = copy_baseline(settings, csv_copy_rows(path))
    print(
        f"COPY baseline: {copy_s:.1f} s = {rows / copy_s:,.0f} rows/s "
        f"(import takes x{import_s / copy_s:.1f} the COPY time)"
    )


if __name__ == "__main__":
    main()
