"""One file row → the pipeline's routed record, pure.

:class:`RowRouter` turns one :class:`~domain.file_formats.SourceRow` into a routed record: cells
converted per field type (:func:`convert_cell`), empty optional cells absent, then the same basic
and semantic checks a JSON record gets. A row that fails travels on as a failed record whose
message starts with its line number.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastavro.validation import validate as avro_valid

from domain.entities import EntityDefinition, ValueKind, ValueSpec
from domain.errors import ErrorCode
from domain.file_types import FileFormat, ReadOptions, RowTable, SourceRow
from domain.import_mapping import ColumnMapping, ImportPlan, KeyMapping, TargetPath, plan_import
from domain.job_options import NO_OPTIONS, FieldDefault, JobOptions, with_defaults
from domain.messages import ImportRequested, RoutedRecord
from domain.outcomes import RecordFailure
from domain.semantics import semantic_error
from domain.text import storable
from domain.validation import basic_record_errors, to_avro_record

MAX_SOURCE_CELL = 4096
"""Longer than any field takes (tags included): a cut cell failed anyway, and fails again when
the report is imported back (``retry_of``), rather than importing a shortened value."""
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


# --- rows -----------------------------------------------------------------------------------------


class CellProblem(Exception):
    """A cell that does not convert to its field's type (caught inside row building)."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


