"""Import templates, pure: an entity's header row and one example row that imports cleanly, as
CSV or XLSX (``GET /entities/{entity}/template``, ``bulk-ingest template``).

The header is every field path of :func:`domain.entity_description.field_paths`, each a column
name the default import mapping takes as it is (``addresses.0.city``). The example row is
derived from each field's rules, never written per entity, so a new entity has a template as
soon as its schema and rules exist:

- a ``format``: the example of :data:`FORMAT_EXAMPLES` (a unit test holds each to its format,
  and fails for a format without one);
- a ``codeList``: the format's example if the list has it, else the list's first code;
- a ``reference``: the first of the tenant's default reference set (``billing``);
- any other text: ``Example <field>``, cut to ``maxLength`` and padded to ``minLength``;
- a number: 9.99 (an integer: 10), moved into ``minimum``..``maximum``; a boolean: its Avro
  default, else true.

Text cells are escaped against formula injection like the reports'
(:func:`domain.report_rows.escape_cell`). The XLSX workbook keeps numbers and booleans typed and
adds a sheet ``Fields`` documenting each column: field, type, required, rules, key, example.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from domain.entities import DEFAULT_REFERENCE_TYPES, EntityDefinition, ValueKind, ValueSpec
from domain.entity_description import FieldPath, field_paths, field_rules
from domain.report_rows import escape_cell

TEMPLATE_FORMATS = ("csv", "xlsx")
"""The template's file formats, the default first."""
MEDIA_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "csv": "text/csv",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
)
FIELDS_SHEET = "Fields"
FIELDS_HEADER = ("field", "type", "required", "rules", "key", "example")

FORMAT_EXAMPLES: Mapping[str, str] = MappingProxyType(
    {
        "email": "name@example.com",
        "phone": "555 0100",  # no leading "+": a spreadsheet would take it for a formula
        "country2": "US",
        "currency3": "EUR",
        "date": "1990-05-17",
        "key": "example-1",
    }
)
"""An example of each format of :data:`domain.entities.FORMATS`, valid for it."""
EXAMPLE_NUMBER = 9.99
EXAMPLE_INTEGER = 10

Value = str | int | float | bool


def template_filename(entity: str, form: str) -> str:
    return f"{entity}-template.{form}"


# --- rows -----------------------------------------------------------------------------------------


def template_header(definition: EntityDefinition) -> list[str]:
    return [field.path for field in field_paths(definition)]


def example_record_row(definition: EntityDefinition) -> list[Value]:
    """One example value per column of :func:`template_header`, typed, not yet escaped."""
    return [example_value(field) for field in field_paths(definition)]


def example_value(field: FieldPath) -> Value:
    """A value the field's basic and semantic rules accept (see the module docstring)."""
    spec = field.spec
    if spec.kind is ValueKind.BOOLEAN:
        return field.default if isinstance(field.default, bool) else True
    if spec.kind in (ValueKind.NUMBER, ValueKind.INTEGER):
        return _number(spec)
    return _text(spec, field.name)


def _number(spec: ValueSpec) -> int | float:
    if spec.kind is ValueKind.INTEGER:
        low = math.ceil(spec.minimum) if spec.minimum is not None else None
        high = math.floor(spec.maximum) if spec.maximum is not None else None
        return int(_within(EXAMPLE_INTEGER, low, high))
    return float(_within(EXAMPLE_NUMBER, spec.minimum, spec.maximum))


def _within(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


def _text(spec: ValueSpec, name: str) -> str:
    example = FORMAT_EXAMPLES[spec.format.name] if spec.format is not None else ""
    if spec.code_list is not None and example not in spec.code_list.codes:
        example = min(spec.code_list.codes)
    references = DEFAULT_REFERENCE_TYPES.get(spec.reference or "")
    if references:
        example = min(references)
    if not example:
        example = f"Example {name}"[: spec.max_length]
        example += "x" * max(0, (spec.min_length or 0) - len(example))
    return example


# --- the documentation sheet ----------------------------------------------------------------------


def field_documentation(definition: EntityDefinition) -> list[list[Value]]:
    """The rows of the ``Fields`` sheet, after :data:`FIELDS_HEADER`."""
    examples = example_record_row(definition)
    return [
        [
            field.path,
            field.spec.kind.value,
            _required(field),
            "; ".join(field_rules(field)),
            "yes" if field.path == definition.key_field else "",
            example,
        ]
        for field, example in zip(field_paths(definition), examples, strict=True)
    ]


def _required(field: FieldPath) -> str:
    if field.required:
        return "yes"
    if field.required_in_item and field.array is not None:
        return f"in each {field.array.label or 'item'}"
    return "no"


# --- files ----------------------------------------------------------------------------------------


def template_csv(definition: EntityDefinition) -> bytes:
    """UTF-8, comma-separated, CRLF, like the reports."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([escape_cell(cell) for cell in template_header(definition)])
    writer.writerow([_csv_cell(cell) for cell in example_record_row(definition)])
    return out.getvalue().encode("utf-8")


def template_xlsx(definition: EntityDefinition) -> bytes:
    """The header and example on the first sheet (the one an import reads), then ``Fields``."""
    from openpyxl import Workbook  # imported here: only XLSX needs it

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = definition.name[:31]  # the longest sheet name a spreadsheet takes
    sheet.append([_xlsx_cell(cell) for cell in template_header(definition)])
    sheet.append([_xlsx_cell(cell) for cell in example_record_row(definition)])
    fields = book.create_sheet(FIELDS_SHEET)
    fields.append(list(FIELDS_HEADER))
    for row in field_documentation(definition):
        fields.append([_xlsx_cell(cell) for cell in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _csv_cell(value: Value) -> str | int:
    """A number as it is (``-1.5`` is no formula, and a quote would break it); text escaped."""
    return repr(value) if isinstance(value, float) else escape_cell(value)


def _xlsx_cell(value: Any) -> Any:
    """Text escaped (openpyxl would store ``=...`` as a formula); numbers and booleans typed."""
    return escape_cell(value) if isinstance(value, str) else value


def template_file(definition: EntityDefinition, form: str) -> bytes:
    """The template in ``form`` (one of :data:`TEMPLATE_FORMATS`)."""
    return template_xlsx(definition) if form == "xlsx" else template_csv(definition)
