"""File uploads and imports end to end: real gateway and worker subprocesses over HTTP.

The spreadsheet-style data set (1,000 customers, accented names, one address with a line break
inside a quoted cell, two bad rows) goes in as CSV, ZIP, XLSX, NDJSON and UTF-16 text, and must
come out the same way each time: COMPLETED_WITH_ERRORS, two failures that name their line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest

from tests.support.http import Api, Response, poll
from tests.support.records import customer, unique_prefix

FILES = "/api/v1/files"
IMPORTS = "/api/v1/imports"
HEADER = [
    "External ID",
    "First Name",
    "Last Name",
    "E-mail",
    "Street",
    "City",
    "Country",
    "Address Type",
    "Notes",
]
MAPPING = {
    "External ID": "externalId",
    "First Name": "firstName",
    "Last Name": "lastName",
    "E-mail": "email",
    "Street": "addresses.0.line1",
    "City": "addresses.0.city",
    "Country": "addresses.0.country",
    "Address Type": "addresses.0.type",
}
FIRST_NAMES = ["Zoë", "Émile", "Jürgen", "François", "Åsa"]
ROWS = 1000
MULTILINE_ROW = 3
BAD_EMAIL_ROW = 500
NO_LAST_NAME_ROW = 700


# --- the data set ---------------------------------------------------------------------------------


def people(prefix: str) -> list[list[str]]:
    rows = []
    for i in range(ROWS):
        street = "12 Rue de l'Église\nBâtiment B" if i == MULTILINE_ROW else f"{i} Rue de Lyon"
        rows.append(
            [
                f"{prefix}-{i}",
                FIRST_NAMES[i % len(FIRST_NAMES)],
                "" if i == NO_LAST_NAME_ROW else f"Müller-{i}",
                "not-an-email" if i == BAD_EMAIL_ROW else f"p{i}@example.com",
                street,
                "Paris",
                "FR",
                "home",
                "",
            ]
        )
    return rows


def csv_text(rows: list[list[str]], delimiter: str = ";") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def spreadsheet_csv(rows: list[list[str]]) -> bytes:
    """As Excel saves "CSV UTF-8" in a ';' locale: BOM, CRLF, semicolons."""
    return b"\xef\xbb\xbf" + csv_text(rows).encode("utf-8")


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def workbook(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Read me"
    notes.append(["This sheet is not the data"])
    sheet = book.create_sheet("Customers")
    sheet.append(HEADER)
    for row in rows:
        sheet.append([cell or None for cell in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def ndjson(rows: list[list[str]]) -> bytes:
    lines = [json.dumps({k: v for k, v in zip(HEADER, row, strict=True) if v}) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Variant:
    name: str
    content_type: str
    build: Any
    first_data_line: int  # the line of data row 0
    multiline_extra: int  # extra lines taken by the quoted line break
    import_extra: dict[str, Any]


VARIANTS = [
    Variant("csv", "text/csv", spreadsheet_csv, 2, 1, {}),
    Variant(
        "zip", "application/zip", lambda r: zipped("customers.csv", spreadsheet_csv(r)), 2, 1, {}
    ),
    Variant(
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        workbook,
        2,
        0,
        {"sheet": "Customers"},
    ),
    Variant("ndjson", "application/x-ndjson", ndjson, 1, 0, {}),
    Variant("utf16", "text/plain", lambda r: csv_text(r, "\t").encode("utf-16"), 2, 1, {}),
]


def line_of(variant: Variant, index: int) -> int:
    extra = variant.multiline_extra if index > MULTILINE_ROW else 0
    return variant.first_data_line + index + extra


# --- helpers --------------------------------------------------------------------------------------


def upload(api: Api, data: bytes, content_type: str = "text/csv", query: str = "") -> Response:
    return api.request("POST", FILES + query, data=data, headers={"Content-Type": content_type})


def uploaded(api: Api, data: bytes, content_type: str = "text/csv", query: str = "") -> dict:
    answer = upload(api, data, content_type, query)
    assert answer.status == 201, answer.body
    return answer.json()


def start(api: Api, file_id: str, **body: Any) -> Response:
    return api.post(IMPORTS, {"file_id": file_id, "entity": "customers", **body})


def imported(api: Api, file_id: str, **body: Any) -> dict:
    answer = start(api, file_id, **body)
    assert answer.status == 202, answer.body
    job = answer.json()
    assert answer.headers["Location"] == f"/api/v1/jobs/{job['job_id']}"
    assert job["source"] == "file"
    return api.wait_terminal(job["job_id"], timeout=180)


def error_codes(answer: Response) -> list[tuple[str, str | None]]:
    return [(e["errorCode"], e.get("field")) for e in answer.json()["errors"]]


def db(settings, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(query, list(params)).fetchall() if "SELECT" in query else []
        if "SELECT" not in query:
            conn.execute(query, list(params))
        return rows


# --- the same data in five shapes -----------------------------------------------------------------


def test_spreadsheet_csv_profile(tenant):
    data = spreadsheet_csv(people(unique_prefix()))
    profile = uploaded(tenant.api, data)
    assert profile["format"] == "csv"
    assert profile["encoding"] == "utf-8-sig"
    assert profile["delimiter"] == ";"
    assert profile["columns"] == HEADER
    assert profile["size"] == len(data)
    assert profile["sha256"] == hashlib.sha256(data).hexdigest()
    assert profile["storage"] == "temporary" and profile["expires_at"].endswith("Z")
    assert tenant.api.get(f"{FILES}/{profile['file_id']}").json() == profile


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_import_ends_with_two_failures_naming_their_lines(tenant, variant):
    prefix = unique_prefix()
    profile = uploaded(tenant.api, variant.build(people(prefix)), variant.content_type)
    if variant.name == "xlsx":
        assert profile["format"] == "xlsx" and profile["sheets"] == ["Read me", "Customers"]
        assert profile["columns"] == ["This sheet is not the data"]
    elif variant.name == "ndjson":
        assert profile["columns"] == HEADER[:-1]  # the first object's keys; it has no Notes
    else:
        assert profile["columns"] == HEADER
    done = imported(tenant.api, profile["file_id"], field_mappings=MAPPING, **variant.import_extra)

    assert done["status"] == "COMPLETED_WITH_ERRORS", done
    assert (done["total"], done["processed"], done["successful"], done["failed"]) == (
        ROWS,
        ROWS,
        ROWS - 2,
        2,
    )
    bad_email, no_last_name = line_of(variant, BAD_EMAIL_ROW), line_of(variant, NO_LAST_NAME_ROW)
    assert [(e["index"], e["errorCode"], e["line"]) for e in done["errors"]] == [
        (BAD_EMAIL_ROW, "InvalidFormat", bad_email),
        (NO_LAST_NAME_ROW, "MissingRequiredField", no_last_name),
    ]
    assert done["errors"][0]["external_id"] == f"{prefix}-{BAD_EMAIL_ROW}"

    report = tenant.api.get(f"/api/v1/jobs/{done['job_id']}/report")
    assert report.status == 200, report.body
    rows = list(csv.DictReader(io.StringIO(report.body.decode("utf-8"))))
    assert [(int(r["index"]), r["errorCode"]) for r in rows] == [
        (BAD_EMAIL_ROW, "InvalidFormat"),
        (NO_LAST_NAME_ROW, "MissingRequiredField"),
    ]
    assert rows[0]["failureReason"].startswith(f"Line {bad_email}: ")
    assert rows[1]["failureReason"].startswith(f"Line {no_last_name}: ")


def test_accented_names_and_the_quoted_line_break_arrive_intact(tenant, settings):
    prefix = unique_prefix()
    profile = uploaded(tenant.api, spreadsheet_csv(people(prefix)))
    imported(tenant.api, profile["file_id"], field_mappings=MAPPING)
    ((first_name, addresses),) = db(
        settings,
        "SELECT first_name, addresses FROM customers WHERE tenant_id = %s AND external_id = %s",
        tenant.tenant_id,
        f"{prefix}-{MULTILINE_ROW}",
    )
    assert first_name == "François"
    assert addresses == [
        {
            "type": "home",
            "line1": "12 Rue de l'Église\nBâtiment B",
            "line2": None,
            "city": "Paris",
            "region": None,
            "postalCode": None,
            "country": "FR",
        }
    ]


# --- header-level checks: 422 ---------------------------------------------------------------------


def test_mapping_to_an_unknown_field_is_422(tenant):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    answer = start(tenant.api, profile["file_id"], field_mappings={**MAPPING, "Notes": "nickname"})
    assert answer.status == 422
    assert error_codes(answer) == [("UnknownField", "nickname")]
    assert "nickname" in answer.json()["errors"][0]["message"]


def test_required_field_left_unmapped_is_422(tenant):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    mapping = {k: v for k, v in MAPPING.items() if v != "lastName"}
    answer = start(tenant.api, profile["file_id"], field_mappings=mapping)
    assert answer.status == 422
    assert error_codes(answer) == [("MissingRequiredField", "lastName")]


def test_nested_required_field_left_unmapped_is_422(tenant):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    mapping = {k: v for k, v in MAPPING.items() if v != "addresses.0.country"}
    answer = start(tenant.api, profile["file_id"], field_mappings=mapping)
    assert answer.status == 422
    assert error_codes(answer) == [("MissingRequiredField", "addresses.0.country")]


def test_unknown_file_is_422(tenant):
    answer = start(tenant.api, str(uuid.uuid4()), field_mappings=MAPPING)
    assert answer.status == 422
    assert error_codes(answer) == [("InvalidParameter", "file_id")]
    by_hash = tenant.api.post(IMPORTS, {"sha256": "ab" * 32, "entity": "customers"})
    assert by_hash.status == 422 and error_codes(by_hash) == [("InvalidParameter", "sha256")]


def test_expired_file_is_422_and_purged(tenant, settings):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    stored = settings.file_dir / tenant.tenant_id / profile["file_id"]
    assert stored.is_file()
    db(
        settings,
        "UPDATE files SET expires_at = now() - interval '1 minute' WHERE file_id = %s",
        profile["file_id"],
    )

    answer = start(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert answer.status == 422
    assert "expired" in answer.json()["errors"][0]["message"]
    assert tenant.api.get(f"{FILES}/{profile['file_id']}").status == 404
    poll(lambda: not stored.exists(), 30, "the expired file to be purged from disk")


def test_files_belong_to_their_tenant(tenant, make_tenant):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    other = make_tenant()
    assert other.api.get(f"{FILES}/{profile['file_id']}").status == 404
    assert other.api.request("DELETE", f"{FILES}/{profile['file_id']}").status == 404
    answer = start(other.api, profile["file_id"], field_mappings=MAPPING)
    assert answer.status == 422 and error_codes(answer) == [("InvalidParameter", "file_id")]


def test_directory_storage_is_kept_until_deleted(tenant, settings):
    profile = uploaded(
        tenant.api, spreadsheet_csv(people(unique_prefix())), query="?storage=directory"
    )
    assert profile["storage"] == "directory" and profile["expires_at"] is None
    stored = settings.file_dir / tenant.tenant_id / profile["file_id"]
    deleted = tenant.api.request("DELETE", f"{FILES}/{profile['file_id']}")
    assert deleted.status == 204
    assert tenant.api.get(f"{FILES}/{profile['file_id']}").status == 404
    assert not stored.exists()
    answer = start(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert answer.status == 422 and "deleted" in answer.json()["errors"][0]["message"]


def test_multipart_upload_and_import_by_sha256(tenant):
    prefix = unique_prefix()
    data = csv_text(people(prefix)[:10], ",").encode()
    boundary = "----bulk-ingest-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="c.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    profile = uploaded(tenant.api, body, f"multipart/form-data; boundary={boundary}")
    assert (profile["filename"], profile["delimiter"], profile["size"]) == ("c.csv", ",", len(data))
    answer = tenant.api.post(
        IMPORTS, {"sha256": profile["sha256"], "entity": "customers", "field_mappings": MAPPING}
    )
    assert answer.status == 202, answer.body
    done = tenant.api.wait_terminal(answer.json()["job_id"])
    assert (done["status"], done["successful"]) == ("COMPLETED", 10)


# --- exclusive imports ----------------------------------------------------------------------------


def _live_import_row(settings, tenant_id: str, file_id: str, exclusive: bool) -> str:
    """A job the service believes is still importing (READY), written straight to the DB."""
    job_id = str(uuid.uuid4())
    with psycopg.connect(settings.libpq_url) as conn:
        conn.execute(
            "INSERT INTO jobs (job_id, tenant_id, entity, operation, source, status, total) "
            "VALUES (%s, %s, 'customers', 'insert', 'file', 'READY', 0)",
            [job_id, tenant_id],
        )
        conn.execute(
            "INSERT INTO imports (job_id, tenant_id, entity, file_id, exclusive, options) "
            "VALUES (%s, %s, 'customers', %s, %s, '{}')",
            [job_id, tenant_id, file_id, exclusive],
        )
    return job_id


def test_second_exclusive_import_is_blocked_until_the_first_finishes(tenant, settings):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    running = _live_import_row(settings, tenant.tenant_id, profile["file_id"], exclusive=True)

    blocked = start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True)
    assert blocked.status == 409
    body = blocked.json()
    assert body["status"] == "BLOCKED"
    assert [e["errorCode"] for e in body["errors"]] == ["ImportBlocked"]
    assert running in body["errors"][0]["message"]
    also_blocked = start(tenant.api, profile["file_id"], field_mappings=MAPPING)
    assert also_blocked.status == 409, "a running exclusive import blocks every other import"

    db(settings, "UPDATE jobs SET status = 'COMPLETED' WHERE job_id = %s", running)
    done = imported(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True)
    assert done["status"] == "COMPLETED_WITH_ERRORS"


def test_exclusive_import_waits_for_a_non_exclusive_one(tenant, settings):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    running = _live_import_row(settings, tenant.tenant_id, profile["file_id"], exclusive=False)
    assert (
        start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True).status == 409
    )
    db(settings, "UPDATE jobs SET status = 'CANCELLED' WHERE job_id = %s", running)
    assert (
        start(tenant.api, profile["file_id"], field_mappings=MAPPING, exclusive=True).status == 202
    )


# --- hostile and broken archives ------------------------------------------------------------------


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


# --- operations, types, encodings -----------------------------------------------------------------


def test_upsert_by_file_updates_existing_rows(tenant, settings):
    prefix = unique_prefix()
    existing = [customer(f"{prefix}-{i}", firstName="Old") for i in range(3)]
    created = tenant.api.post("/api/v1/customers/bulk", {"records": existing})
    assert created.json()["status"] == "COMPLETED"
    data = (
        "externalId,firstName,lastName,email\n"
        f"{prefix}-0,Zoë,Lovelace,{prefix}-0@example.com\n"
        f"{prefix}-1,Émile,Lovelace,{prefix}-1@example.com\n"
        f"{prefix}-9,New,Person,\n"
    ).encode()
    profile = uploaded(tenant.api, data)
    done = imported(tenant.api, profile["file_id"], operation="upsert", upsert_key="externalId")
    assert (done["status"], done["successful"]) == ("COMPLETED", 3)

    results = tenant.api.get(f"/api/v1/jobs/{done['job_id']}/results?format=csv")
    rows = list(csv.DictReader(io.StringIO(results.body.decode("utf-8"))))
    assert [(r["externalId"], r["status"]) for r in rows] == [
        (f"{prefix}-0", "UPDATED"),
        (f"{prefix}-1", "UPDATED"),
        (f"{prefix}-9", "CREATED"),
    ]
    assert {"externalId", "firstName", "lastName"} <= set(rows[0]), "source columns follow"
    assert rows[1]["firstName"] == "Émile"
    names = dict(
        db(
            settings,
            "SELECT external_id, first_name FROM customers WHERE tenant_id = %s",
            tenant.tenant_id,
        )
    )
    assert names == {
        f"{prefix}-0": "Zoë",
        f"{prefix}-1": "Émile",
        f"{prefix}-2": "Old",
        f"{prefix}-9": "New",
    }


def test_numbers_and_booleans_in_text_are_converted(tenant, settings):
    prefix = unique_prefix()
    data = (
        "SKU|Name|Price|Currency|Active|Tags\n"
        f"{prefix}-a|Desk|349.00|EUR|true|office,wood\n"
        f"{prefix}-b|Chair|12|EUR|0|\n"
        f"{prefix}-c|Lamp|cheap|EUR|yes|\n"
    ).encode()
    profile = uploaded(tenant.api, data)
    assert profile["delimiter"] == "|"
    answer = tenant.api.post(
        IMPORTS,
        {"file_id": profile["file_id"], "entity": "products", "field_mappings": {"SKU": "sku"}},
    )
    assert answer.status == 202, answer.body
    done = tenant.api.wait_terminal(answer.json()["job_id"])
    assert (done["successful"], done["failed"]) == (2, 1)
    assert done["errors"][0]["errorCode"] == "InvalidFieldType"
    assert done["errors"][0]["field"] == "price" and done["errors"][0]["line"] == 4
    stored = db(
        settings,
        "SELECT sku, price, active, tags FROM products WHERE tenant_id = %s ORDER BY sku",
        tenant.tenant_id,
    )
    assert stored == [
        (f"{prefix}-a", 349.0, True, ["office", "wood"]),
        (f"{prefix}-b", 12.0, False, None),
    ]


def test_undecodable_bytes_fail_their_row_and_encoding_override_reads_them(tenant, settings):
    prefix = unique_prefix()
    text = (
        "externalId;firstName;lastName\n"
        f"{prefix}-0;Ada;Lovelace\n"
        f"{prefix}-1;Zoë;Müller\n"
        f"{prefix}-2;Grace;Hopper\n"
    )
    profile = uploaded(tenant.api, text.encode("cp1252"))
    assert profile["encoding"] == "utf-8" and "warnings" in profile
    as_utf8 = imported(tenant.api, profile["file_id"])
    assert (as_utf8["status"], as_utf8["failed"]) == ("COMPLETED_WITH_ERRORS", 1)
    assert (
        as_utf8["errors"][0]["line"] == 3 and "not valid utf-8" in as_utf8["errors"][0]["message"]
    )

    other = uploaded(tenant.api, text.replace(prefix, prefix + "x").encode("cp1252"))
    as_cp1252 = imported(tenant.api, other["file_id"], encoding="cp1252")
    assert as_cp1252["status"] == "COMPLETED"
    names = db(
        settings,
        "SELECT last_name FROM customers WHERE tenant_id = %s AND external_id = %s",
        tenant.tenant_id,
        f"{prefix}x-1",
    )
    assert names == [("Müller",)]


def test_file_without_data_rows_completes_empty(tenant):
    profile = uploaded(tenant.api, b"externalId,firstName,lastName\r\n")
    done = imported(tenant.api, profile["file_id"])
    assert (done["status"], done["total"], done["processed"]) == ("COMPLETED", 0, 0)


def test_unsupported_uploads_are_refused_clearly(tenant):
    empty = upload(tenant.api, b"")
    assert empty.status == 422
    xls = upload(tenant.api, b"\xd0\xcf\x11\xe0" + b"\x00" * 100, "application/vnd.ms-excel")
    assert xls.status == 422 and ".xls" in xls.json()["errors"][0]["message"]
    array = upload(tenant.api, b'[{"externalId": "a"}]', "application/json")
    assert array.status == 422 and "NDJSON" in array.json()["errors"][0]["message"]


def test_bad_import_parameters_are_422(tenant):
    profile = uploaded(tenant.api, spreadsheet_csv(people(unique_prefix())))
    answer = tenant.api.post(
        IMPORTS,
        {
            "file_id": profile["file_id"],
            "entity": "customers",
            "operation": "merge",
            "sheet": "Sheet1",
            "upsert_key": "email",
            "colour": "red",
        },
    )
    assert answer.status == 422
    assert set(error_codes(answer)) == {
        ("UnknownField", "colour"),
        ("InvalidOperation", "operation"),
        ("InvalidParameter", "upsert_key"),
    }
    sheet = start(tenant.api, profile["file_id"], field_mappings=MAPPING, sheet="Sheet1")
    assert sheet.status == 422 and error_codes(sheet) == [("InvalidParameter", "sheet")]
    entity = tenant.api.post(IMPORTS, {"file_id": profile["file_id"], "entity": "planets"})
    assert entity.status == 422 and error_codes(entity) == [("UnknownEntity", "entity")]


def test_unknown_xlsx_sheet_is_422(tenant):
    profile = uploaded(
        tenant.api,
        workbook(people(unique_prefix())[:5]),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    )
    answer = start(tenant.api, profile["file_id"], field_mappings=MAPPING, sheet="Nope")
    assert answer.status == 422 and error_codes(answer) == [("InvalidParameter", "sheet")]
    assert "Customers" in answer.json()["errors"][0]["message"]


def test_stored_path_layout(settings, tenant):
    profile = uploaded(tenant.api, b"externalId,firstName,lastName\nx,y,z\n")
    assert (
        Path(settings.file_dir, tenant.tenant_id, profile["file_id"])
        .read_bytes()
        .startswith(b"ext")
    )


# --- the CLI --------------------------------------------------------------------------------------


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


def test_idempotency_key_replays_an_import_and_rejects_a_different_one(tenant):
    prefix = unique_prefix()
    data = f"externalId,firstName,lastName\n{prefix}-1,Ada,Lovelace\n".encode()
    file_id = uploaded(tenant.api, data)["file_id"]
    headers = {"Idempotency-Key": f"import-{prefix}"}
    body = {"file_id": file_id, "entity": "customers"}
    first = tenant.api.post(IMPORTS, body, headers=headers)
    replay = tenant.api.post(IMPORTS, body, headers=headers)
    assert first.status == replay.status == 202
    assert replay.json()["job_id"] == first.json()["job_id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    other = tenant.api.post(IMPORTS, {**body, "operation": "upsert"}, headers=headers)
    assert other.status == 409
    assert other.json()["errors"][0]["errorCode"] == "IdempotencyKeyReused"
    assert tenant.api.wait_terminal(first.json()["job_id"])["successful"] == 1
