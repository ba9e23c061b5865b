"""Imports refused before they start: header-level mapping checks, unknown or expired files,
bad parameters, unsupported uploads (``422``), tenants' files kept apart, idempotent replays."""

from __future__ import annotations

import uuid

from tests.support.http import poll
from tests.support.imports import (
    FILES,
    IMPORTS,
    MAPPING,
    csv_text,
    db,
    error_codes,
    people,
    spreadsheet_csv,
    start,
    upload,
    uploaded,
    workbook,
)
from tests.support.records import unique_prefix


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
