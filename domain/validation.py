"""Validation of bulk requests and records against entity definitions.

Two stages, both driven only by :class:`~domain.entities.EntityDefinition` data:

- **basic** (synchronous, at the gateway): request shape, limits, required fields, types, lengths,
  formats, unknown fields, operation, webhook URL syntax. :func:`validate_bulk_request` collects
  every error (first encountered first, at most 100) and raises one
  :class:`~domain.errors.InvalidInput`.
- **semantic** (asynchronous, in the stream workers): reference sets, code lists, calendar dates.
  :func:`semantic_error` returns the first failure of one record. Records that never went through
  the gateway (Kafka producers) are checked with :func:`record_basic_failure` first.
"""

from __future__ import annotations

import copy
import datetime
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

from domain.entities import EntityDefinition, EntityRegistry, FieldSpec, ValueKind, ValueSpec
from domain.errors import MAX_ERRORS, ApiError, ErrorCode, InvalidInput

REQUEST_FIELDS = frozenset({"records", "operation", "webhook_url"})
MAX_WEBHOOK_URL_LENGTH = 2048


class Operation(StrEnum):
    """What a job does with each record."""

    INSERT = "insert"
    UPDATE = "update"
    UPSERT = "upsert"


@dataclass(frozen=True)
class BulkRequest:
    """A bulk request that passed basic validation; ``records`` are as submitted."""

    entity: str
    operation: Operation
    records: tuple[dict[str, Any], ...]
    webhook_url: str | None


SemanticError = tuple[ErrorCode, str, str]
"""(error code, field path, message) of a semantic failure."""


# --- requests -------------------------------------------------------------------------------------


def validate_bulk_request(
    registry: EntityRegistry,
    entity_name: str,
    body: object,
    *,
    max_records: int,
    default_operation: Operation,
    too_many_hint: str = "",
) -> BulkRequest:
    """Check an already-parsed JSON body; raise :class:`InvalidInput` with every error found.

    Records are checked only when the entity is known and their count is within ``max_records``.
    """
    errors: list[ApiError] = []
    definition = _collect(errors, lambda: registry.get(entity_name))
    if not isinstance(body, dict):
        errors.append(ApiError(ErrorCode.InvalidFieldType, _NOT_AN_OBJECT))
        raise InvalidInput(errors)
    errors.extend(_unknown_request_fields(body))
    records = _collect(
        errors, lambda: parse_records(body.get("records"), max_records, too_many_hint)
    )
    operation = _collect(errors, lambda: parse_operation(body.get("operation"), default_operation))
    webhook_url = _collect(errors, lambda: parse_webhook_url(body.get("webhook_url")))
    if definition is not None and records is not None:
        _collect_record_errors(errors, definition, records)
    if errors or definition is None or records is None or operation is None:
        raise InvalidInput(errors)
    return BulkRequest(definition.name, operation, records, webhook_url)


def invalid_json_error(detail: str) -> InvalidInput:
    """The error for a body that is not JSON at all; ``detail`` says where parsing stopped."""
    return InvalidInput.single(
        ErrorCode.InvalidJson, f"The request body is not valid JSON: {detail}"
    )


def parse_records(
    value: object, max_records: int, too_many_hint: str = ""
) -> tuple[dict[str, Any], ...]:
    """The ``records`` member: a non-empty array of at most ``max_records`` items."""
    if value is None or value == []:
        raise InvalidInput.single(ErrorCode.EmptyRequest, _EMPTY, field="records")
    if not isinstance(value, list):
        message = f"The records member must be an array, got {_json_type(value)}"
        raise InvalidInput.single(ErrorCode.InvalidFieldType, message, field="records")
    if len(value) > max_records:
        message = f"The request has {len(value)} records; at most {max_records} are allowed here"
        message += f"; {too_many_hint}" if too_many_hint else ""
        raise InvalidInput.single(ErrorCode.MaxRecordsExceeded, message, field="records")
    return tuple(value)


def parse_operation(value: object, default: Operation) -> Operation:
    """The ``operation`` member; absent or null means ``default``."""
    if value is None:
        return default
    if isinstance(value, str) and value in _OPERATIONS:
        return Operation(value)
    choices = ", ".join(operation.value for operation in Operation)
    message = f"The operation must be one of {choices}, got {_shown(value)}"
    raise InvalidInput.single(ErrorCode.InvalidOperation, message, field="operation")


