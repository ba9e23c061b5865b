"""Hostile and broken archives: refused at upload, or failing their job, never the worker."""

from __future__ import annotations

import io
import zipfile

from tests.support.imports import (
    MAPPING,
    ROWS,
    error_codes,
    imported,
    people,
    spreadsheet_csv,
    upload,
    uploaded,
    zipped,
)
from tests.support.records import unique_prefix


def zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("customers.csv", b"0" * (64 * 1024 * 1024))
    return out.getvalue()


def test_zip_bomb_and_truncated_zip_are_refused_and_the_next_import_works(tenant):
    bomb = upload(tenant.api, zip_bomb(), "application/zip")
    assert bomb.status == 422
    assert error_codes(bomb) == [("InvalidFormat", "file")]
    assert "zip bomb" in bomb.json()["errors"][0]["message"]

    good_zip = zipped("customers.csv", spreadsheet_csv(people(unique_prefix())))
    truncated = upload(tenant.api, good_zip[: len(good_zip) // 2], "application/zip")
    assert truncated.status == 422
    assert "truncated or corrupt" in truncated.json()["errors"][0]["message"]

    two_files = io.BytesIO()
    with zipfile.ZipFile(two_files, "w") as archive:
        archive.writestr("a.csv", "x\n1\n")
        archive.writestr("b.csv", "x\n2\n")
    several = upload(tenant.api, two_files.getvalue(), "application/zip")
    assert several.status == 422 and "exactly one" in several.json()["errors"][0]["message"]

    profile = uploaded(tenant.api, good_zip, "application/zip")
    assert profile["member"] == {"name": "customers.csv", "format": "csv"}
    assert imported(tenant.api, profile["file_id"], field_mappings=MAPPING)["failed"] == 2


def test_archive_corrupted_after_upload_fails_the_job_not_the_worker(tenant, settings, service):
    good_zip = zipped("customers.csv", spreadsheet_csv(people(unique_prefix())))
    profile = uploaded(tenant.api, good_zip, "application/zip")
    stored = settings.file_dir / tenant.tenant_id / profile["file_id"]
    stored.write_bytes(zip_bomb())  # what a disk fault or a tampered store would do

    done = imported(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert done["status"] == "INTERNAL_FAILURE"
    assert "zip bomb" in done["failure_reason"] or "declared size" in done["failure_reason"]
    assert all(worker.alive() for worker in service.workers)

    again = uploaded(tenant.api, good_zip, "application/zip")
    assert imported(tenant.api, again["file_id"], field_mappings=MAPPING)["successful"] == ROWS - 2
