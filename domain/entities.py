"""Entity definitions: data files, not code branches.

An entity is two files under ``schemas/entities/``: ``<name>.avsc``, the Avro record schema (field
names and types, nullability, defaults), and ``<name>.rules.json``, the rules a schema cannot
express. Adding an entity means adding those two files; no Python changes.

The rules vocabulary. A *record rule* is ``{"label"?, "fields": {field name: field rule}}``; the
top level of a rules file is a record rule plus ``"key"`` (the entity's key field) and
``"text": {"forbiddenCodePoints": ["U+0000", "U+D800-U+DFFF", ...]}`` (code points no string of
the entity may hold; at least those PostgreSQL and UTF-8 cannot, see :mod:`domain.text`). A
*field rule* is a value rule plus ``"required": true``. A *value rule* may hold, by the value's
Avro type:

- string: ``minLength``, ``maxLength`` (characters), ``format`` (one of :data:`FORMATS`) —
  checked synchronously; ``reference`` (name of a tenant reference set, else
  ``InvalidReference``), ``codeList`` (one of :data:`CODE_LISTS`, else ``InvalidValue``),
  ``calendarDate: true`` (a real date, else ``InvalidValue``) — semantic checks, run
  asynchronously. Every string needs ``maxLength`` or a ``format``: nothing is unbounded;
- double / float / int / long: ``minimum``, ``maximum``. Whatever the rules say, a value must
  also fit its Avro type (and so its column): a double is finite and an integer given for it lies
  within ±2^53 (beyond, a double cannot hold it exactly); an int fits 32 bits, a long 64;
- array: ``maxItems``, ``items`` (the value rule of each item);
- record (array items): ``label`` (how messages name it, e.g. ``"address"``), ``fields``.

Keys starting with ``$`` are comments. Anything else is a mistake and fails loading, as does a
rule that does not fit its field's type or names a field the schema lacks.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from fastavro import parse_schema
from fastavro.schema import SchemaParseException

from domain.errors import BulkIngestError, ErrorCode, InvalidInput
from domain.reference_data import ISO_3166_1_ALPHA_2, ISO_4217_CURRENCIES
from domain.text import (
    UNSTORABLE,
    CodePointSyntaxError,
    ForbiddenCharacters,
    covers,
    parse_code_points,
)

DEFAULT_REFERENCE_TYPES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "address_types": frozenset({"home", "work", "billing", "shipping"}),
        "date_types": frozenset({"birthday", "anniversary"}),
    }
)
"""The reference sets a new tenant starts with; the storage layer seeds them per tenant."""


class EntityDefinitionError(BulkIngestError):
    """An entity's schema or rules file is missing, malformed or inconsistent."""


class ValueKind(StrEnum):
    """The JSON shape a value must have, derived from its Avro type."""

    STRING = "string"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    ARRAY = "array"
    RECORD = "record"


@dataclass(frozen=True)
class Format:
    """A named syntax a string must match; ``expected`` completes "expected ..." in messages.

    ``check``, when set, is a further test the whole value must pass (for rules a regular
    expression cannot say, such as Unicode categories). ``printable_ascii``: the pattern matches
    printable ASCII only (U+0020-U+007E), so no entity's forbidden code point can pass it.
    """

    name: str
    pattern: re.Pattern[str]
    expected: str
    check: Callable[[str], bool] | None = None
    printable_ascii: bool = False

    def matches(self, value: str) -> bool:
        if not self.pattern.fullmatch(value):
            return False
        return self.check is None or self.check(value)


INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _visible(value: str) -> bool:
    """No control, format (zero-width, bidi, BOM), private-use, unassigned or line separators."""
    return value.isascii() or not any(
        unicodedata.category(char) in INVISIBLE_CATEGORIES for char in value
    )


@dataclass(frozen=True)
class CodeList:
    """A fixed set of codes; ``description`` completes "XX is not ..." in messages."""

    name: str
    codes: frozenset[str] = dataclasses.field(repr=False)
    description: str = ""


_EMAIL_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"