def parse_webhook_url(value: object) -> str | None:
    """The ``webhook_url`` member: an http(s) URL with a host and no credentials, or null.

    Only syntax is checked here; where the host resolves to is the gateway's business.
    """
    if value is None:
        return None
    problem = _webhook_url_problem(value)
    if problem is not None:
        # The URL is not echoed: it may carry credentials.
        message = f"The webhook_url is not usable: {problem}"
        raise InvalidInput.single(ErrorCode.InvalidWebhookUrl, message, field="webhook_url")
    assert isinstance(value, str)  # _webhook_url_problem says so
    return value


_OPERATIONS = frozenset(operation.value for operation in Operation)
_NOT_AN_OBJECT = 'The request body must be a JSON object like {"records": [...]}'
_EMPTY = "The request has no records: send records as a non-empty array"


_R = TypeVar("_R")


def _collect(errors: list[ApiError], parse: Callable[[], _R]) -> _R | None:
    """Run one parse step; its :class:`InvalidInput` errors join ``errors`` instead of raising."""
    try:
        return parse()
    except InvalidInput as exc:
        errors.extend(exc.errors)
        return None


def _unknown_request_fields(body: Mapping[str, Any]) -> list[ApiError]:
    return [
        ApiError(ErrorCode.UnknownField, f"The request has an unknown field {name}", field=name)
        for name in body
        if name not in REQUEST_FIELDS
    ]


def _collect_record_errors(
    errors: list[ApiError], definition: EntityDefinition, records: tuple[object, ...]
) -> None:
    for index, record in enumerate(records):
        if len(errors) >= MAX_ERRORS:
            return
        errors.extend(basic_record_errors(definition, record, index))


def _webhook_url_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {_json_type(value)}"
    if len(value) > MAX_WEBHOOK_URL_LENGTH:
        return f"longer than {MAX_WEBHOOK_URL_LENGTH} characters"
    if any(char.isspace() or not char.isprintable() for char in value):
        return "it contains spaces or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "it has no host"
    if "@" in parts.netloc:
        return "credentials in the URL are not allowed"
    return None


# --- basic record checks -------------------------------------------------------------------------


def basic_record_errors(definition: EntityDefinition, record: object, index: int) -> list[ApiError]:
    """Every basic error of one record, in field order; empty when the record is fine.

    A fast yes/no check (:func:`_passes`, compiled once per entity) answers for the common
    valid record; only a record it refuses is walked again to say what is wrong and where.
    """
    if isinstance(record, dict) and _passes(definition.record)(record):
        return []
    findings = _Findings(f"{definition.label} at index {index}", index)
    if isinstance(record, dict):
        _check_record(definition.record, record, "", findings)
    else:
        findings.add(ErrorCode.InvalidFieldType, "", f"must be an object, got {_json_type(record)}")
    return findings.errors


def record_basic_failure(
    definition: EntityDefinition, record: object, index: int
) -> ApiError | None:
    """The first basic error of one record, or ``None``."""
    errors = basic_record_errors(definition, record, index)
    return errors[0] if errors else None


class _Findings:
    """Errors found in one record, with the words that name the record in messages."""

    def __init__(self, subject: str, index: int) -> None:
        self.subject = subject
        self.index = index
        self.errors: list[ApiError] = []

    def add(self, code: ErrorCode, path: str, text: str) -> None:
        message = f"{self.subject} {text}"
        self.errors.append(ApiError(code, message, index=self.index, field=path or None))


def _check_record(
    spec: ValueSpec, record: Mapping[str, Any], prefix: str, findings: _Findings
) -> None:
    for field in spec.fields:
        value = record.get(field.name)
        if value is None or value == "":
            if field.required:
                path = prefix + field.name
                findings.add(ErrorCode.MissingRequiredField, path, f"is missing {path}")
            continue
        _check_value(field.value, value, prefix + field.name, findings)
    if not record.keys() <= spec.field_names:
        for name in [name for name in record if name not in spec.field_names]:
            path = prefix + str(name)
            findings.add(ErrorCode.UnknownField, path, f"has an unknown field {path}")