class RowRouter:
    """One file row → the pipeline's routed record (``RoutedRecord`` without the union branch).

    ``index`` is the row's 0-based position among the file's data rows (the job-wide index);
    ``line`` the physical line (CSV, NDJSON) or sheet row (XLSX) it starts on.
    """

    def __init__(
        self,
        definition: EntityDefinition,
        mapping: ImportPlan,
        reference_types: Mapping[str, frozenset[str]],
        defaults: Sequence[FieldDefault] = (),
    ) -> None:
        self._definition = definition
        self._mapping = mapping
        self._references = reference_types
        self._defaults = defaults
        if isinstance(mapping, ColumnMapping):
            self._columns = [
                (c.position, c.target, _converter(c.target.spec)) for c in mapping.columns
            ]
            self._nested = sorted(
                {c.target.steps[0] for c in mapping.columns if len(c.target.steps) > 1}
            )
            self._sources = [(c.position, c.column) for c in mapping.source_columns]
        else:
            self._sources = [(-1, key) for key in mapping.source_columns]

    def route(self, row: SourceRow, index: int) -> RoutedRecord:
        if row.values is None:
            where = f"Line {row.line}: {self._definition.label} at index {index} cannot be read"
            unreadable = RecordFailure(row.code, f"{where}: {row.problem}")
            return self._routed(index, row, None, unreadable)
        record, failure = self._record(row, index)
        if self._defaults:
            record = with_defaults(record, self._defaults)
        if failure is None:
            failure = self._basic_failure(record, row.line, index)
        if failure is None:
            failure = self._semantic_failure(record, row.line)
        return self._routed(index, row, record, failure)

    def _routed(
        self,
        index: int,
        row: SourceRow,
        record: dict[str, Any] | None,
        failure: RecordFailure | None,
    ) -> RoutedRecord:
        key = record.get(self._definition.key_field) if record is not None else None
        return {
            "index": index,
            "key": storable(key) if isinstance(key, str) and key else None,
            "record": self._avro(record, failure),
            "error": failure.to_avro() if failure else None,
            "line": row.line,
            "source": self._source(row.values),
        }

    def _record(self, row: SourceRow, index: int) -> tuple[dict[str, Any], RecordFailure | None]:
        if isinstance(self._mapping, KeyMapping):
            assert isinstance(row.values, Mapping)
            return self._keyed_record(row.values), None
        assert row.values is not None and not isinstance(row.values, Mapping)
        values = row.values
        record: dict[Any, Any] = {}
        failure = None
        width = len(values)
        for position, target, convert in self._columns:  # the hot loop of a file import
            if position >= width:
                continue
            raw = values[position]
            if raw.__class__ is str:
                raw = raw.strip()
                if not raw:
                    continue
            elif raw is None:
                continue
            try:
                value = convert(raw)
            except CellProblem as problem:
                failure = failure or self._type_failure(row.line, index, target, raw, problem)
                continue
            if len(target.steps) == 1:
                record[target.steps[0]] = value
            else:
                _set_path(record, target.steps, value)
        for name in self._nested:
            if name in record:
                record[name] = _listified(record[name])
        return record, failure

    def _keyed_record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        assert isinstance(self._mapping, KeyMapping)
        record: dict[Any, Any] = {}
        nested = False
        for key, value in values.items():
            target = self._mapping.target(key)
            if target is None or value is None:
                continue
            if len(target.steps) == 1:
                record[target.steps[0]] = value
            else:
                nested = True
                _set_path(record, target.steps, value)
        return _listified(record) if nested else record

    def _type_failure(
        self, line: int, index: int, target: TargetPath, raw: object, problem: CellProblem
    ) -> RecordFailure:
        shown = raw if isinstance(raw, str) else repr(raw)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = (
            f"Line {line}: {self._definition.label} at index {index} has the wrong type for "
            f"{target.path}: expected {problem.expected}, got {shown!r}"
        )
        return RecordFailure(ErrorCode.InvalidFieldType, message, target.path)

    def _basic_failure(self, record: dict[str, Any], line: int, index: int) -> RecordFailure | None:
        errors = basic_record_errors(self._definition, record, index)
        if not errors:
            return None
        first = errors[0]
        return RecordFailure(first.error_code, f"Line {line}: {first.message}", first.field)

    def _semantic_failure(self, record: dict[str, Any], line: int) -> RecordFailure | None:
        found = semantic_error(self._definition, record, self._references)
        if found is None:
            return None
        code, path, message = found
        return RecordFailure(ErrorCode(code), f"Line {line}: {message}", path or None)

    def _avro(self, record: dict[str, Any] | None, failure: RecordFailure | None) -> Any:
        """The record in Avro form; a failed one only if it still fits the schema (the report),
        with the characters no storage holds replaced."""
        if record is None:
            return None
        if failure is None:
            return to_avro_record(self._definition, record)
        try:
            candidate = storable(to_avro_record(self._definition, record))
            if avro_valid(candidate, self._definition.avro_schema, raise_errors=False):
                return candidate
        except (TypeError, ValueError, AttributeError):
            pass
        return None

    def _source(self, values: Sequence[Any] | Mapping[str, Any] | None) -> dict[str, str]:
        if isinstance(values, Mapping):
            return {key: _source_text(values.get(key)) for _, key in self._sources}
        width = len(values) if values is not None else 0
        return {
            column: _source_text(
                values[position] if values is not None and position < width else None
            )
            for position, column in self._sources
        }