FORMATS: Mapping[str, Format] = MappingProxyType(
    {
        "email": Format(
            "email",
            # The WHATWG (HTML) e-mail syntax, with at least one dot in the domain.
            re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{_EMAIL_LABEL}(?:\.{_EMAIL_LABEL})+"),
            "an email address like name@example.com",
            printable_ascii=True,
        ),
        "phone": Format(
            "phone",
            re.compile(r"(?=[^0-9]*[0-9])[0-9 +\-().]+"),
            "digits, spaces and + - ( ) .",
            printable_ascii=True,
        ),
        "country2": Format(
            "country2", re.compile(r"[A-Z]{2}"), "two capital letters like US", printable_ascii=True
        ),
        "currency3": Format(
            "currency3",
            re.compile(r"[A-Z]{3}"),
            "three capital letters like EUR",
            printable_ascii=True,
        ),
        "date": Format(
            "date",
            re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
            "a date as YYYY-MM-DD",
            printable_ascii=True,
        ),
        "key": Format(
            "key",
            re.compile(r"[^\x00-\x1f\x7f]+"),
            "visible characters only (no control, zero-width or other invisible characters)",
            _visible,
        ),
    }
)
"""Formats a rules file may name; a value must match the whole pattern."""

CODE_LISTS: Mapping[str, CodeList] = MappingProxyType(
    {
        "iso3166-1-alpha-2": CodeList(
            "iso3166-1-alpha-2", ISO_3166_1_ALPHA_2, "an ISO 3166-1 country code"
        ),
        "iso4217": CodeList("iso4217", ISO_4217_CURRENCIES, "an ISO 4217 currency code"),
    }
)
"""Code lists a rules file may name."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class ValueSpec:
    """What a value must look like: its Avro-derived shape plus the rules that apply to it."""

    kind: ValueKind
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    format: Format | None = None
    minimum: float | None = None
    maximum: float | None = None
    integer_bits: int | None = None
    """INTEGER values: the width of the Avro type (32 for int, 64 for long)."""
    forbidden: ForbiddenCharacters | None = None
    """STRING values: code points the entity's strings may not hold."""
    max_items: int | None = None
    reference: str | None = None
    code_list: CodeList | None = None
    calendar_date: bool = False
    label: str = ""
    items: ValueSpec | None = None
    fields: tuple[FieldSpec, ...] = ()
    field_names: frozenset[str] = frozenset()
    has_semantics: bool = False
    """Whether this value or anything inside it has a semantic rule (lets workers skip it)."""


@dataclass(frozen=True)
class FieldSpec:
    """One field of a record; ``default`` is the Avro default (``None`` when there is none)."""

    name: str
    value: ValueSpec
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class EntityDefinition:
    """One entity: its Avro schema, its key field and the specs validation walks."""

    name: str
    key_field: str
    avro_schema: dict[str, Any]
    record: ValueSpec
    rules: Mapping[str, Any]
    forbidden: ForbiddenCharacters = dataclasses.field(
        default_factory=lambda: ForbiddenCharacters(UNSTORABLE)
    )

    @property
    def fields(self) -> tuple[FieldSpec, ...]:
        """The top-level fields in schema order."""
        return self.record.fields

    @property
    def label(self) -> str:
        """How messages name one record, e.g. ``Customer``."""
        return self.record.label


class EntityRegistry:
    """Every entity the service knows, by name (``customers``, ``products``, ...)."""

    def __init__(self, definitions: Iterable[EntityDefinition]) -> None:
        self._by_name = {definition.name: definition for definition in definitions}

    @classmethod
    def load(cls, schemas_dir: Path) -> EntityRegistry:
        """Load every ``entities/<name>.avsc`` with its ``<name>.rules.json``."""
        schema_paths = sorted((schemas_dir / "entities").glob("*.avsc"))
        if not schema_paths:
            raise EntityDefinitionError(f"no entity schemas in {schemas_dir / 'entities'}")
        return cls(load_entity(path) for path in schema_paths)

    def get(self, name: str) -> EntityDefinition:
        """The definition of ``name``; an ``UnknownEntity`` :class:`InvalidInput` otherwise."""
        definition = self._by_name.get(name)
        if definition is None:
            raise InvalidInput.single(
                ErrorCode.UnknownEntity,
                f"Unknown entity '{name}'; known entities: {', '.join(self.names())}",
            )
        return definition

    def names(self) -> tuple[str, ...]:
        """Entity names in alphabetical order."""
        return tuple(sorted(self._by_name))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


def default_schemas_dir() -> Path:
    """The repository's ``schemas/`` folder."""
    return Path(__file__).resolve().parent.parent / "schemas"


