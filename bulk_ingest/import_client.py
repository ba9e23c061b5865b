"""``bulk-ingest import FILE``: upload a file, start its import, follow it to the end.

Works against any gateway (``--url``, ``--api-key``, or ``BULK_INGEST_URL`` /
``BULK_INGEST_API_KEY``; :mod:`bulk_ingest.gateway_client`). The file is streamed, never read
into memory. With ``--wait`` the job's event stream is followed with a live progress bar on
stderr (:func:`bulk_ingest.job_client.watch`: records processed, rate and ETA); at the end a
summary goes to stdout and, if records failed, the failure report is downloaded.

Exit status: 0 the import COMPLETED; 1 it ended otherwise (failed records, FAILED,
INTERNAL_FAILURE, CANCELLED); 2 the request was refused or the gateway unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from bulk_ingest.gateway_client import (
    ClientError,
    Gateway,
    add_gateway_arguments,
    gateway_from,
)
from bulk_ingest.job_client import summary, watch

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".txt": "text/plain",
    ".zip": "application/zip",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
}
PLAIN_PROGRESS_SECONDS = 5.0


# --- arguments ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", type=Path, help="CSV, ZIP (one CSV or NDJSON inside), XLSX or NDJSON"
    )
    parser.add_argument(
        "--entity", help="customers, products, ... (with --retry-of: the parent's by default)"
    )
    parser.add_argument("--operation", choices=["insert", "update", "upsert"], default=None)
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help='map a column to a field (dotted for nested: "City=addresses.0.city"); '
        '"COLUMN=" skips a column; repeat for more',
    )
    parser.add_argument("--sheet", help="XLSX: the sheet to import (default: the first)")
    parser.add_argument("--encoding", help="override the detected encoding (e.g. cp1252)")
    parser.add_argument("--delimiter", help="override the sniffed delimiter (, ; | or tab)")
    parser.add_argument("--upsert-key", help="the field records are matched by (the entity key)")
    parser.add_argument("--webhook-url", help="called when the import finishes")
    parser.add_argument(
        "--exclusive", action="store_true", help="refuse to run beside other imports"
    )
    parser.add_argument(
        "--retry-of",
        metavar="JOB_ID",
        help="the file is that import's failure report, fixed: import its rows with the job's "
        "mapping, entity and operation",
    )
    parser.add_argument(
        "--default",
        action="append",
        default=[],
        metavar="FIELD=TEXT",
        help='a text for a field rows leave empty ("addresses.0.type=home"); repeat for more',
    )
    parser.add_argument(
        "--default-value",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="a number or boolean for a field rows leave empty (price=0, active=true)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and report only; write nothing"
    )
    parser.add_argument(
        "--max-error-rate",
        type=float,
        metavar="RATE",
        help="stop once more than this fraction of the rows failed (0.1 = 10 %%)",
    )
    parser.add_argument(
        "--min-records", type=int, metavar="N", help="rows processed before the rate counts"
    )
    parser.add_argument(
        "--no-outcome-events",
        action="store_true",
        help="send no per-record events on bulk.outcomes (job events still flow)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the upload until deleted")
    parser.add_argument("--wait", action="store_true", help="follow the import to its end")
    parser.add_argument("--report", type=Path, help="where to save the failure report (--wait)")
    add_gateway_arguments(parser)


def parse_mappings(items: list[str]) -> dict[str, str | None]:
    """``["First Name=firstName", "Notes="]`` → ``{"First Name": "firstName", "Notes": None}``."""
    mappings: dict[str, str | None] = {}
    for item in items:
        column, sep, target = item.rpartition("=")
        if not sep or not column:
            raise ClientError(f"--map {item!r} must look like 'Column Name=fieldName'")
        mappings[column] = target.strip() or None
    return mappings


def parse_defaults(texts: list[str], values: list[str]) -> dict[str, Any]:
    """``--default`` (text as given) and ``--default-value`` (a JSON number or boolean)."""
    defaults: dict[str, Any] = {}
    for item in texts:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise ClientError(f"--default {item!r} must look like 'field=text'")
        defaults[field.strip()] = text
    for item in values:
        field, sep, raw = item.partition("=")
        try:
            value = json.loads(raw) if sep and field else None
        except ValueError:
            value = None
        if isinstance(value, str) or value is None or isinstance(value, list | dict):
            raise ClientError(
                f"--default-value {item!r} must look like 'field=0' or 'field=true' "
                "(use --default for text)"
            )
        defaults[field.strip()] = value
    return defaults


def import_body(args: argparse.Namespace, file_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {"file_id": file_id}
    optional = {
        "entity": args.entity,
        "retry_of": args.retry_of,
        "operation": args.operation,
        "field_mappings": parse_mappings(args.map) or None,
        "sheet": args.sheet,
        "encoding": args.encoding,
        "delimiter": args.delimiter,
        "upsert_key": args.upsert_key,
        "webhook_url": args.webhook_url,
        "exclusive": True if args.exclusive else None,
        "defaults": parse_defaults(args.default, args.default_value) or None,
        "dry_run": True if args.dry_run else None,
        "max_error_rate": args.max_error_rate,
        "min_records": args.min_records,
        "outcome_events": False if args.no_outcome_events else None,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


class _CountingFile:
    """A file handed to http.client, reporting how many bytes have gone out."""

    def __init__(self, handle: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._handle = handle
        self._on_read = on_read
        self._sent = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._sent += len(data)
        self._on_read(self._sent)
        return data


def upload(
    gateway: Gateway, path: Path, *, keep: bool, on_progress: Callable[[int], None]
) -> dict[str, Any]:
    size = path.stat().st_size
    query = urllib.parse.urlencode(
        {"storage": "directory" if keep else "temporary", "filename": path.name}
    )
    headers = {
        "Content-Type": CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"),
        "Content-Length": str(size),
    }
    with path.open("rb") as handle:
        body = _CountingFile(handle, on_progress)
        return gateway.json("POST", f"/api/v1/files?{query}", 201, data=body, headers=headers)


# --- progress -------------------------------------------------------------------------------------


def upload_line(sent: int, size: int) -> str:
    share = sent / size if size else 1.0
    return f"uploading {share:4.0%}  {sent / 1e6:,.1f} / {size / 1e6:,.1f} MB"


class StatusLine:
    """Rewrites one line on a terminal; elsewhere prints a line every few seconds."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = time.monotonic()  # off a terminal, the first line comes after an interval
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            if force or now - self._last >= 0.1:
                padding = " " * max(self._width - len(text), 0)
                self._stream.write("\r" + text + padding)
                self._stream.flush()
                self._width, self._last = len(text), now
        elif force or now - self._last >= PLAIN_PROGRESS_SECONDS:
            self._stream.write(text + "\n")
            self._stream.flush()
            self._last = now

    def done(self) -> None:
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
        self._width = 0


