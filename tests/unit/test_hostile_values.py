"""What PostgreSQL and Avro cannot hold is refused by basic validation, naming index and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from domain import strict_json
from domain.entities import EntityRegistry, default_schemas_dir
from domain.errors import ErrorCode
from domain.outcomes import PendingRecord, decide_record
from domain.text import (
    REPLACEMENT,
    UNSTORABLE,
    CodePointSyntaxError,
    ForbiddenCharacters,
    covers,
    parse_code_points,
    storable,
    unstorable_character,
)
from domain.validation import basic_record_errors

REGISTRY = EntityRegistry.load(default_schemas_dir())
CUSTOMERS = REGISTRY.get("customers")
PRODUCTS = REGISTRY.get("products")


def customer(**changes: Any) -> dict[str, Any]:
    return {"externalId": "c-1", "firstName": "Ada", "lastName": "Lovelace", **changes}


def product(**changes: Any) -> dict[str, Any]:
    return {"sku": "p-1", "name": "Pen", "price": 1.5, "currency": "EUR", **changes}


def first_error(definition: Any, record: dict[str, Any]) -> tuple[ErrorCode, str | None, str]:
    errors = basic_record_errors(definition, record, 7)
    assert errors, "expected the record to be refused"
    return errors[0].error_code, errors[0].field, errors[0].message


# --- strings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "field", "shown"),
    [
        (customer(firstName="A\u0000b"), "firstName", "U+0000"),
        (customer(lastName="\ud800"), "lastName", "U+D800"),
        (customer(company="x\udfff"), "company", "U+DFFF"),
        (customer(externalId="c\u0000"), "externalId", "U+0000"),
        (
            customer(addresses=[{"type": "home", "line1": "\u0000", "city": "c", "country": "GB"}]),
            "addresses.0.line1",
            "U+0000",
        ),
        (product(tags=["ok", "b\ud83d"]), "tags.1", "U+D83D"),
    ],
)
def test_unstorable_characters_are_an_invalid_format_naming_the_field(
    record: dict[str, Any], field: str, shown: str
) -> None:
    definition = PRODUCTS if "sku" in record else CUSTOMERS
    code, where, message = first_error(definition, record)
    assert (code, where) == (ErrorCode.InvalidFormat, field)
    assert f"at index 7 has an invalid {field}: it holds {shown}" in message


@pytest.mark.parametrize(
    "key",
    ["c\n1", "c\t1", "c\x7f", "c\u200b1", "\ufeffc-1", "c\u202e1", "c\u20281", "c\ue0001"],
    ids=["newline", "tab", "delete", "zero-width", "bom", "bidi", "line-separator", "private"],
)
def test_keys_refuse_control_and_invisible_characters(key: str) -> None:
    code, field, message = first_error(CUSTOMERS, customer(externalId=key))
    assert (code, field) == (ErrorCode.InvalidFormat, "externalId")
    assert "visible characters only" in message


@pytest.mark.parametrize("key", ["c-1", "Müller-7", "顧客-42", "a b", "emoji-😀"])
def test_keys_take_any_visible_text(key: str) -> None:
    assert basic_record_errors(CUSTOMERS, customer(externalId=key), 0) == []


def test_a_bom_inside_a_name_is_kept_as_written() -> None:
    """Text fields hold any storable character; only keys must be visible."""
    assert basic_record_errors(CUSTOMERS, customer(firstName="\ufeffAda"), 0) == []


def test_overlong_strings_are_refused_before_anything_is_stored() -> None:
    code, field, message = first_error(CUSTOMERS, customer(firstName="x" * 10_000_000))
    assert (code, field) == (ErrorCode.InvalidFormat, "firstName")
    assert "at most 100 characters allowed, got 10000000" in message


# --- numbers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "text"),
    [
        (int("9" * 401), "an integer of 401 digits is too large to be stored exactly"),
        (2**53 + 1, "9007199254740993 is too large to be stored exactly"),
        (float("nan"), "must be a finite number, got nan"),
        (float("inf"), "must be a finite number, got inf"),
        (float("-inf"), "must be a finite number, got -inf"),
        (1e300, "must be at most 9007199254740991, got 1e+300"),
        (-0.01, "must be at least 0, got -0.01"),
    ],
    ids=["401-digits", "2^53+1", "nan", "inf", "-inf", "1e300", "negative"],
)
def test_prices_a_double_column_cannot_hold_are_invalid_values(price: float, text: str) -> None:
    code, field, message = first_error(PRODUCTS, product(price=price))
    assert (code, field) == (ErrorCode.InvalidValue, "price")
    assert text in message


@pytest.mark.parametrize("price", [0, 0.0, 349.99, 2**53 - 1, 1e15])
def test_prices_within_the_column_pass(price: float) -> None:
    assert basic_record_errors(PRODUCTS, product(price=price), 0) == []


def test_integers_must_fit_their_avro_type(tmp_path: Path) -> None:
    entities = tmp_path / "entities"
    entities.mkdir()
    (entities / "counters.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Counter",
                "fields": [
                    {"name": "code", "type": "string"},
                    {"name": "small", "type": ["null", "int"], "default": None},
                    {"name": "big", "type": ["null", "long"], "default": None},
                ],
            }
        )
    )
    (entities / "counters.rules.json").write_text(
        json.dumps(
            {
                "key": "code",
                "text": {"forbiddenCodePoints": ["U+0000", "U+D800-U+DFFF"]},
                "fields": {"code": {"required": True, "maxLength": 8}},
            }
        )
    )
    counters = EntityRegistry.load(tmp_path).get("counters")
    assert (
        basic_record_errors(counters, {"code": "a", "small": 2**31 - 1, "big": -(2**63)}, 0) == []
    )
    small = basic_record_errors(counters, {"code": "a", "small": 2**31}, 0)
    big = basic_record_errors(counters, {"code": "a", "big": 2**63}, 0)
    assert [(e.error_code, e.field) for e in small] == [(ErrorCode.InvalidValue, "small")]
    assert "does not fit a 32-bit integer" in small[0].message
    assert "does not fit a 64-bit integer" in big[0].message


# --- strict JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"records": [' + b"9" * 5000 + b"]}", "more than 4300 digits"),
        (b'{"records": [], "records": [1]}', "the key 'records' twice"),
        (b'{"records": [{"firstName": "a", "firstName": "b"}]}', "the key 'firstName' twice"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b"{not json", "Expecting property name"),
        (b"", "Expecting value"),
    ],
)
def test_json_that_is_ambiguous_or_unparsable_is_refused(text: bytes, reason: str) -> None:
    with pytest.raises(strict_json.JsonRejected, match=reason):
        strict_json.loads(text)


def test_json_with_a_bom_or_in_utf16_and_nan_still_parses() -> None:
    assert strict_json.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert strict_json.loads('{"a": [1]}'.encode("utf-16")) == {"a": [1]}
    value = strict_json.loads(b'{"price": NaN}')["price"]
    assert value != value  # NaN: validation refuses it with the record's index and field


# --- text helpers ---------------------------------------------------------------------------------


def test_code_point_ranges_parse_and_cover() -> None:
    assert parse_code_points("U+0000") == (0, 0)
    assert parse_code_points("U+D800-U+DFFF") == (0xD800, 0xDFFF)
    assert covers([(0, 0x1F), (0xD800, 0xDFFF)], UNSTORABLE)
    assert not covers([(0xD800, 0xDFFF)], UNSTORABLE)
    for bad in ("0000", "U+12", "U+DFFF-U+D800", "U+110000"):
        with pytest.raises(CodePointSyntaxError):
            parse_code_points(bad)


def test_forbidden_characters_find_the_first_offender() -> None:
    forbidden = ForbiddenCharacters(((0, 0), (0x7F, 0x7F), (0xD800, 0xDFFF)))
    assert forbidden.first("plain ascii") is None
    assert forbidden.first("a\x7fb") == "U+007F"
    assert forbidden.first("é\ud800") == "U+D800"
    assert forbidden.first("ünïcödé") is None


def test_storable_replaces_only_what_cannot_be_stored() -> None:
    value = {"k\u0000": ["a\ud800", {"x": "ok"}], "n": 5, "fine": "é"}
    assert storable(value) == {
        f"k{REPLACEMENT}": [f"a{REPLACEMENT}", {"x": "ok"}],
        "n": 5,
        "fine": "é",
    }
    assert unstorable_character(storable("\u0000\udc80")) is None


def test_a_failed_outcome_can_always_be_stored() -> None:
    """A record that fails keeps its key and values for the report, made storable."""
    record = PendingRecord(
        "job",
        "tenant",
        "customers",
        "insert",
        3,
        "c\u0000",
        {"externalId": "c\u0000", "firstName": "\ud800"},
        failure=None,
    )
    from domain.outcomes import RecordFailure, Writes

    failed = decide_record(
        record._replace(failure=RecordFailure("InvalidFormat", "m\u0000")),
        {},
        Writes(),
        "externalId",
    )
    assert failed.key == f"c{REPLACEMENT}" and failed.error_message == f"m{REPLACEMENT}"
    assert failed.submitted == {"externalId": f"c{REPLACEMENT}", "firstName": REPLACEMENT}
