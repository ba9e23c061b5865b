"""The spreadsheet-style data set (1,000 customers, accented names, one address with a line break
inside a quoted cell, two bad rows) goes in as CSV, ZIP, XLSX, NDJSON and UTF-16 text, and must
come out the same way each time: COMPLETED_WITH_ERRORS, two failures that name their line.
"""

from __future__ import annotations

import csv
import hashlib
import io

import pytest

from tests.support.imports import (
    BAD_EMAIL_ROW,
    FILES,
    HEADER,
    MAPPING,
    MULTILINE_ROW,
    NO_LAST_NAME_ROW,
    ROWS,
    VARIANTS,
    db,
    imported,
    line_of,
    people,
    spreadsheet_csv,
    uploaded,
)
from tests.support.records import unique_prefix


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