# --- the command ----------------------------------------------------------------------------------


def run_import(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        return _run(args, os.environ if environ is None else environ, out, err)
    except ClientError as exc:
        err.write(f"bulk-ingest import: {exc}\n")
        return 2
    except KeyboardInterrupt:
        err.write("\ninterrupted; the import goes on in the service\n")
        return 130


def _run(args: argparse.Namespace, environ: Mapping[str, str], out: IO[str], err: IO[str]) -> int:
    if not args.file.is_file():
        raise ClientError(f"{args.file} is not a file")
    if not args.entity and not args.retry_of:
        raise ClientError("name the entity to import into with --entity (or use --retry-of)")
    gateway = gateway_from(args, environ)
    line = StatusLine(err)
    size = args.file.stat().st_size
    profile = upload(
        gateway, args.file, keep=args.keep, on_progress=lambda s: line.show(upload_line(s, size))
    )
    line.show(upload_line(size, size), force=True)
    line.done()
    err.write(describe_upload(profile))
    job = gateway.json("POST", "/api/v1/imports", 202, body=import_body(args, profile["file_id"]))
    err.write(f"import started: job {job['job_id']} ({gateway.url}/api/v1/jobs/{job['job_id']})\n")
    if not args.wait:
        out.write(json.dumps(job, indent=2) + "\n")
        return 0
    job = watch(gateway, job["job_id"], err)
    out.write(summary(job))
    if job["failed"]:
        out.write(save_report(gateway, job, args.report or default_report_path(args.file, job)))
    return 0 if job["status"] == "COMPLETED" else 1


def describe_upload(profile: Mapping[str, Any]) -> str:
    columns = profile.get("columns") or []
    shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
    details = [profile["format"]]
    if profile.get("encoding"):
        details.append(profile["encoding"])
    if profile.get("delimiter"):
        details.append(
            "delimiter " + ("TAB" if profile["delimiter"] == "\t" else profile["delimiter"])
        )
    if profile.get("sheets"):
        details.append("sheets " + ", ".join(profile["sheets"]))
    text = (
        f"uploaded {profile.get('filename') or 'file'}: {profile['size']:,} bytes, "
        f"{'; '.join(details)}; file {profile['file_id']}\n  columns: {shown}\n"
    )
    for warning in profile.get("warnings") or ():
        text += f"  warning: {warning}\n"
    return text


def default_report_path(file: Path, job: Mapping[str, Any]) -> Path:
    return Path.cwd() / f"{file.stem}.{job['job_id'][:8]}.report.csv"


def save_report(gateway: Gateway, job: Mapping[str, Any], target: Path) -> str:
    url = job.get("report_url") or f"/api/v1/jobs/{job['job_id']}/report"
    status, _, raw = gateway.request("GET", url)
    if status != 200:
        return f"failure report: {gateway.url}{url} (download answered {status})\n"
    target.write_bytes(raw)
    return f"failure report: {target}\n"