def _check_value(spec: ValueSpec, value: Any, path: str, findings: _Findings) -> None:
    if spec.kind is ValueKind.STRING and isinstance(value, str):  # the common case, first
        _check_string(spec, value, path, findings)
    elif not _HAS_KIND[spec.kind](value):
        expected = _EXPECTED[spec.kind]
        text = f"has the wrong type for {path}: expected {expected}, got {_json_type(value)}"
        findings.add(ErrorCode.InvalidFieldType, path, text)
    elif spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        _check_number(spec, value, path, findings)
    elif spec.kind is ValueKind.ARRAY:
        _check_array(spec, value, path, findings)
    elif spec.kind is ValueKind.RECORD:
        _check_record(spec, value, f"{path}.", findings)


def _check_string(spec: ValueSpec, value: Any, path: str, findings: _Findings) -> None:
    problem = None
    forbidden = spec.forbidden.first(value) if spec.forbidden is not None else None
    if forbidden is not None:
        problem = f"it holds {forbidden}, a character that cannot be stored"
    elif spec.min_length is not None and len(value) < spec.min_length:
        problem = f"at least {_characters(spec.min_length)} required, got {len(value)}"
    elif spec.max_length is not None and len(value) > spec.max_length:
        problem = f"at most {_characters(spec.max_length)} allowed, got {len(value)}"
    elif spec.format is not None and not spec.format.matches(value):
        problem = f"{_shown(value)}, expected {spec.format.expected}"
    if problem is not None:
        findings.add(ErrorCode.InvalidFormat, path, f"has an invalid {path}: {problem}")


MAX_EXACT_INTEGER = 2**53
"""The largest magnitude an integer may have to be held exactly by a double."""


def _check_number(spec: ValueSpec, value: Any, path: str, findings: _Findings) -> None:
    problem = _type_range_problem(spec, value)
    if problem is None and spec.minimum is not None and value < spec.minimum:
        problem = f"must be at least {_shown_number(spec.minimum)}, got {_shown_number(value)}"
    elif problem is None and spec.maximum is not None and value > spec.maximum:
        problem = f"must be at most {_shown_number(spec.maximum)}, got {_shown_number(value)}"
    if problem is not None:
        findings.add(ErrorCode.InvalidValue, path, f"has an invalid {path}: {problem}")


