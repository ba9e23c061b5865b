"""Import templates: every column maps by default, and the example row imports cleanly — read
back by the workers' own readers and routed through the workers' own checks — for every shipped
entity and for an entity the code has never seen."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import openpyxl
import pytest

from domain.entities import (
    DEFAULT_REFERENCE_TYPES,
    FORMATS,
    EntityDefinition,
    EntityRegistry,
    default_schemas_dir,
)
from domain.entity_description import entity_description
from domain.entity_template import (
    FIELDS_HEADER,
    FIELDS_SHEET,
    FORMAT_EXAMPLES,
    TEMPLATE_FORMATS,
    example_record_row,
    field_documentation,
    template_file,
    template_header,
)
from domain.file_formats import open_rows, profile_file, read_options
from domain.file_types import ZipCaps
from domain.import_mapping import ColumnMapping, plan_import
from domain.import_rows import RowRouter
from domain.report_rows import FORMULA_TRIGGERS

REGISTRY = EntityRegistry.load(default_schemas_dir())
CAPS = ZipCaps(max_uncompressed_bytes=10 * 1024 * 1024, max_ratio=100)
SHIPPED = [(name, form) for name in REGISTRY.names() for form in TEMPLATE_FORMATS]


def imported(definition: EntityDefinition, data: bytes, tmp_path: Path) -> list[dict]:
    """The template as the workers read it: profile, rows, the default mapping, routing."""
    path = tmp_path / "template"
    path.write_bytes(data)
    profile = profile_file(path, CAPS)
    options = read_options(profile)
    with open_rows(path, options, CAPS) as table:
        plan = plan_import(definition, options.content, table.header, {})
        assert isinstance(plan, ColumnMapping)
        assert list(plan.targets) == list(table.header)  # every column mapped, by its name
        router = RowRouter(definition, plan, DEFAULT_REFERENCE_TYPES)
        return [router.route(row, index) for index, row in enumerate(table.rows)]


@pytest.mark.parametrize(("name", "form"), SHIPPED)
def test_the_example_row_of_every_shipped_entity_imports_cleanly(name, form, tmp_path):
    definition = REGISTRY.get(name)
    [routed] = imported(definition, template_file(definition, form), tmp_path)
    assert routed["error"] is None, routed["error"]
    assert routed["line"] == 2
    assert routed["key"] == routed["record"][definition.key_field]


def test_the_header_is_the_described_field_paths():
    for name in REGISTRY.names():
        definition = REGISTRY.get(name)
        described = [f["path"] for f in entity_description(definition)["fields"]]
        assert template_header(definition) == described
    assert "addresses.0.city" in template_header(REGISTRY.get("customers"))


def test_the_csv_template_is_two_rows_of_utf8_comma_separated_text():
    customers = REGISTRY.get("customers")
    rows = list(csv.reader(io.StringIO(template_file(customers, "csv").decode("utf-8"))))
    assert rows[0] == template_header(customers)
    assert len(rows) == 2 and len(rows[1]) == len(rows[0])
    example = dict(zip(rows[0], rows[1], strict=True))
    assert example["addresses.0.country"] == "US"
    assert example["addresses.0.type"] in DEFAULT_REFERENCE_TYPES["address_types"]
    assert example["importantDates.0.date"] == FORMAT_EXAMPLES["date"]
    assert not any(cell.startswith(FORMULA_TRIGGERS) for row in rows for cell in row)
    products = REGISTRY.get("products")
    rows = list(csv.reader(io.StringIO(template_file(products, "csv").decode("utf-8"))))
    assert dict(zip(*rows, strict=True))["active"] == "true"


def test_the_xlsx_template_documents_each_field_on_a_second_sheet():
    customers = REGISTRY.get("customers")
    book = openpyxl.load_workbook(io.BytesIO(template_file(customers, "xlsx")))
    assert book.sheetnames == ["customers", FIELDS_SHEET]
    data = [[c.value for c in row] for row in book["customers"].iter_rows()]
    assert data == [template_header(customers), example_record_row(customers)]
    docs = [[c.value for c in row] for row in book[FIELDS_SHEET].iter_rows()]
    assert docs[0] == list(FIELDS_HEADER)
    by_field = {row[0]: dict(zip(FIELDS_HEADER, row, strict=True)) for row in docs[1:]}
    assert list(by_field) == template_header(customers)
    assert by_field["externalId"]["key"] == "yes" and by_field["externalId"]["required"] == "yes"
    assert by_field["email"]["required"] == "no" and not by_field["email"]["key"]
    assert by_field["addresses.0.city"]["required"] == "in each address"
    assert "ISO 3166-1" in by_field["addresses.0.country"]["rules"]
    assert "addresses.9.country" in by_field["addresses.0.country"]["rules"]
    price = {row[0]: row for row in field_documentation(REGISTRY.get("products"))}["price"]
    assert price[1] == "number" and "at least 0" in price[3] and price[5] == 9.99
    assert all(c.data_type != "f" for sheet in book for row in sheet.iter_rows() for c in row)


def test_every_format_has_an_example_that_matches_it():
    assert set(FORMAT_EXAMPLES) == set(FORMATS), "give each format of FORMATS an example"
    for name, example in FORMAT_EXAMPLES.items():
        assert FORMATS[name].matches(example), name
        assert not example.startswith(FORMULA_TRIGGERS), name


NEW_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "orderNo", "type": "string"},
        {"name": "code", "type": "string"},
        {"name": "quantity", "type": "int"},
        {"name": "weight", "type": ["null", "double"], "default": None},
        {"name": "balance", "type": "long"},
        {"name": "gift", "type": "boolean", "default": False},
        {"name": "currency", "type": "string"},
        {"name": "contact", "type": ["null", "string"], "default": None},
        {"name": "sizes", "type": ["null", {"type": "array", "items": "int"}], "default": None},
        {
            "name": "lines",
            "type": [
                "null",
                {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Line",
                        "fields": [
                            {"name": "kind", "type": "string"},
                            {"name": "on", "type": "string"},
                            {"name": "country", "type": ["null", "string"], "default": None},
                        ],
                    },
                },
            ],
            "default": None,
        },
    ],
}
NEW_RULES = {
    "key": "orderNo",
    "text": {"forbiddenCodePoints": ["U+0000", "U+D800-U+DFFF"]},
    "fields": {
        "orderNo": {"required": True, "maxLength": 12, "format": "key"},
        "code": {"required": True, "minLength": 30, "maxLength": 30},
        "quantity": {"required": True, "minimum": 100, "maximum": 200},
        "weight": {"minimum": -5.5, "maximum": -1.5},
        "balance": {"required": True, "maximum": -3},
        "gift": {},
        "currency": {"required": True, "format": "currency3", "codeList": "iso4217"},
        "contact": {"maxLength": 4},
        "sizes": {"maxItems": 3, "items": {"minimum": 1}},
        "lines": {
            "maxItems": 2,
            "items": {
                "label": "line",
                "fields": {
                    "kind": {"required": True, "maxLength": 20, "reference": "date_types"},
                    "on": {"required": True, "format": "date", "calendarDate": True},
                    "country": {"format": "country2", "codeList": "iso3166-1-alpha-2"},
                },
            },
        },
    },
}


@pytest.mark.parametrize("form", TEMPLATE_FORMATS)
def test_a_new_entity_gets_a_template_that_imports_cleanly(form, tmp_path):
    entities = tmp_path / "schemas" / "entities"
    entities.mkdir(parents=True)
    (entities / "orders.avsc").write_text(json.dumps(NEW_SCHEMA))
    (entities / "orders.rules.json").write_text(json.dumps(NEW_RULES))
    orders = EntityRegistry.load(tmp_path / "schemas").get("orders")
    [routed] = imported(orders, template_file(orders, form), tmp_path)
    assert routed["error"] is None, routed["error"]
    record = routed["record"]
    assert len(record["code"]) == 30 and record["quantity"] == 100
    assert record["weight"] == -1.5 and record["balance"] == -3 and record["gift"] is False
    assert record["contact"] == "Exam" and record["sizes"] == [10]
    assert record["lines"] == [{"kind": "anniversary", "on": "1990-05-17", "country": "US"}]
