"""The generated yes/no check of basic validation agrees with the walk that explains errors.

``basic_record_errors`` trusts the fast check for a record it passes: if that check ever passed
what the walk refuses, a bad record would be stored without a word. Records here are generated
from the entity definitions themselves, each field left out, blank, valid-looking or hostile.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import semantics, validation
from domain.entities import (
    DEFAULT_REFERENCE_TYPES,
    EntityRegistry,
    ValueKind,
    ValueSpec,
    default_schemas_dir,
)

REGISTRY = EntityRegistry.load(default_schemas_dir())

HOSTILE_VALUES = [
    None,
    "",
    "x",
    "a" * 64,
    "a" * 65,
    "a" * 255,
    "a\x00b",
    "\ud800",
    "\u200b",
    "é",
    "ada@example.com",
    "not an email",
    "+44 20 7946 0000",
    "GB",
    "EUR",
    "2024-02-30",
    "1815-12-10",
    "home",
    0,
    -1,
    2**31,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**400,
    True,
    False,
    0.0,
    -0.0,
    1.5,
    -1.5,
    1e308,
    float("nan"),
    float("inf"),
    [],
    {},
    ["x"],
]
HOSTILE = st.sampled_from(HOSTILE_VALUES)
NUMBER_EDGES = [
    *(2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1),
    *(2**53, 2**53 + 1, -(2**53) - 1, 0, 1, 100, 101, -0.0, 0.5, 1.0, 1.5, True),
    *(float("nan"), float("inf"), float("-inf"), 1e300),
]
"""The edges of the integer types, the exact doubles and the ranges of the rules below."""
NUMBERS = st.sampled_from(NUMBER_EDGES)
TEXT = st.text(alphabet=st.sampled_from("aZ09-_.@+ :\x00\u00e9\u200b\ud800"), max_size=70)

VALID = {
    "externalId": "c-1",
    "sku": "p-1",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "type": "home",
    "country": "GB",
    "date": "1815-12-10",
    "currency": "EUR",
    "price": 1.5,
    "count": 7,
    "ratio": 0.5,
    "codes": "ab",
}
"""A valid value for each field whose rules a plain word or number would break."""


VALID_MODES, WRONG_MODES = range(0, 14), range(14, 18)


def values_for(spec: ValueSpec, name: str, wrong: bool | None = None) -> st.SearchStrategy[Any]:
    """Mostly a valid value, else absent, hostile or anything of the field's kind; ``wrong``
    True draws only the latter, False only valid values."""
    modes = {None: range(0, 18), True: WRONG_MODES, False: VALID_MODES}[wrong]
    return st.sampled_from(modes).flatmap(lambda mode: _value(spec, name, mode))


def _value(spec: ValueSpec, name: str, mode: int) -> st.SearchStrategy[Any]:
    if mode == 14:
        return st.none()
    if mode == 15:
        return HOSTILE
    if mode in WRONG_MODES and spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return NUMBERS if mode == 16 else st.integers(-(2**64), 2**64) | st.floats()
    if mode in WRONG_MODES and spec.kind is ValueKind.STRING:
        return TEXT
    if spec.kind is ValueKind.RECORD:
        return records_for(spec, one_wrong=True if mode in WRONG_MODES else None)
    if spec.kind is ValueKind.ARRAY:
        assert spec.items is not None
        items = spec.items
        if mode == 16:
            too_many = (spec.max_items or 2) + 1
            return st.lists(values_for(items, name, wrong=False), min_size=too_many)
        if mode == 17:
            return st.tuples(
                st.lists(values_for(items, name, wrong=False), max_size=1),
                values_for(items, name, wrong=True),
            ).map(lambda parts: [*parts[0], parts[1]])
        return st.lists(values_for(items, name), max_size=3)
    if spec.kind is ValueKind.BOOLEAN:
        return st.booleans() if mode in VALID_MODES else HOSTILE
    default = {ValueKind.STRING: "x", ValueKind.NUMBER: 1, ValueKind.INTEGER: 1}[spec.kind]
    return st.just(VALID.get(name, default))


def records_for(spec: ValueSpec, one_wrong: bool | None = None) -> st.SearchStrategy[Any]:
    """Records of ``spec``: fields drawn independently, or (``one_wrong``) every field valid
    but one, so that one check alone decides."""
    if one_wrong:
        return st.sampled_from(spec.fields).flatmap(
            lambda bad: st.fixed_dictionaries(
                {f.name: values_for(f.value, f.name, wrong=f is bad) for f in spec.fields}
            )
        )
    fields = {f.name: values_for(f.value, f.name) for f in spec.fields}
    present = st.fixed_dictionaries({}, optional=fields)
    required = st.fixed_dictionaries({f.name: fields[f.name] for f in spec.fields if f.required})
    extra = st.dictionaries(st.sampled_from(["unknown", "EMAIL"]), HOSTILE, max_size=1)
    usually_no_extra = st.integers(0, 5).flatmap(lambda n: extra if n == 0 else st.just({}))
    return st.tuples(required, present, usually_no_extra).map(
        lambda parts: {**parts[1], **parts[0], **parts[2]}
    )


COUNTERS_SCHEMA = {
    "type": "record",
    "name": "Counter",
    "fields": [
        {"name": "code", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "big", "type": ["null", "long"], "default": None},
        {"name": "ratio", "type": ["null", "double"], "default": None},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "flag", "type": ["null", "boolean"], "default": None},
        {"name": "codes", "type": ["null", {"type": "array", "items": "string"}], "default": None},
    ],
}
COUNTERS_RULES = {
    "key": "code",
    "text": {"forbiddenCodePoints": ["U+0000", "U+D800-U+DFFF"]},
    "fields": {
        "code": {"required": True, "maxLength": 8},
        "count": {"required": True, "minimum": 1, "maximum": 100},
        "ratio": {"minimum": 0, "maximum": 1},
        "codes": {"maxItems": 2, "items": {"minLength": 2, "maxLength": 3}},
    },
}


def _with_counters() -> dict[str, ValueSpec]:
    specs = {name: REGISTRY.get(name).record for name in REGISTRY.names()}
    with tempfile.TemporaryDirectory() as folder:
        entities = Path(folder) / "entities"
        entities.mkdir()
        (entities / "counters.avsc").write_text(json.dumps(COUNTERS_SCHEMA))
        (entities / "counters.rules.json").write_text(json.dumps(COUNTERS_RULES))
        specs["counters"] = EntityRegistry.load(Path(folder)).get("counters").record
    return specs


SPECS = _with_counters()


def walk_finds_an_error(spec: ValueSpec, record: Any) -> bool:
    findings = validation._Findings("record", 0)
    if not isinstance(record, dict):
        return True
    validation._check_record(spec, record, "", findings)
    return bool(findings.errors)


@given(st.sampled_from([*sorted(SPECS), "counters"]), st.data())
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_the_fast_check_passes_exactly_what_the_walk_finds_no_error_in(
    entity: str, data: st.DataObject
) -> None:
    spec = SPECS[entity]
    record = data.draw(records_for(spec) | records_for(spec, one_wrong=True) | HOSTILE)
    assert validation._passes(spec)(record) is not walk_finds_an_error(spec, record)


def valid_value(spec: ValueSpec, name: str) -> Any:
    if spec.kind is ValueKind.RECORD:
        return {field.name: valid_value(field.value, field.name) for field in spec.fields}
    if spec.kind is ValueKind.ARRAY:
        assert spec.items is not None
        return [valid_value(spec.items, name)]
    if spec.kind is ValueKind.BOOLEAN:
        return True
    return VALID.get(name, {ValueKind.STRING: "x"}.get(spec.kind, 1))


def paths(spec: ValueSpec, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every place a value sits in a valid record of ``spec`` (an array's first item)."""
    found = []
    for field in spec.fields:
        here = (*prefix, field.name)
        found.append(here)
        value = field.value
        if value.kind is ValueKind.ARRAY and value.items is not None:
            found.append((*here, 0))
            value = value.items
        if value.kind is ValueKind.RECORD:
            found += paths(value, here if value is field.value else (*here, 0))
    return found