def _type_range_problem(spec: ValueSpec, value: int | float) -> str | None:
    """What keeps ``value`` out of its Avro type (and column), if anything."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"must be a finite number, got {value}"
        return None
    if spec.kind is ValueKind.NUMBER and abs(value) > MAX_EXACT_INTEGER:
        shown = _shown_number(value)
        return f"{shown} is too large to be stored exactly (at most 2^53 in magnitude)"
    bits = spec.integer_bits
    if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        return f"{_shown_number(value)} does not fit a {bits}-bit integer"
    return None


def _digits(value: int) -> str:
    try:
        return str(len(str(abs(value))))
    except ValueError:  # beyond Python's digit limit for conversions: an estimate will do
        return f"about {int(value.bit_length() * math.log10(2)) + 1}"


def _shown_number(value: int | float) -> str:
    """A number for a message; huge integers by their size, not their 400 digits."""
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"an integer of {_digits(value)} digits"
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**16:
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_array(spec: ValueSpec, value: Any, path: str, findings: _Findings) -> None:
    if spec.max_items is not None and len(value) > spec.max_items:
        text = f"has too many {path}: at most {spec.max_items} allowed, got {len(value)}"
        findings.add(ErrorCode.InvalidFormat, path, text)
    assert spec.items is not None  # every array spec has one
    for position, item in enumerate(value):
        _check_value(spec.items, item, f"{path}.{position}", findings)


# --- the fast check: the same rules as above, as one yes/no closure per spec ----------------------

Check = Callable[[Any], bool]


_COMPILED: dict[int, tuple[ValueSpec, Check]] = {}


def _passes(spec: ValueSpec) -> Check:
    """Whether a value passes every basic rule of ``spec`` (no messages; the hot path).

    Compiled once per spec, looked up by identity: hashing a spec (a tree of frozen
    dataclasses) on every call would cost more than the check.
    """
    compiled = _COMPILED.get(id(spec))
    if compiled is None:
        compiled = _COMPILED[id(spec)] = (spec, _compile(spec))  # the spec is kept alive
    return compiled[1]


def _compile(spec: ValueSpec) -> Check:
    if spec.kind is ValueKind.STRING:
        return _string_passes(spec)
    if spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return _number_passes(spec)
    if spec.kind is ValueKind.BOOLEAN:
        return lambda value: value is True or value is False
    if spec.kind is ValueKind.ARRAY:
        return _array_passes(spec)
    return _record_passes(spec)


def _string_passes(spec: ValueSpec) -> Check:
    low = spec.min_length or 0
    high = spec.max_length if spec.max_length is not None else sys.maxsize
    forbidden = spec.forbidden.first if spec.forbidden is not None else _nothing
    if spec.format is None:
        matches: Callable[[str], Any] = _anything
    elif spec.format.check is None:
        matches = spec.format.pattern.fullmatch
    else:
        matches = spec.format.matches
    nul_only = spec.forbidden is not None and spec.forbidden.ascii_chars == ("\x00",)

    def passes(value: Any) -> bool:
        if value.__class__ is not str or not low <= len(value) <= high:
            return False
        if nul_only and value.isascii():  # the usual case, without a call
            if "\x00" in value:
                return False
        elif forbidden(value) is not None:
            return False
        return bool(matches(value))

    return passes


def _nothing(value: str) -> None:
    return None


def _anything(value: str) -> bool:
    return True


def _number_passes(spec: ValueSpec) -> Check:
    integer = spec.kind is ValueKind.INTEGER

    def passes(value: Any) -> bool:
        kind = value.__class__
        if kind is not int and (integer or kind is not float):
            return False
        if _type_range_problem(spec, value) is not None:
            return False
        if spec.minimum is not None and value < spec.minimum:
            return False
        return spec.maximum is None or value <= spec.maximum

    return passes


def _array_passes(spec: ValueSpec) -> Check:
    assert spec.items is not None
    item_passes = _passes(spec.items)
    most = spec.max_items if spec.max_items is not None else sys.maxsize

    def passes(value: Any) -> bool:
        if value.__class__ is not list or len(value) > most:
            return False
        return all(item_passes(item) for item in value)

    return passes


def _record_passes(spec: ValueSpec) -> Check:
    fields = [(f.name, f.required, _passes(f.value)) for f in spec.fields]
    names = spec.field_names

    def passes(value: Any) -> bool:
        if value.__class__ is not dict:
            return False
        for name, required, field_passes in fields:
            item = value.get(name)
            if item is None or item == "":
                if required:
                    return False
                continue
            if not field_passes(item):
                return False
        return value.keys() <= names

    return passes


def _characters(count: int) -> str:
    return f"{count} character" if count == 1 else f"{count} characters"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_HAS_KIND: Mapping[ValueKind, Callable[[object], bool]] = {
    ValueKind.STRING: lambda value: isinstance(value, str),
    ValueKind.NUMBER: _is_number,
    ValueKind.INTEGER: _is_integer,
    ValueKind.BOOLEAN: lambda value: isinstance(value, bool),
    ValueKind.ARRAY: lambda value: isinstance(value, list),
    ValueKind.RECORD: lambda value: isinstance(value, dict),
}

_EXPECTED: Mapping[ValueKind, str] = {
    ValueKind.STRING: "a string",
    ValueKind.NUMBER: "a number",
    ValueKind.INTEGER: "an integer",
    ValueKind.BOOLEAN: "true or false",
    ValueKind.ARRAY: "an array",
    ValueKind.RECORD: "an object",
}


def _json_type(value: object) -> str:
    """How a JSON user would name the type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: object, limit: int = 60) -> str:
    """``value`` quoted for a message, cut short when long."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text) if isinstance(value, str) else text


# --- semantic checks -----------------------------------------------------------------------------


def semantic_error(
    definition: EntityDefinition,
    record: Mapping[str, Any],
    reference_types: Mapping[str, frozenset[str]],
) -> SemanticError | None:
    """The first semantic failure of one record as (code, field path, message), or ``None``.

    Values of the wrong type are skipped, not reported: they are basic errors.
    """
    if not isinstance(record, Mapping):
        return None
    context = _SemanticContext(definition.label, reference_types)
    return _record_semantics(definition.record, record, "", definition.label, context)


class _SemanticContext(NamedTuple):
    entity_label: str
    reference_types: Mapping[str, frozenset[str]]


def _record_semantics(
    spec: ValueSpec, record: Mapping[str, Any], prefix: str, owner: str, context: _SemanticContext
) -> SemanticError | None:
    """``owner`` names the record in messages: ``Customer``, ``Customer address``."""
    for field in spec.fields:
        value = record.get(field.name)
        if value is None or not field.value.has_semantics:
            continue
        where = _Where(prefix + field.name, owner, field.name)
        problem = _value_semantics(field.value, value, where, context)
        if problem is not None:
            return problem
    return None


class _Where(NamedTuple):
    """Where a value sits: its field path, and the words that name it in messages."""

    path: str
    owner: str
    name: str

    def item(self, position: int) -> _Where:
        return _Where(f"{self.path}.{position}", self.owner, self.name)


def _value_semantics(
    spec: ValueSpec, value: object, where: _Where, context: _SemanticContext
) -> SemanticError | None:
    if spec.kind is ValueKind.STRING and isinstance(value, str):
        return _string_semantics(spec, value, where, context)
    if spec.kind is ValueKind.RECORD and isinstance(value, Mapping):
        owner = f"{context.entity_label} {spec.label}"
        return _record_semantics(spec, value, f"{where.path}.", owner, context)
    if spec.kind is ValueKind.ARRAY and isinstance(value, list) and spec.items is not None:
        for position, item in enumerate(value):
            problem = _value_semantics(spec.items, item, where.item(position), context)
            if problem is not None:
                return problem
    return None


def _string_semantics(
    spec: ValueSpec, value: str, where: _Where, context: _SemanticContext
) -> SemanticError | None:
    if spec.reference is not None:
        allowed = context.reference_types.get(spec.reference, frozenset())
        if value not in allowed:
            choices = ", ".join(sorted(allowed)) or f"(no {spec.reference} are defined)"
            message = f"{where.owner} {where.name} {_shown(value)} is not one of {choices}"
            return ErrorCode.InvalidReference, where.path, message
    if spec.code_list is not None and value not in spec.code_list.codes:
        return ErrorCode.InvalidValue, where.path, f"{value} is not {spec.code_list.description}"
    if spec.calendar_date and not _is_calendar_date(value):
        return ErrorCode.InvalidValue, where.path, f"{value} is not a real calendar date"
    return None


def _is_calendar_date(value: str) -> bool:
    """True for ``YYYY-MM-DD`` naming a day that exists (2024-02-29 yes, 2023-02-30 no)."""
    if len(value) != 10 or not value.isascii() or value[4] != "-" or value[7] != "-":
        return False
    year, month, day = value[:4], value[5:7], value[8:]
    if not (year.isdigit() and month.isdigit() and day.isdigit()):
        return False
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


# --- records as the pipeline carries them -------------------------------------------------------


def to_avro_record(definition: EntityDefinition, record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every schema field present and defaults applied, ready for fastavro.

    Expects a record that passed basic validation; unknown fields are dropped.
    """
    return _avro_record(definition.record, record)


def record_key(definition: EntityDefinition, record: object) -> str:
    """The record's key (``externalId`` for customers); ``""`` when it has none."""
    value = record.get(definition.key_field) if isinstance(record, Mapping) else None
    return "" if value is None else str(value)


def _avro_record(spec: ValueSpec, record: Mapping[str, Any]) -> dict[str, Any]:
    return {field.name: _avro_field(field, record.get(field.name)) for field in spec.fields}


def _avro_field(field: FieldSpec, value: Any) -> Any:
    if value is None:
        default = field.default
        return copy.deepcopy(default) if isinstance(default, list | dict) else default
    if field.value.kind in _AS_IS:
        return value
    return _avro_value(field.value, value)


_AS_IS = frozenset({ValueKind.STRING, ValueKind.BOOLEAN, ValueKind.INTEGER})


def _avro_value(spec: ValueSpec, value: Any) -> Any:
    if spec.kind in _AS_IS:
        return value
    if spec.kind is ValueKind.NUMBER:
        return float(value)
    if spec.kind is ValueKind.ARRAY and spec.items is not None:
        items = spec.items
        return [_avro_value(items, item) for item in value]
    if spec.kind is ValueKind.RECORD:
        return _avro_record(spec, value)
    return value
