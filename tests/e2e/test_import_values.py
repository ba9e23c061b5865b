"""What a file's cells become: upserts by file, numbers and booleans from text, undecodable bytes,
encoding overrides, empty files, and where the uploaded bytes are kept."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.support.imports import IMPORTS, db, imported, uploaded
from tests.support.records import customer, unique_prefix


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


def test_stored_path_layout(settings, tenant):
    profile = uploaded(tenant.api, b"externalId,firstName,lastName\nx,y,z\n")
    assert (
        Path(settings.file_dir, tenant.tenant_id, profile["file_id"])
        .read_bytes()
        .startswith(b"ext")
    )
