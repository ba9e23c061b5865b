"""Import templates against the real gateway and workers: each template of each shipped entity,
uploaded as it was downloaded and imported with the default mapping, ends COMPLETED with its
one record in the entity's table; the refusals; ``bulk-ingest template``."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import openpyxl
import pytest

from domain.entities import EntityRegistry, default_schemas_dir
from domain.entity_template import MEDIA_TYPES, TEMPLATE_FORMATS, template_file
from storage.tables import ENTITY_TABLES
from tests.support.imports import db, imported, uploaded

pytestmark = pytest.mark.e2e

REGISTRY = EntityRegistry.load(default_schemas_dir())
SHIPPED = [(name, form) for name in REGISTRY.names() for form in TEMPLATE_FORMATS]


def template_path(entity: str, form: str | None = None) -> str:
    query = f"?format={form}" if form else ""
    return f"/api/v1/entities/{entity}/template{query}"


def error_of(answer) -> tuple[int, str]:
    return answer.status, answer.json()["errors"][0]["errorCode"]


@pytest.mark.parametrize(("entity", "form"), SHIPPED)
def test_a_downloaded_template_imports_its_example(tenant, settings, entity, form):
    answer = tenant.api.get(template_path(entity, form))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith(MEDIA_TYPES[form])
    assert answer.headers["Content-Disposition"] == (
        f'attachment; filename="{entity}-template.{form}"'
    )
    profile = uploaded(tenant.api, answer.body, MEDIA_TYPES[form])
    assert profile["format"] == form
    job = imported(tenant.api, profile["file_id"], entity=entity)
    assert job["status"] == "COMPLETED", job
    assert (job["total"], job["successful"], job["failed"]) == (1, 1, 0)
    results = tenant.api.get(f"{job['results_url']}?format=csv")
    [result] = list(csv.DictReader(io.StringIO(results.body.decode("utf-8"))))
    assert result["status"] == "CREATED"
    table = ENTITY_TABLES[entity].name
    stored = db(settings, f"SELECT id::text FROM {table} WHERE tenant_id = %s", tenant.tenant_id)
    assert stored == [(result["id"],)]


def test_csv_is_the_default_and_every_tenant_gets_the_same_template(tenant, make_tenant):
    answer = tenant.api.get(template_path("products"))
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/csv")
    assert answer.body == template_file(REGISTRY.get("products"), "csv")
    assert make_tenant().api.get(template_path("products")).body == answer.body


def test_refusals(tenant):
    assert error_of(tenant.api.get(template_path("customers", "pdf"))) == (
        422,
        "InvalidParameter",
    )
    assert error_of(tenant.api.get(template_path("planets", "csv"))) == (404, "UnknownEntity")
    anonymous = tenant.api.get(template_path("customers"), headers={"Authorization": ""})
    assert anonymous.status == 401
    forged = tenant.api.get(
        template_path("customers"), headers={"Authorization": "Bearer not-a-key"}
    )
    assert forged.status == 401


def cli(*args: str, api_key: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bulk_ingest.cli", "template", *args],
        env={"PATH": "/usr/bin:/bin", "BULK_INGEST_API_KEY": api_key},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_cli_saves_a_template(tenant, service, tmp_path):
    target = tmp_path / "out" / "customers.xlsx"
    target.parent.mkdir()
    args = ("--url", service.base_url)
    saved = cli("customers", "--format", "xlsx", "--output", str(target), *args,
                api_key=tenant.api_key, cwd=tmp_path)  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == f"{target}\n"
    book = openpyxl.load_workbook(target)
    assert book.sheetnames == ["customers", "Fields"]
    assert next(book["customers"].iter_rows(values_only=True))[0] == "externalId"
    default = cli("products", *args, api_key=tenant.api_key, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout == f"{tmp_path / 'products-template.csv'}\n"
    assert (tmp_path / "products-template.csv").read_bytes() == template_file(
        REGISTRY.get("products"), "csv"
    )
    refused = cli("planets", *args, api_key=tenant.api_key, cwd=tmp_path)
    assert refused.returncode == 2
    assert "answered 404" in refused.stderr and "UnknownEntity" in refused.stderr
