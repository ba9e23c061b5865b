"""``bulk-ingest jobs list | show ID | watch ID | cancel ID | retry ID | revert ID``: a tenant's
jobs from the CLI.

``watch`` (and ``bulk-ingest import --wait``) follows the job's event stream
(``GET /jobs/{id}/events``) with a live progress bar (rich) on stderr: records processed, the
rate and ETA the gateway computes; off a terminal, a plain line every few seconds. At the end
a summary goes to stdout.

Exit status: 0 the job COMPLETED (``list``, ``show``, ``cancel``, ``retry`` and ``revert`` without
``--wait``: the request succeeded); 1 it ended otherwise; 2 the request was refused or the
gateway unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from bulk_ingest.gateway_client import ClientError, Gateway, add_gateway_arguments, gateway_from
from domain.jobs import TERMINAL_STATUSES, JobStatus

PLAIN_PROGRESS_SECONDS = 5.0
STATUSES = tuple(status.value for status in JobStatus)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the tenant's jobs, newest first")
    listing.add_argument("--status", choices=STATUSES)
    listing.add_argument("--entity")
    listing.add_argument("--limit", type=int, default=20, help="how many (1-200, default 20)")
    listing.add_argument("--parent", metavar="JOB_ID", help="only the retries of this job")
    for name, text in (
        ("show", "one job: counts, status and its first errors"),
        ("watch", "follow a job to its end with a live progress bar"),
        ("cancel", "cancel a running job (records not yet written are skipped)"),
        ("retry", "send a finished job's failed and skipped records again, as a new job"),
        ("revert", "undo a finished job's writes, as a new job (rows changed since are left)"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("job_id")
    retry = actions.choices["retry"]
    retry.add_argument(
        "--codes", nargs="+", metavar="CODE", help="only records that failed with these codes"
    )
    retry.add_argument("--wait", action="store_true", help="follow the new job to its end")
    actions.choices["revert"].add_argument(
        "--wait", action="store_true", help="follow the revert job to its end"
    )
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", help="print the JSON the gateway sent")
        add_gateway_arguments(action)


def run_jobs(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        gateway = gateway_from(args, os.environ if environ is None else environ)
        return _COMMANDS[args.action](gateway, args, out, err)
    except ClientError as exc:
        err.write(f"bulk-ingest jobs {args.action}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        err.write("\ninterrupted; the job goes on in the service\n")
        return 130


def _list(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    filters = {"status": args.status, "entity": args.entity, "parent_job_id": args.parent}
    query = f"limit={args.limit}" + "".join(
        f"&{name}={value}" for name, value in filters.items() if value
    )
    page = gateway.json("GET", f"/api/v1/jobs?{query}", 200)
    if args.json:
        out.write(json.dumps(page, indent=2) + "\n")
        return 0
    table = Table("job", "entity", "operation", "status", "processed", "failed", "created")
    for job in page["jobs"]:
        table.add_row(
            job["job_id"],
            job["entity"],
            job["operation"],
            job["status"],
            f"{job['processed']:,}/{job['total']:,}",
            f"{job['failed']:,}",
            job["created_at"],
        )
    Console(file=out, width=140).print(table)
    if page.get("next_cursor"):
        out.write(f"more: --limit {args.limit} shows the newest only\n")
    return 0


def _show(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    job = gateway.json("GET", f"/api/v1/jobs/{args.job_id}", 200)
    out.write(json.dumps(job, indent=2) + "\n" if args.json else summary(job))
    return 0


def _watch(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    job = watch(gateway, args.job_id, err)
    out.write(json.dumps(job, indent=2) + "\n" if args.json else summary(job))
    return 0 if job["status"] == "COMPLETED" else 1


def _cancel(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    job = gateway.json("POST", f"/api/v1/jobs/{args.job_id}/cancel", 202)
    if args.json:
        out.write(json.dumps(job, indent=2) + "\n")
    else:
        out.write(f"job {job['job_id']}: cancel accepted ({job['status']}); `watch` follows it\n")
    return 0


def _retry(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    body = {"codes": args.codes} if args.codes else None
    job = gateway.json("POST", f"/api/v1/jobs/{args.job_id}/retry", 202, body=body)
    return _child_job(gateway, args, job, f"retries {job['total']:,} records", out, err)


def _revert(gateway: Gateway, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    job = gateway.json("POST", f"/api/v1/jobs/{args.job_id}/revert", 202)
    return _child_job(gateway, args, job, f"reverts {job['total']:,} rows", out, err)


def _child_job(
    gateway: Gateway,
    args: argparse.Namespace,
    job: dict[str, Any],
    what: str,
    out: IO[str],
    err: IO[str],
) -> int:
    """A job made from ``args.job_id`` (a retry, a revert): followed with ``--wait``, printed."""
    if args.wait:
        job = watch(gateway, job["job_id"], err)
    if args.json:
        out.write(json.dumps(job, indent=2) + "\n")
    elif args.wait:
        out.write(summary(job))
    else:
        out.write(f"job {job['job_id']}: {what} of {args.job_id}\n")
    return 0 if not args.wait or job["status"] == "COMPLETED" else 1


_COMMANDS: dict[str, Callable[[Gateway, argparse.Namespace, IO[str], IO[str]], int]] = {
    "list": _list,
    "show": _show,
    "watch": _watch,
    "cancel": _cancel,
    "retry": _retry,
    "revert": _revert,
}


# --- following a job ------------------------------------------------------------------------------


def watch(gateway: Gateway, job_id: str, err: IO[str]) -> dict[str, Any]:
    """Follow the job's event stream to its terminal event, showing progress on ``err``; the
    job object at the end."""
    with LiveProgress(err) as shown:
        for event, data in gateway.job_events(job_id):
            if event == "terminal":
                shown.update(data)
                return data
            if event == "progress":
                shown.update(data)
    raise ClientError(f"the event stream of job {job_id} ended before the job did")


class LiveProgress:
    """A rich progress bar on a terminal; elsewhere a plain line every few seconds."""

    def __init__(self, stream: IO[str]) -> None:
        self._console = Console(file=stream)
        self._stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_line = time.monotonic()

    def __enter__(self) -> LiveProgress:
        if self._console.is_terminal:
            self._progress = Progress(
                TextColumn("{task.fields[status]:<9}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[counts]}  {task.fields[rate]}  ETA {task.fields[eta]}"),
                console=self._console,
            )
            self._progress.start()
            fields = _fields({})
            self._task = self._progress.add_task(
                "job",
                total=None,
                status=fields["status"],
                counts=fields["counts"],
                rate=fields["rate"],
                eta=fields["eta"],
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, progress: Mapping[str, Any]) -> None:
        total = progress.get("total") or None
        if self._progress is not None and self._task is not None:
            fields = _fields(progress)
            self._progress.update(
                self._task,
                total=total,
                completed=progress["processed"],
                status=fields["status"],
                counts=fields["counts"],
                rate=fields["rate"],
                eta=fields["eta"],
            )
            return
        now = time.monotonic()
        if now - self._last_line >= PLAIN_PROGRESS_SECONDS or progress["status"] in _ENDED:
            self._stream.write(progress_text(progress) + "\n")
            self._stream.flush()
            self._last_line = now


_ENDED = frozenset(status.value for status in TERMINAL_STATUSES)


def _fields(progress: Mapping[str, Any]) -> dict[str, str]:
    if not progress:
        return {"status": "…", "counts": "", "rate": "", "eta": clock(None)}
    return {
        "status": progress["status"],
        "counts": _counts(progress),
        "rate": f"{progress.get('records_per_second', 0):,.0f} rec/s",
        "eta": clock(progress.get("eta_seconds")),
    }


def _counts(progress: Mapping[str, Any]) -> str:
    processed, total, failed = progress["processed"], progress["total"], progress["failed"]
    counted = f"{processed:,}/{total:,} records" if total else f"{processed:,} records (reading)"
    return counted + (f", {failed:,} failed" if failed else "")


def progress_text(progress: Mapping[str, Any]) -> str:
    """One plain line: status, share, counts, rate and ETA."""
    total = progress["total"]
    share = f"{min(progress['processed'] / total, 1.0):4.0%}  " if total else ""
    fields = _fields(progress)
    return f"{fields['status']:<9} {share}{fields['counts']}  {fields['rate']}  ETA {fields['eta']}"


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def summary(job: Mapping[str, Any]) -> str:
    lines = [
        f"job {job['job_id']}: {job['status']}",
        f"  {job['total']:,} records: {job['successful']:,} succeeded, {job['failed']:,} failed"
        + (f", {job['skipped']:,} skipped" if job.get("skipped") else ""),
    ]
    if job.get("failure_reason"):
        lines.append(f"  reason: {job['failure_reason']}")
    for error in (job.get("errors") or [])[:5]:
        where = (
            f"line {error['line']}" if error.get("line") is not None else f"index {error['index']}"
        )
        lines.append(f"  {where}: {error['errorCode']}: {error['message']}")
    if job["failed"] > 5:
        lines.append(f"  ... and {job['failed'] - 5:,} more in the report")
    return "\n".join(lines) + "\n"
