"""A/B benchmark of two versions of the service on one machine, in one go.

    .venv/bin/python -m bench.ab --old <git ref> [--new <checkout>] [--pairs 3] [--records 50000]

The old version is checked out with ``git worktree`` beside this one; both run against the same
Kafka broker and PostgreSQL server (one shared local stack), each with its own database, topics
and consumer group, so neither sees the other's data. Versions alternate, old then new, for
``--pairs`` pairs; each turn starts the version's gateway, two workers and consumers
(``bulk-ingest up``), runs ``bench.bench_pipeline`` once warm-up and ``--runs`` times measured,
and stops it. Every turn prints the pipeline's records/s beside a COPY of the same rows into a
scratch table measured in the same turn; the summary compares the medians of the ratio to COPY,
which is what survives the machine's noise. Needs nothing running; stops what it started.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state" / "bench-ab"
LINE = re.compile(
    r"run \d+: async (\d+) records: 202 in ([\d.]+) s, terminal ([\d.]+) s after 202 = "
    r"([\d,]+) records/s \| COPY baseline ([\d.]+) s"
)


@dataclass
class Version:
    name: str
    checkout: Path
    port: int
    ratios: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULK_INGEST_")}
        slug = self.name.replace("-", "_")
        env.update(
            PYTHONPATH=str(self.checkout),
            BULK_INGEST_STATE_DIR=str(STATE),
            BULK_INGEST_HTTP_PORT=str(self.port),
            BULK_INGEST_DATABASE_URL=(
                f"postgresql+psycopg://bulk_ingest:bulk_ingest@127.0.0.1:5432/bench_{slug}"
            ),
            BULK_INGEST_APP_ID=f"bench-{self.name}",
            **{
                f"BULK_INGEST_TOPIC_{topic.upper()}": f"ab-{self.name}.bulk.{topic}"
                for topic in (
                    "requests",
                    "records",
                    "outcomes",
                    "jobs",
                    "dlq",
                    "progress",
                    "imports",
                )
            },
        )
        return env


def turn(version: Version, runs: int, records: int) -> None:
    env = version.environment()
    log = (STATE / f"{version.name}-up.log").open("ab")
    service = subprocess.Popen(
        [sys.executable, "-m", "bulk_ingest.cli", "up"],
        cwd=version.checkout,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_healthy(version.port, service)
        bench = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bench_pipeline",
                "--url",
                f"http://127.0.0.1:{version.port}",
                "--records",
                str(records),
                "--runs",
                str(runs + 1),
            ],
            cwd=REPO,
            env={**env, "PYTHONPATH": f"{REPO}:{version.checkout}"},
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.killpg(service.pid, signal.SIGINT)
        service.wait(60)
    measured = [LINE.search(line) for line in bench.stdout.splitlines()]
    found = [m for m in measured if m][1:]  # the first run warms up
    for match in found:
        count, accept_s, process_s, _, copy_s = match.groups()
        rate = int(count) / float(process_s)
        ratio = float(process_s) / float(copy_s)
        version.rates.append(rate)
        version.ratios.append(ratio)
        print(
            f"{version.name:4} 202 in {float(accept_s):4.2f} s, {rate:9,.0f} records/s "
            f"202 → terminal, x{ratio:5.1f} COPY  load {load()}"
        )


def wait_healthy(port: int, service: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise SystemExit(f"the service exited ({service.returncode}); see {STATE}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as answer:
                if answer.status == 200:
                    time.sleep(3)  # let the workers join the group
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("the service did not become healthy")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git ref of the version to compare with")
    parser.add_argument("--new", default=str(REPO), help="checkout of the new version")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2, help="measured runs per turn")
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args()
    STATE.mkdir(parents=True, exist_ok=True)
    old_checkout = STATE / "old"
    subprocess.run(["git", "worktree", "remove", "--force", str(old_checkout)], cwd=REPO)
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(old_checkout), args.old], cwd=REPO, check=True
    )
    old = Version("old", old_checkout, 18601)
    new = Version("new", Path(args.new), 18602)
    print(f"A/B: old = {args.old}, new = {args.new}; {time.strftime('%Y-%m-%d %H:%M %Z')}")
    try:
        for _ in range(args.pairs):
            turn(old, args.runs, args.records)
            turn(new, args.runs, args.records)
    finally:
        subprocess.run(
            [sys.executable, "-m", "bulk_ingest.cli", "stack", "down"],
            cwd=REPO,
            env=new.environment(),
        )
        subprocess.run(["git", "worktree", "remove", "--force", str(old_checkout)], cwd=REPO)
    for version in (old, new):
        print(
            f"{version.name}: median {statistics.median(version.rates):,.0f} records/s, "
            f"x{statistics.median(version.ratios):.1f} COPY ({len(version.ratios)} runs)"
        )
    change = statistics.median(new.ratios) / statistics.median(old.ratios) - 1
    print(f"new vs old, time relative to COPY: {change:+.1%} (negative = new is faster)")


if __name__ == "__main__":
    main()