def load_entity(schema_path: Path) -> EntityDefinition:
    """Load ``<name>.avsc`` and the ``<name>.rules.json`` beside it as entity ``<name>``."""
    name = schema_path.name.removesuffix(".avsc")
    raw_schema = _read_json(schema_path)
    rules = _read_json(schema_path.with_name(f"{name}.rules.json"))
    try:
        parsed = parse_schema(raw_schema)
    except (SchemaParseException, KeyError, TypeError, ValueError) as exc:
        raise EntityDefinitionError(f"{schema_path}: not a valid Avro schema: {exc}") from exc
    if not isinstance(parsed, dict):
        raise EntityDefinitionError(f"{schema_path}: an entity schema must be a record")
    forbidden = _forbidden_characters(rules.get("text"), name)
    record_rule = {key: value for key, value in rules.items() if key not in ("key", "text")}
    record = _value_spec(raw_schema, record_rule, name, _Context(forbidden))
    if record.kind is not ValueKind.RECORD:
        raise EntityDefinitionError(f"{schema_path}: an entity schema must be a record")
    key_field = _key_field(record, rules.get("key"), name)
    return EntityDefinition(name, key_field, parsed, record, MappingProxyType(rules), forbidden)


def _forbidden_characters(text_rule: object, where: str) -> ForbiddenCharacters:
    if not isinstance(text_rule, Mapping) or not isinstance(
        text_rule.get("forbiddenCodePoints"), list
    ):
        raise EntityDefinitionError(
            f'{where}: the rules need "text": {{"forbiddenCodePoints": [...]}}'
        )
    unknown = [k for k in text_rule if k != "forbiddenCodePoints" and not str(k).startswith("$")]
    if unknown:
        raise EntityDefinitionError(f"{where}: unknown text rules {unknown}")
    try:
        ranges = tuple(parse_code_points(str(s)) for s in text_rule["forbiddenCodePoints"])
    except CodePointSyntaxError as exc:
        raise EntityDefinitionError(f"{where}: forbiddenCodePoints: {exc}") from exc
    if not covers(ranges, UNSTORABLE):
        raise EntityDefinitionError(
            f"{where}: forbiddenCodePoints must include U+0000 and U+D800-U+DFFF, which "
            "PostgreSQL and UTF-8 cannot hold"
        )
    return ForbiddenCharacters(ranges)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EntityDefinitionError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise EntityDefinitionError(f"{path}: expected a JSON object")
    return loaded


def _key_field(record: ValueSpec, key: object, where: str) -> str:
    by_name = {field.name: field for field in record.fields}
    field = by_name.get(key) if isinstance(key, str) else None
    if field is None or not field.required or field.value.kind is not ValueKind.STRING:
        raise EntityDefinitionError(f"{where}: 'key' must name a required string field")
    return field.name


# --- building specs from an Avro type and a rule -------------------------------------------------

_PRIMITIVE_KINDS = {
    "string": ValueKind.STRING,
    "double": ValueKind.NUMBER,
    "float": ValueKind.NUMBER,
    "int": ValueKind.INTEGER,
    "long": ValueKind.INTEGER,
    "boolean": ValueKind.BOOLEAN,
}

_RULE_KEYS: Mapping[ValueKind, frozenset[str]] = {
    ValueKind.STRING: frozenset(
        {"minLength", "maxLength", "format", "reference", "codeList", "calendarDate"}
    ),
    ValueKind.NUMBER: frozenset({"minimum", "maximum"}),
    ValueKind.INTEGER: frozenset({"minimum", "maximum"}),
    ValueKind.BOOLEAN: frozenset(),
    ValueKind.ARRAY: frozenset({"maxItems", "items"}),
    ValueKind.RECORD: frozenset({"label", "fields"}),
}

_RULE_TYPES: Mapping[str, type | tuple[type, ...]] = {
    "required": bool,
    "minLength": int,
    "maxLength": int,
    "maxItems": int,
    "minimum": (int, float),
    "maximum": (int, float),
    "format": str,
    "reference": str,
    "codeList": str,
    "calendarDate": bool,
    "label": str,
    "items": dict,
    "fields": dict,
}


@dataclass
class _Context:
    """What building the specs of one entity shares: its text rule and the named records seen."""

    forbidden: ForbiddenCharacters
    named: dict[str, Any] = dataclasses.field(default_factory=dict)


_INTEGER_BITS = {"int": 32, "long": 64}


