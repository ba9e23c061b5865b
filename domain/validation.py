"""Basic validation of records against entity definitions, and records as the pipeline carries them.

**Basic** checks (required fields, types, lengths, formats, unknown fields) are run at the gateway
for every record of a request (:mod:`domain.bulk_requests`) and, for records that never went
through it (Kafka producers), by the workers with :func:`record_basic_failure`. The fast check
is the same rules generated as Python source, one yes/no function per record spec with a
straight line of tests per field; only a record that fails it is walked again to say why.
``tests/unit/test_validation_fast_path.py`` checks that the two always agree. **Semantic**
checks are :mod:`domain.semantics`'s.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from domain.entities import EntityDefinition, FieldSpec, ValueKind, ValueSpec
from domain.errors import ApiError, ErrorCode


def basic_record_errors(definition: EntityDefinition, record: object, index: int) -> list[ApiError]:
    """Every basic error of one record, in field order; empty when the record is fine.

    A fast yes/no check (:func:`_passes`, compiled once per entity) answers for the common
    valid record; only a record it refuses is walked again to say what is wrong and where.
    """
    if basic_check(definition)(record):
        return []
    findings = _Findings(f"{definition.label} at index {index}", index)
    if isinstance(record, dict):
        _check_record(definition.record, record, "", findings)
    else:
        findings.add(
            ErrorCode.InvalidFieldType, "", f"must be an object, got {json_type_of(record)}"
        )
    return findings.errors


def basic_check(definition: EntityDefinition) -> Check:
    """Whether a record passes every basic rule of ``definition``: the yes/no check, compiled
    once per entity, that :func:`basic_record_errors` asks first (for loops over many records)."""
    return _passes(definition.record)


def value_errors(spec: ValueSpec, value: Any, path: str, subject: str) -> list[ApiError]:
    """Every basic error of one value held at ``path`` (as in a record); ``subject`` starts each
    message (``The default for email``)."""
    findings = _Findings(subject, 0)
    _check_value(spec, value, path, findings)
    return [ApiError(e.error_code, e.message, field=e.field) for e in findings.errors]


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
        if value is None or (value == "" and _empty_is_absent(field)):
            if field.required:
                path = prefix + field.name
                findings.add(ErrorCode.MissingRequiredField, path, f"is missing {path}")
            continue
        _check_value(field.value, value, prefix + field.name, findings)
    if not record.keys() <= spec.field_names:
        for name in [name for name in record if name not in spec.field_names]:
            path = prefix + str(name)
            findings.add(ErrorCode.UnknownField, path, f"has an unknown field {path}")


def _empty_is_absent(field: FieldSpec) -> bool:
    """``""`` counts as not given for a text field, and as missing for a required one; for an
    optional number, boolean or array it is a value of the wrong type."""
    return field.required or field.value.kind is ValueKind.STRING


def _check_value(spec: ValueSpec, value: Any, path: str, findings: _Findings) -> None:
    if spec.kind is ValueKind.STRING and isinstance(value, str):  # the common case, first
        _check_string(spec, value, path, findings)
    elif not _HAS_KIND[spec.kind](value):
        expected = _EXPECTED[spec.kind]
        text = f"has the wrong type for {path}: expected {expected}, got {json_type_of(value)}"
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
        problem = f"{shown_value(value)}, expected {spec.format.expected}"
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


Check = Callable[[Any], bool]
_T = TypeVar("_T")


def _per_spec(
    cache: dict[int, tuple[ValueSpec, _T]], spec: ValueSpec, build: Callable[[ValueSpec], _T]
) -> _T:
    """``build(spec)``, computed once per spec and looked up by identity: hashing a spec (a
    tree of frozen dataclasses) on every call would cost more than what is cached. The spec is
    kept alive with its entry, so its id is never reused."""
    known = cache.get(id(spec))
    if known is None:
        known = cache[id(spec)] = (spec, build(spec))
    return known[1]


_COMPILED: dict[int, tuple[ValueSpec, Check]] = {}


def _passes(spec: ValueSpec) -> Check:
    """Whether a value passes every basic rule of ``spec`` (no messages; the hot path)."""
    return _per_spec(_COMPILED, spec, _compile)


def _compile(spec: ValueSpec) -> Check:
    if spec.kind is ValueKind.RECORD:
        return _record_passes(spec)
    namespace: dict[str, Any] = {}
    lines = _value_check_lines(spec, "", namespace)
    return _generated(["def passes(item):", *_indented(lines), "    return True"], spec, namespace)


def _record_passes(spec: ValueSpec) -> Check:
    """The record check as one generated function: a straight line of tests per field, with no
    call for a string, number or boolean field (a call per field was half its cost)."""
    namespace: dict[str, Any] = {"names": spec.field_names}
    lines = ["def passes(value):", "    if value.__class__ is not dict:", "        return False"]
    for position, field in enumerate(spec.fields):
        lines.append(f"    item = value.get({field.name!r})")
        empty = ' or item == ""' if _empty_is_absent(field) else ""
        lines.append(f"    if item is None{empty}:")
        lines.append("        return False" if field.required else "        pass")
        lines.append("    else:")
        lines += _indented(_value_check_lines(field.value, f"_{position}", namespace), 2)
    lines.append("    return value.keys() <= names")
    return _generated(lines, spec, namespace)


def _indented(lines: list[str], levels: int = 1) -> list[str]:
    return [" " * 4 * levels + line for line in lines or ["pass"]]


def _generated(lines: list[str], spec: ValueSpec, namespace: dict[str, Any]) -> Check:
    """The function ``passes`` that ``lines`` define, with ``namespace`` as its globals."""
    where = f"<basic validation of {spec.label or spec.kind.value}>"
    exec(compile("\n".join(lines) + "\n", where, "exec"), namespace)
    passes: Check = namespace["passes"]
    return passes


def _value_check_lines(spec: ValueSpec, suffix: str, namespace: dict[str, Any]) -> list[str]:
    """Lines that ``return False`` unless ``item`` passes ``spec`` (what ``_compile`` would
    build for it); names they need are put in ``namespace`` with ``suffix``."""
    if spec.kind is ValueKind.STRING:
        return _string_check_lines(spec, suffix, namespace)
    if spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return _number_check_lines(spec, suffix, namespace)
    if spec.kind is ValueKind.BOOLEAN:
        return ["if item is not True and item is not False:", "    return False"]
    if spec.kind is ValueKind.ARRAY:
        assert spec.items is not None  # every array spec has one
        namespace[f"check{suffix}"] = _passes(spec.items)
        most = spec.max_items if spec.max_items is not None else sys.maxsize
        return [
            f"if item.__class__ is not list or len(item) > {most}:",
            "    return False",
            "for element in item:",
            f"    if not check{suffix}(element):",
            "        return False",
        ]
    namespace[f"check{suffix}"] = _passes(spec)
    return [f"if not check{suffix}(item):", "    return False"]


def _string_check_lines(spec: ValueSpec, suffix: str, namespace: dict[str, Any]) -> list[str]:
    low = spec.min_length or 0
    high = spec.max_length if spec.max_length is not None else sys.maxsize
    lines = [
        f"if item.__class__ is not str or not {low} <= len(item) <= {high}:",
        "    return False",
    ]
    if spec.forbidden is not None:
        namespace[f"forbidden{suffix}"] = spec.forbidden.first
        if spec.forbidden.ascii_chars == ("\x00",):  # the usual case, without a call
            lines += ["if item.isascii():", '    if "\\x00" in item:', "        return False"]
            lines += [f"elif forbidden{suffix}(item) is not None:", "    return False"]
        else:
            lines += [f"if forbidden{suffix}(item) is not None:", "    return False"]
    if spec.format is not None:
        plain = spec.format.check is None
        matches = spec.format.pattern.fullmatch if plain else spec.format.matches
        namespace[f"matches{suffix}"] = matches
        lines += [f"if not matches{suffix}(item):", "    return False"]
    return lines


def _number_check_lines(spec: ValueSpec, suffix: str, namespace: dict[str, Any]) -> list[str]:
    """What :func:`_type_range_problem` and the range rules refuse, as tests on ``item``."""
    on_int = []
    if spec.kind is ValueKind.NUMBER:
        on_int += [f"    if abs(item) > {MAX_EXACT_INTEGER}:", "        return False"]
    if spec.integer_bits is not None:
        low, high = -(2 ** (spec.integer_bits - 1)), 2 ** (spec.integer_bits - 1)
        on_int += [f"    if not {low} <= item < {high}:", "        return False"]
    lines = ["kind = item.__class__", "if kind is int:", *(on_int or ["    pass"])]
    if spec.kind is ValueKind.NUMBER:
        namespace["isfinite"] = math.isfinite
        lines += ["elif kind is float:", "    if not isfinite(item):", "        return False"]
    lines += ["else:", "    return False"]
    if spec.minimum is not None:
        namespace[f"minimum{suffix}"] = spec.minimum
        lines += [f"if item < minimum{suffix}:", "    return False"]
    if spec.maximum is not None:
        namespace[f"maximum{suffix}"] = spec.maximum
        lines += [f"if item > maximum{suffix}:", "    return False"]
    return lines


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


def json_type_of(value: object) -> str:
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


def shown_value(value: object, limit: int = 60) -> str:
    """``value`` quoted for a message, cut short when long."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text) if isinstance(value, str) else text