def _empty(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _source_text(value: object) -> str:
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        try:
            text = _as_text(value)
        except CellProblem:
            text = str(value)
    return storable(text[:MAX_SOURCE_CELL])


def _set_path(record: dict[Any, Any], steps: Sequence[str | int], value: Any) -> None:
    container = record
    for step in steps[:-1]:
        container = container.setdefault(step, {})
    container[steps[-1]] = value


def _listified(value: dict[Any, Any]) -> Any:
    """Containers built with int keys become lists, in position order (gaps close up)."""
    items = [(k, _listified(v) if v.__class__ is dict else v) for k, v in value.items()]
    if items and all(k.__class__ is int for k, _ in items):
        return [v for _, v in sorted(items, key=lambda item: item[0])]
    return dict(items)


# --- cells ----------------------------------------------------------------------------------------


def _converter(spec: ValueSpec) -> Callable[[Any], Any]:
    """The cell conversion for one column; text for a string field needs none (the hot case)."""
    if spec.kind is ValueKind.STRING:
        return lambda raw: raw if raw.__class__ is str else _as_text(raw)
    return lambda raw: convert_cell(raw, spec)


def convert_cell(raw: object, spec: ValueSpec) -> Any:
    """A cell (text, or a typed spreadsheet value) as the field's JSON type; CellProblem if not."""
    if isinstance(raw, str):
        return _from_text(raw.strip(), spec)
    return _from_typed(raw, spec)


def _from_text(text: str, spec: ValueSpec) -> Any:
    kind = spec.kind
    if kind is ValueKind.STRING:
        return text
    if kind is ValueKind.NUMBER:
        if _NUMBER.fullmatch(text):
            return float(text)
        raise CellProblem("a number like 349.00")
    if kind is ValueKind.INTEGER:
        if _INTEGER.fullmatch(text):
            return int(text)
        if _NUMBER.fullmatch(text) and float(text).is_integer():
            return int(float(text))
        raise CellProblem("a whole number")
    if kind is ValueKind.BOOLEAN:
        lowered = text.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise CellProblem("true or false")
    if kind is ValueKind.ARRAY:
        return _array_from_text(text, spec)
    return _json_of_kind(text, dict, "a JSON object")


def _array_from_text(text: str, spec: ValueSpec) -> list[Any]:
    if text.startswith("["):
        return list(_json_of_kind(text, list, "a JSON array"))
    items = spec.items
    if items is None or items.kind in (ValueKind.ARRAY, ValueKind.RECORD):
        raise CellProblem("a JSON array")
    return [_from_text(part.strip(), items) for part in text.split(",") if part.strip()]


def _json_of_kind(text: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CellProblem(expected) from exc
    if not isinstance(value, kind):
        raise CellProblem(expected)
    return value


def _from_typed(raw: object, spec: ValueSpec) -> Any:
    kind = spec.kind
    if kind is ValueKind.STRING:
        return _as_text(raw)
    if isinstance(raw, bool):
        if kind is ValueKind.BOOLEAN:
            return raw
        raise CellProblem(_EXPECTED_TYPED[kind])
    if isinstance(raw, int | float):
        if kind is ValueKind.NUMBER:
            return float(raw)
        if kind is ValueKind.INTEGER and float(raw).is_integer():
            return int(raw)
        if kind is ValueKind.BOOLEAN and raw in (0, 1):
            return bool(raw)
    raise CellProblem(_EXPECTED_TYPED[kind])


_EXPECTED_TYPED = {
    ValueKind.STRING: "text",
    ValueKind.NUMBER: "a number",
    ValueKind.INTEGER: "a whole number",
    ValueKind.BOOLEAN: "true or false",
    ValueKind.ARRAY: "a JSON array",
    ValueKind.RECORD: "a JSON object",
}


def _as_text(raw: object) -> str:
    """A spreadsheet value as the text a person sees in the cell."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    if isinstance(raw, int | float):
        return str(raw)
    if isinstance(raw, datetime.datetime):
        return raw.date().isoformat() if raw.time() == datetime.time() else raw.isoformat()
    if isinstance(raw, datetime.date | datetime.time):
        return raw.isoformat()
    raise CellProblem("text")


def read_options_of(request: ImportRequested) -> ReadOptions:
    file_format = FileFormat(request.format)
    content = request.content
    if file_format is FileFormat.ZIP:
        inner: FileFormat | None = FileFormat(content or "csv")
    elif file_format is FileFormat.XLSX:
        inner = None
    else:
        inner = file_format
    return ReadOptions(
        format=file_format,
        content=inner,
        encoding=request.encoding,
        delimiter=request.delimiter,
        sheet=request.sheet,
        member=request.member,
    )


def router_for(
    definition: EntityDefinition,
    table: RowTable,
    options: ReadOptions,
    field_mappings: Mapping[str, str | None],
    reference_types: Mapping[str, frozenset[str]],
    job_options: JobOptions = NO_OPTIONS,
) -> RowRouter:
    """The same mapping the gateway checked, derived again from the header (pure, so equal)."""
    plan = plan_import(
        definition, options.content, table.header, field_mappings, job_options.default_targets
    )
    return RowRouter(definition, plan, reference_types, job_options.defaults)