def replaced(record: Any, path: tuple[str | int, ...], value: Any) -> Any:
    changed = copy.deepcopy(record)
    *parents, last = path
    holder = changed
    for step in parents:
        holder = holder[step]
    holder[last] = value
    return changed


@pytest.mark.parametrize("entity", sorted(SPECS))
def test_every_edge_value_in_every_place_gets_the_same_answer(entity: str) -> None:
    spec = SPECS[entity]
    valid = valid_value(spec, "")
    assert validation._passes(spec)(valid) and not walk_finds_an_error(spec, valid)
    edges = [*HOSTILE_VALUES, *NUMBER_EDGES, ["x"] * 21, [valid_value(spec, "")] * 11]
    disagreements = [
        (path, value)
        for path in paths(spec)
        for value in edges
        if validation._passes(spec)(record := replaced(valid, path, value))
        is walk_finds_an_error(spec, record)
    ]
    assert disagreements == []


def test_valid_records_take_the_fast_path() -> None:
    customer = {
        "externalId": "c-1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "addresses": [{"type": "home", "line1": "1 Main St", "city": "X", "country": "GB"}],
    }
    product = {"sku": "p-1", "name": "Pen", "price": 1.5, "currency": "EUR", "active": True}
    assert validation._passes(REGISTRY.get("customers").record)(customer)
    assert validation._passes(REGISTRY.get("products").record)(product)


