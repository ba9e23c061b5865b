"""The job options in the OpenAPI document (design.md §8, :mod:`domain.job_options`), pure.

A bulk request's options are described exactly — every schema-valid request is accepted, the
fuzzer holds us to it: the ``defaults`` of an entity are an object whose members are the field
paths a default may fill (top-level scalar fields as properties, fields of array items as
pattern properties over the positions the array allows), each held to its field's own schema;
``min_records`` needs ``max_error_rate``.
"""

from __future__ import annotations

import re

from domain import json_schema as js
from domain.entities import EntityDefinition, ValueKind, ValueSpec
from domain.job_options import DEFAULT_MIN_RECORDS, MAX_DEFAULTS
from domain.record_schema import value_schema

MAX_MIN_RECORDS = 2**31 - 1


def option_properties(definition: EntityDefinition | None) -> dict[str, js.Schema]:
    """The options members of a request body; ``definition`` None: defaults for any entity
    (the import request, whose entity is a member)."""
    return {
        "dry_run": js.nullable(
            {
                "type": "boolean",
                "description": "Validate against current data and report; write no entity "
                "row and no outcome event",
            }
        ),
        "defaults": js.nullable(
            defaults_schema(definition) if definition is not None else _any_defaults()
        ),
        "max_error_rate": js.nullable(
            {
                "type": "number",
                "minimum": 0,
                "exclusiveMaximum": 1,
                "description": "Stop the job once more than this fraction of its records "
                "failed (checked from min_records on); the rest are skipped as "
                "ErrorRateExceeded",
            }
        ),
        "min_records": js.nullable(
            js.integer(
                f"Records processed before the breaker is checked (default "
                f"{DEFAULT_MIN_RECORDS}); only with max_error_rate",
                minimum=1,
                maximum=MAX_MIN_RECORDS,
            )
        ),
        "outcome_events": js.nullable(
            {
                "type": "boolean",
                "description": "false: no per-record events on bulk.outcomes (job events "
                "still flow)",
            }
        ),
    }


MIN_RECORDS_NEEDS_RATE: js.Schema = {
    "if": {"properties": {"min_records": {"type": "integer"}}, "required": ["min_records"]},
    "then": {"properties": {"max_error_rate": {"type": "number"}}, "required": ["max_error_rate"]},
}
"""``min_records`` (not null) only with a ``max_error_rate`` (not null)."""


def defaults_schema(definition: EntityDefinition) -> js.Schema:
    """The ``defaults`` of one entity: field path → a value that field takes."""
    forbidden = definition.forbidden
    properties: dict[str, js.Schema] = {}
    patterns: dict[str, js.Schema] = {}
    for field in definition.fields:
        spec = field.value
        if field.name == definition.key_field:
            continue  # every record needs its own key
        if _scalar(spec):
            properties[field.name] = value_schema(spec, forbidden)
        elif _array_of_records(spec):
            assert spec.items is not None
            positions = _positions(spec.max_items)
            for inner in spec.items.fields:
                if _scalar(inner.value):
                    pattern = f"^{re.escape(field.name)}\\.{positions}\\.{re.escape(inner.name)}$"
                    patterns[pattern] = value_schema(inner.value, forbidden)
    return js.obj(
        properties,
        description="Field path → the value filling it where a record leaves it absent or "
        "null (never creating an array item)",
        patternProperties=patterns,
        additionalProperties=False,
        maxProperties=MAX_DEFAULTS,
        examples=[_example(definition)],
    )


def _any_defaults() -> js.Schema:
    return {
        "type": "object",
        "description": "Field path of the entity → the value filling it where a row leaves it "
        "absent or empty (never creating an array item); as for the entity's bulk requests",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
        "maxProperties": MAX_DEFAULTS,
    }


def _scalar(spec: ValueSpec) -> bool:
    return spec.kind not in (ValueKind.ARRAY, ValueKind.RECORD)


def _array_of_records(spec: ValueSpec) -> bool:
    return (
        spec.kind is ValueKind.ARRAY
        and spec.items is not None
        and spec.items.kind is ValueKind.RECORD
    )


def _positions(max_items: int | None) -> str:
    """A regex for the array positions ``0 .. max_items - 1`` (any, without a limit)."""
    if max_items is None:
        return "(?:0|[1-9][0-9]*)"
    return "(?:" + "|".join(str(i) for i in range(max_items)) + ")"


def _example(definition: EntityDefinition) -> dict[str, object]:
    for field in definition.fields:
        if _array_of_records(field.value):
            assert field.value.items is not None
            inner = field.value.items.fields[0]
            if inner.value.kind is ValueKind.STRING:
                return {f"{field.name}.0.{inner.name}": "home"}
    return {}
