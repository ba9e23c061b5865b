"""An entity's records as JSON Schema, derived from its definition (:mod:`domain.entities`).

What basic validation (:mod:`domain.validation`) accepts and what this schema accepts are meant
to be the same set, so that a client validating against the OpenAPI document and a fuzzer
reading it both see the service as it is (``tests/unit/test_record_schema.py`` holds the two
side by side):

- types from the Avro schema; ``minLength``/``maxLength``, ``minimum``/``maximum`` and
  ``maxItems`` from the rules, narrowed to what the Avro type holds (an ``int`` fits 32 bits,
  an integer for a ``double`` lies within ±2^53);
- a ``format`` as its regular expression; the ``key`` format (visible characters only) as the
  exact class of the code points whose Unicode category is not invisible, computed from the
  ``unicodedata`` of the running Python — the one validation asks;
- the entity's forbidden code points as a second ``pattern``;
- a required field is never ``null`` nor ``""``; an optional one may be left out or ``null``,
  and an optional string may also be ``""`` (it counts as not given);
- unknown fields are refused: every record schema says ``additionalProperties: false``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator

from domain import json_schema as js
from domain.entities import (
    INVISIBLE_CATEGORIES,
    EntityDefinition,
    FieldSpec,
    Format,
    ValueKind,
    ValueSpec,
)
from domain.text import ForbiddenCharacters


def record_schema(definition: EntityDefinition) -> js.Schema:
    """The JSON Schema of one record of ``definition``."""
    schema = _record(definition.record, definition.forbidden)
    schema["title"] = definition.label
    key = definition.key_field
    schema["description"] = (
        f"One {definition.label.lower()} record; {key} is its key. Unknown fields are refused; "
        'an optional field may be left out or null (an optional text also ""). No text may '
        f"hold {definition.forbidden.describe()} (lone surrogates, which only a \\u escape "
        "can send, included)."
    )
    return schema


def value_schema(spec: ValueSpec, forbidden: ForbiddenCharacters) -> js.Schema:
    """The JSON Schema of one value held to ``spec`` on its own (a job's default for it)."""
    return _value(spec, spec.forbidden or forbidden)


def _record(spec: ValueSpec, forbidden: ForbiddenCharacters) -> js.Schema:
    properties = {field.name: _field(field, forbidden) for field in spec.fields}
    required = [field.name for field in spec.fields if field.required]
    return js.obj(properties, required, additionalProperties=False)


def _field(field: FieldSpec, forbidden: ForbiddenCharacters) -> js.Schema:
    schema = _value(field.value, forbidden, empty_refused=field.required)
    if field.required:
        return schema
    if field.value.kind is ValueKind.STRING:
        schema = _empty_allowed(schema)
    return js.nullable(schema)


def _value(
    spec: ValueSpec, forbidden: ForbiddenCharacters, *, empty_refused: bool = False
) -> js.Schema:
    """``empty_refused``: a required field's ``""`` is missing; an array item is taken as is."""
    if spec.kind is ValueKind.STRING:
        return _string(spec, spec.forbidden or forbidden, empty_refused=empty_refused)
    if spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return _number(spec)
    if spec.kind is ValueKind.BOOLEAN:
        return {"type": "boolean"}
    if spec.kind is ValueKind.ARRAY:
        assert spec.items is not None  # every array spec has one
        items = _value(spec.items, forbidden)
        schema = js.array(items)
        if spec.max_items is not None:
            schema["maxItems"] = spec.max_items
        return schema
    return _record(spec, forbidden)


def _string(spec: ValueSpec, forbidden: ForbiddenCharacters, *, empty_refused: bool) -> js.Schema:
    schema: js.Schema = {"type": "string"}
    low = max(spec.min_length or 0, 1 if empty_refused else 0)
    if low:
        schema["minLength"] = low
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    patterns = [format_pattern(spec.format)] if spec.format is not None else []
    refusing = forbidden_pattern(forbidden)
    if refusing and not (spec.format and _format_excludes(spec.format, forbidden)):
        patterns.append(refusing)
    if patterns:
        schema["pattern"] = patterns[0]
    if len(patterns) > 1:
        schema["allOf"] = [{"pattern": pattern} for pattern in patterns[1:]]
    return schema


def _empty_allowed(schema: js.Schema) -> js.Schema:
    """``schema``, or ``""``: an optional string left empty counts as not given."""
    if schema.get("minLength"):
        return {"anyOf": [schema, {"const": ""}]}
    widened = dict(schema)
    if "pattern" in widened:
        widened["pattern"] = f"^(?:{_unanchored(widened['pattern'])})?$"
    return widened


def _number(spec: ValueSpec) -> js.Schema:
    schema: js.Schema = {"type": "number" if spec.kind is ValueKind.NUMBER else "integer"}
    low, high = _type_range(spec)
    if spec.minimum is not None:
        low = spec.minimum if low is None else max(low, spec.minimum)
    if spec.maximum is not None:
        high = spec.maximum if high is None else min(high, spec.maximum)
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _type_range(spec: ValueSpec) -> tuple[float | None, float | None]:
    if spec.integer_bits is not None:
        return -(2 ** (spec.integer_bits - 1)), 2 ** (spec.integer_bits - 1) - 1
    return None, None  # a double: finite (JSON has no other), an integer within ±2^53


def format_pattern(format: Format) -> str:
    """The whole-value regular expression of ``format``, anchored, as JSON Schema reads it."""
    if format.check is None:
        return f"^(?:{format.pattern.pattern})$"
    if format.name == "key":
        return f"^[{visible_class()}]+$"
    raise ValueError(f"format {format.name!r} has a check that no pattern states")


def _format_excludes(format: Format, forbidden: ForbiddenCharacters) -> bool:
    """Whether no value of ``format`` can hold a forbidden code point (one pattern says all)."""
    if format.printable_ascii:
        alphabet: tuple[tuple[int, int], ...] = ((0x20, 0x7E),)
    elif format.name == "key":
        alphabet = tuple(_visible_ranges())
    else:
        return False
    return not any(
        low <= high_f and low_f <= high
        for low, high in alphabet
        for low_f, high_f in forbidden.ranges
    )


SURROGATES = (0xD800, 0xDFFF)


def forbidden_pattern(forbidden: ForbiddenCharacters) -> str | None:
    """A pattern matching the strings that hold none of the forbidden code points.

    Surrogates are left out: a JSON Schema string is a sequence of Unicode scalar values, which
    never holds one, and neither the Rust regex crate nor an ECMA pattern in Unicode mode can
    name them (a lone one arrives only as a ``\\ud800`` escape, refused all the same).
    """
    ranges = tuple(_without(forbidden.ranges, SURROGATES))
    return f"^[^{_class(ranges)}]*$" if ranges else None


def _without(
    ranges: tuple[tuple[int, int], ...], hole: tuple[int, int]
) -> Iterator[tuple[int, int]]:
    for low, high in ranges:
        if low < hole[0]:
            yield low, min(high, hole[0] - 1)
        if high > hole[1]:
            yield max(low, hole[1] + 1), high


@functools.cache
def visible_class() -> str:
    """The character class (without brackets) of every code point the ``key`` format takes."""
    return _class(_visible_ranges())


@functools.cache
def _visible_ranges() -> tuple[tuple[int, int], ...]:
    return tuple(_visible_code_points())


def _visible_code_points() -> Iterator[tuple[int, int]]:
    start = None
    for code_point in range(0x110000):
        visible = code_point > 0x7F or 0x20 <= code_point < 0x7F
        visible = visible and unicodedata.category(chr(code_point)) not in INVISIBLE_CATEGORIES
        if visible and start is None:
            start = code_point
        elif not visible and start is not None:
            yield start, code_point - 1
            start = None
    if start is not None:
        yield start, 0x10FFFF


def _class(ranges: Iterator[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    return "".join(
        _escaped(low) if low == high else f"{_escaped(low)}-{_escaped(high)}"
        for low, high in ranges
    )


def _escaped(code_point: int) -> str:
    """``\\uXXXX`` in the Basic Multilingual Plane, the character itself beyond it: what
    Python's ``re``, the Rust regex crate and ECMA patterns in Unicode mode all read."""
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


def _unanchored(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")