# --- semantic checks: the generated check agrees with the walk that explains them ----------------

WIDE_TYPES = {"address_types": frozenset({"home", "depot"}), "date_types": frozenset({"home"})}
"""Reference sets that hold the valid records' ``type`` ("home") everywhere."""
TENANT_TYPES = [DEFAULT_REFERENCE_TYPES, {}, WIDE_TYPES]
SEMANTIC_EDGES = ["XX", "gb", "ZZZ", "eur", "2023-02-29", "2024-02-29", "0000-01-01", "depot"]


def walk_finds_a_semantic_error(
    spec: ValueSpec, record: Any, types: Mapping[str, frozenset[str]]
) -> bool:
    context = semantics._SemanticContext("Record", types)
    return semantics._record_semantics(spec, record, "", "Record", context) is not None


@given(st.sampled_from(sorted(SPECS)), st.sampled_from(TENANT_TYPES), st.data())
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_the_semantic_check_passes_exactly_what_the_walk_finds_no_error_in(
    entity: str, types: Mapping[str, frozenset[str]], data: st.DataObject
) -> None:
    spec = SPECS[entity]
    record = data.draw(records_for(spec) | records_for(spec, one_wrong=True))
    assert semantics._passes(spec)(record, types) is not walk_finds_a_semantic_error(
        spec, record, types
    )


@pytest.mark.parametrize("entity", sorted(SPECS))
def test_every_semantic_edge_in_every_place_gets_the_same_answer(entity: str) -> None:
    spec, types = SPECS[entity], WIDE_TYPES
    valid = valid_value(spec, "")
    assert semantics._passes(spec)(valid, types)
    assert not walk_finds_a_semantic_error(spec, valid, types)
    edges = [*HOSTILE_VALUES, *SEMANTIC_EDGES, [valid_value(spec, "")] * 2, [None]]
    disagreements = [
        (path, value)
        for path in paths(spec)
        for value in edges
        if semantics._passes(spec)(record := replaced(valid, path, value), types)
        is walk_finds_a_semantic_error(spec, record, types)
    ]
    assert disagreements == []


def test_a_mapping_that_is_not_a_dict_is_walked() -> None:
    customers = REGISTRY.get("customers")
    address = MappingProxyType({"type": "home", "line1": "1 Main St", "city": "X", "country": "XX"})
    record = {"externalId": "c-1", "firstName": "A", "lastName": "B", "addresses": [address]}
    assert not semantics._passes(customers.record)(record, DEFAULT_REFERENCE_TYPES)
    found = semantics.semantic_error(customers, record, DEFAULT_REFERENCE_TYPES)
    assert found is not None and found[1] == "addresses.0.country"
    assert semantics.semantic_error(customers, MappingProxyType(record), {}) is not None
