"""``bulk-ingest import``: upload, import, follow and save the report, against the real gateway."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from tests.support.imports import (
    BAD_EMAIL_ROW,
    MAPPING,
    NO_LAST_NAME_ROW,
    VARIANTS,
    line_of,
    people,
    spreadsheet_csv,
)
from tests.support.records import unique_prefix


def test_cli_uploads_imports_follows_and_saves_the_report(tenant, service, tmp_path):
    prefix = unique_prefix()
    source = tmp_path / "customers.csv"
    source.write_bytes(spreadsheet_csv(people(prefix)))
    maps = [arg for column, field in MAPPING.items() for arg in ("--map", f"{column}={field}")]
    report = tmp_path / "failures.csv"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulk_ingest.cli",
            "import",
            str(source),
            "--entity",
            "customers",
            *maps,
            "--wait",
            "--report",
            str(report),
            "--url",
            service.base_url,
        ],
        env={"PATH": "/usr/bin:/bin", "BULK_INGEST_API_KEY": tenant.api_key},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert finished.returncode == 1, finished.stderr  # completed, with failed records
    assert "COMPLETED_WITH_ERRORS" in finished.stdout
    assert f"line {line_of(VARIANTS[0], BAD_EMAIL_ROW)}: InvalidFormat" in finished.stdout
    assert f"failure report: {report}" in finished.stdout
    assert "uploaded customers.csv" in finished.stderr and "delimiter ;" in finished.stderr
    assert "1,000/1,000 records" in finished.stderr
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert [int(r["index"]) for r in rows] == [BAD_EMAIL_ROW, NO_LAST_NAME_ROW]


def test_cli_reports_a_refused_import_clearly(tenant, service, tmp_path):
    source = tmp_path / "customers.csv"
    source.write_bytes(spreadsheet_csv(people(unique_prefix())[:3]))
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bulk_ingest.cli",
            "import",
            str(source),
            "--entity",
            "customers",
            "--url",
            service.base_url,
            "--api-key",
            tenant.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 2
    assert (
        "answered 422" in finished.stderr and "MissingRequiredField (externalId)" in finished.stderr
    )