def to_avro_record(definition: EntityDefinition, record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every schema field present and defaults applied, ready for fastavro.

    Expects a record that passed basic validation; unknown fields are dropped.
    """
    return _avro_record(definition.record, record)


def encodable_record(definition: EntityDefinition, record: Mapping[str, Any]) -> Mapping[str, Any]:
    """A validated record as the Avro encoder takes it: the record itself, unless a null must
    become a field's default (:func:`to_avro_record`, a copy).

    The encoder fills an absent field with its schema default and ignores nothing else a
    validated record can hold (no unknown fields; an integer where a double goes writes the same
    bytes), so the copy is needed only for a field that is not nullable but has a default and may
    arrive as ``null`` (a product's ``active``). Copying every record cost the gateway a quarter
    of its time before the ``202``.
    """
    if _needs_defaults(definition.record):
        return to_avro_record(definition, record)
    return record


_NEEDS_DEFAULTS: dict[int, tuple[ValueSpec, bool]] = {}


def _needs_defaults(spec: ValueSpec) -> bool:
    return _per_spec(_NEEDS_DEFAULTS, spec, _any_non_null_default)


def _any_non_null_default(spec: ValueSpec) -> bool:
    for field in spec.fields:
        if field.default is not None and not field.value.nullable:
            return True
        value = field.value
        while value.kind is ValueKind.ARRAY and value.items is not None:
            value = value.items
        if value.kind is ValueKind.RECORD and _any_non_null_default(value):
            return True
    return False


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