def _value_spec(
    avro_type: Any, rule: Mapping[str, Any], where: str, context: _Context
) -> ValueSpec:
    nullable, avro_type = _without_null(avro_type, where)
    if isinstance(avro_type, str):  # a primitive, or a reference to a record defined earlier
        avro_type = context.named.get(_short_name(avro_type), avro_type)
    kind = _kind(avro_type, where)
    _check_rule(rule, kind, where)
    if kind is ValueKind.STRING and "maxLength" not in rule and "format" not in rule:
        raise EntityDefinitionError(f"{where}: a string needs maxLength or a format")
    if kind is ValueKind.RECORD:
        context.named[_short_name(avro_type["name"])] = avro_type
    fields = _field_specs(avro_type, rule, where, context) if kind is ValueKind.RECORD else ()
    items = None
    if kind is ValueKind.ARRAY:
        items = _value_spec(avro_type["items"], rule.get("items", {}), f"{where}.items", context)
    type_name = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    has_semantics = any(rule.get(key) for key in ("reference", "codeList", "calendarDate"))
    has_semantics |= items is not None and items.has_semantics
    has_semantics |= any(field.value.has_semantics for field in fields)
    return ValueSpec(
        kind=kind,
        nullable=nullable,
        min_length=rule.get("minLength"),
        max_length=rule.get("maxLength"),
        format=_lookup(FORMATS, rule.get("format"), "format", where),
        minimum=rule.get("minimum"),
        maximum=rule.get("maximum"),
        integer_bits=_INTEGER_BITS.get(str(type_name)) if kind is ValueKind.INTEGER else None,
        forbidden=context.forbidden if kind is ValueKind.STRING else None,
        max_items=rule.get("maxItems"),
        reference=rule.get("reference"),
        code_list=_lookup(CODE_LISTS, rule.get("codeList"), "codeList", where),
        calendar_date=rule.get("calendarDate", False),
        label=rule.get("label", _short_name(avro_type["name"]) if kind is ValueKind.RECORD else ""),
        items=items,
        fields=fields,
        field_names=frozenset(field.name for field in fields),
        has_semantics=has_semantics,
    )


def _short_name(avro_name: str) -> str:
    """Named types are looked up by short name: one entity file is one namespace."""
    return avro_name.rpartition(".")[2]


def _without_null(avro_type: Any, where: str) -> tuple[bool, Any]:
    """Split ``["null", T]`` into (nullable, T); other unions are not supported."""
    if not isinstance(avro_type, list):
        return False, avro_type
    branches = [branch for branch in avro_type if branch != "null"]
    if len(branches) != 1:
        raise EntityDefinitionError(f"{where}: only unions of null and one type are supported")
    return len(avro_type) == 2, branches[0]


def _kind(avro_type: Any, where: str) -> ValueKind:
    type_name = avro_type.get("type") if isinstance(avro_type, dict) else avro_type
    if isinstance(type_name, dict | list):
        raise EntityDefinitionError(f"{where}: nest types under a field, not inside 'type'")
    if type_name in _PRIMITIVE_KINDS:
        return _PRIMITIVE_KINDS[type_name]
    if type_name in ("array", "record"):
        return ValueKind(type_name)
    raise EntityDefinitionError(f"{where}: Avro type {type_name!r} is not supported")


def _check_rule(rule: Mapping[str, Any], kind: ValueKind, where: str) -> None:
    for key, value in rule.items():
        if key.startswith("$"):
            continue
        if key not in _RULE_KEYS[kind]:
            raise EntityDefinitionError(f"{where}: rule '{key}' does not apply to a {kind} value")
        expected = _RULE_TYPES[key]
        if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected):
            raise EntityDefinitionError(f"{where}: rule '{key}' has the wrong type: {value!r}")


def _field_specs(
    avro_record: Mapping[str, Any], rule: Mapping[str, Any], where: str, context: _Context
) -> tuple[FieldSpec, ...]:
    field_rules: Mapping[str, Any] = rule.get("fields", {})
    avro_fields = avro_record["fields"]
    unknown = set(field_rules) - {field["name"] for field in avro_fields}
    if unknown:
        raise EntityDefinitionError(f"{where}: rules name fields the schema lacks: {unknown}")
    return tuple(
        _field_spec(field, field_rules.get(field["name"], {}), f"{where}.{field['name']}", context)
        for field in avro_fields
    )


def _field_spec(
    avro_field: Mapping[str, Any], rule: Mapping[str, Any], where: str, context: _Context
) -> FieldSpec:
    if not isinstance(rule, Mapping):
        raise EntityDefinitionError(f"{where}: a field rule must be an object")
    required = rule.get("required", False)
    value_rule = {key: value for key, value in rule.items() if key != "required"}
    value = _value_spec(avro_field["type"], value_rule, where, context)
    if not isinstance(required, bool):
        raise EntityDefinitionError(f"{where}: 'required' must be true or false")
    if not (required or value.nullable or "default" in avro_field):
        raise EntityDefinitionError(f"{where}: must be required, nullable or have a default")
    return FieldSpec(avro_field["name"], value, required, avro_field.get("default"))


def _lookup(table: Mapping[str, _T], name: str | None, rule: str, where: str) -> _T | None:
    if name is None:
        return None
    if name not in table:
        raise EntityDefinitionError(f"{where}: unknown {rule} '{name}'; known: {sorted(table)}")
    return table[name]
