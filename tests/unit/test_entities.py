"""Entity definitions load from schemas/ as data, and their Avro schemas carry real records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from domain.entities import (
    DEFAULT_REFERENCE_TYPES,
    EntityDefinitionError,
    EntityRegistry,
    default_schemas_dir,
)
from domain.errors import ErrorCode, InvalidInput
from domain.reference_data import ISO_3166_1_ALPHA_2, ISO_4217_CURRENCIES
from domain.semantics import semantic_error
from domain.validation import basic_record_errors, record_key, to_avro_record

REGISTRY = EntityRegistry.load(default_schemas_dir())

FULL_CUSTOMER: dict[str, Any] = {
    "externalId": "c-1",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "email": "ada@example.com",
    "phone": "+44 (0)20 7946-0000",
    "company": "Analytical Engines",
    "addresses": [
        {"type": "home", "line1": "12 St James's Square", "city": "London", "country": "GB"},
    ],
    "importantDates": [{"type": "birthday", "date": "1815-12-10"}],
}


def test_registry_loads_both_shipped_entities() -> None:
    assert REGISTRY.names() == ("customers", "products")
    assert REGISTRY.get("customers").key_field == "externalId"
    assert REGISTRY.get("products").key_field == "sku"
    assert REGISTRY.get("customers").label == "Customer"


def test_unknown_entity_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        REGISTRY.get("suppliers")
    (error,) = caught.value.errors
    assert error.error_code is ErrorCode.UnknownEntity
    assert "suppliers" in error.message
    assert "customers, products" in error.message


@pytest.mark.parametrize("name", ["customers", "products"])
def test_entity_schemas_are_valid_avro_with_camel_case_fields(name: str) -> None:
    raw = json.loads((default_schemas_dir() / "entities" / f"{name}.avsc").read_text())
    parsed = parse_schema(raw)
    assert parsed["name"].startswith("bulk_ingest.entities.")
    assert all("_" not in field["name"] for field in raw["fields"])


def test_customer_schema_fields_follow_the_design() -> None:
    names = [field.name for field in REGISTRY.get("customers").fields]
    assert names == [
        "externalId",
        "firstName",
        "lastName",
        "email",
        "phone",
        "company",
        "addresses",
        "importantDates",
    ]


def test_full_customer_becomes_a_valid_avro_record() -> None:
    customers = REGISTRY.get("customers")
    avro = to_avro_record(customers, FULL_CUSTOMER)
    assert validate(avro, customers.avro_schema)
    assert avro["addresses"][0]["line2"] is None
    assert avro["addresses"][0]["postalCode"] is None


def test_minimal_customer_gets_nulls_for_every_optional_field() -> None:
    customers = REGISTRY.get("customers")
    avro = to_avro_record(customers, {"externalId": "c-2", "firstName": "A", "lastName": "B"})
    assert validate(avro, customers.avro_schema)
    assert avro["email"] is None
    assert avro["addresses"] is None
    assert avro["importantDates"] is None


def test_product_defaults_and_integer_prices_are_normalised_for_avro() -> None:
    products = REGISTRY.get("products")
    avro = to_avro_record(products, {"sku": "p-1", "name": "Pen", "price": 2, "currency": "EUR"})
    assert validate(avro, products.avro_schema)
    assert avro == {
        "sku": "p-1",
        "name": "Pen",
        "price": 2.0,
        "currency": "EUR",
        "active": True,
        "tags": None,
    }
    assert isinstance(avro["price"], float)


def test_record_key_reads_the_entitys_key_field() -> None:
    assert record_key(REGISTRY.get("customers"), FULL_CUSTOMER) == "c-1"
    assert record_key(REGISTRY.get("products"), {"sku": "p-9"}) == "p-9"
    assert record_key(REGISTRY.get("products"), {"name": "no key"}) == ""


def test_default_reference_types() -> None:
    assert DEFAULT_REFERENCE_TYPES["address_types"] == {"home", "work", "billing", "shipping"}
    assert DEFAULT_REFERENCE_TYPES["date_types"] == {"birthday", "anniversary"}


def test_reference_data_sets_are_complete_code_lists() -> None:
    assert len(ISO_3166_1_ALPHA_2) == 249
    assert {"US", "GB", "DE", "FR", "JP", "SS", "XK"} - ISO_3166_1_ALPHA_2 == {"XK"}
    assert {"EUR", "USD", "GBP", "JPY", "CHF", "SLE", "ZWG"} <= ISO_4217_CURRENCIES
    assert "XYZ" not in ISO_4217_CURRENCIES


# --- a new entity is two files, no Python --------------------------------------------------------

SUPPLIER_SCHEMA = {
    "type": "record",
    "name": "Supplier",
    "namespace": "bulk_ingest.entities",
    "fields": [
        {"name": "code", "type": "string"},
        {"name": "country", "type": ["null", "string"], "default": None},
        {"name": "rating", "type": ["null", "int"], "default": None},
    ],
}
SUPPLIER_TEXT = {"forbiddenCodePoints": ["U+0000", "U+D800-U+DFFF"]}
SUPPLIER_RULES = {
    "key": "code",
    "text": SUPPLIER_TEXT,
    "fields": {
        "code": {"required": True, "maxLength": 8},
        "country": {"format": "country2", "codeList": "iso3166-1-alpha-2"},
        "rating": {"minimum": 1},
    },
}


def _write_entity(root: Path, name: str, schema: object, rules: object) -> Path:
    entities = root / "entities"
    entities.mkdir(parents=True, exist_ok=True)
    (entities / f"{name}.avsc").write_text(json.dumps(schema))
    (entities / f"{name}.rules.json").write_text(json.dumps(rules))
    return root


def test_adding_an_entity_is_adding_its_two_files(tmp_path: Path) -> None:
    registry = EntityRegistry.load(
        _write_entity(tmp_path, "suppliers", SUPPLIER_SCHEMA, SUPPLIER_RULES)
    )
    suppliers = registry.get("suppliers")
    errors = basic_record_errors(suppliers, {"code": "TOO-LONG-CODE", "rating": 0}, 4)
    assert [(e.error_code, e.field) for e in errors] == [
        (ErrorCode.InvalidFormat, "code"),
        (ErrorCode.InvalidValue, "rating"),
    ]
    assert errors[0].message.startswith("Supplier at index 4 ")
    semantic = semantic_error(suppliers, {"code": "S1", "country": "QQ"}, DEFAULT_REFERENCE_TYPES)
    assert semantic == (ErrorCode.InvalidValue, "country", "QQ is not an ISO 3166-1 country code")


@pytest.mark.parametrize(
    ("rules", "complaint"),
    [
        ({**SUPPLIER_RULES, "key": "missing"}, "'key'"),
        ({**SUPPLIER_RULES, "fields": {"nope": {}}}, "lacks"),
        ({**SUPPLIER_RULES, "fields": {"code": {"required": True, "maxItems": 3}}}, "maxItems"),
        ({**SUPPLIER_RULES, "fields": {"code": {"required": True, "format": "zip"}}}, "zip"),
        ({**SUPPLIER_RULES, "fields": {"code": {"required": True, "maxLength": "8"}}}, "type"),
        ({"key": "code", "text": SUPPLIER_TEXT, "fields": {"code": {"maxLength": 8}}}, "required"),
        ({**SUPPLIER_RULES, "fields": {"code": {"required": True}}}, "maxLength or a format"),
        ({**SUPPLIER_RULES, "text": {"forbiddenCodePoints": ["U+D800-U+DFFF"]}}, "U\\+0000"),
        ({**SUPPLIER_RULES, "text": {"forbiddenCodePoints": ["U+0000", "x"]}}, "U\\+XXXX"),
        ({k: v for k, v in SUPPLIER_RULES.items() if k != "text"}, "forbiddenCodePoints"),
    ],
)
def test_inconsistent_rules_fail_loudly_at_load(
    tmp_path: Path, rules: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(EntityDefinitionError, match=complaint):
        EntityRegistry.load(_write_entity(tmp_path, "suppliers", SUPPLIER_SCHEMA, rules))


def test_a_schema_without_rules_file_fails_at_load(tmp_path: Path) -> None:
    root = _write_entity(tmp_path, "suppliers", SUPPLIER_SCHEMA, SUPPLIER_RULES)
    (root / "entities" / "suppliers.rules.json").unlink()
    with pytest.raises(EntityDefinitionError, match=r"suppliers\.rules\.json"):
        EntityRegistry.load(root)
