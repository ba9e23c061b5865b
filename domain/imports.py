"""File imports, pure: the import request, field mappings, and a file row → a routed record.

- :func:`parse_import_request` checks a ``POST /imports`` body (everything that needs neither
  the file nor the database) and raises one :class:`~domain.errors.InvalidInput` with every
  problem found.
- :func:`plan_columns` (CSV, XLSX, ZIP) and :func:`plan_keys` (NDJSON) turn the file's header
  and the request's ``field_mappings`` into a mapping: explicit mappings first, then every
  column whose name equals a field path (case-insensitive). Targets are field paths, dotted for
  nested fields (``addresses.0.city``). The header-level checks (unknown target, unknown source
  column, two columns on one field, required field unmapped) raise ``InvalidInput``.
- :class:`RowRouter` turns one :class:`~domain.file_formats.SourceRow` into the pipeline's
  routed record: cells converted per field type, empty optional cells absent, then the same
  basic and semantic checks a JSON record gets. A row that fails travels on as a failed record
  whose message starts with its line number.
"""

from __future__ import annotations

import codecs
import datetime
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastavro.validation import validate as avro_valid

from domain.entities import EntityDefinition, EntityRegistry, ValueKind, ValueSpec
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.file_formats import SourceRow
from domain.text import storable
from domain.validation import (
    Operation,
    basic_record_errors,
    parse_operation,
    parse_webhook_url,
    semantic_error,
    to_avro_record,
)

IMPORT_FIELDS = frozenset(
    {
        "file_id",
        "sha256",
        "entity",
        "operation",
        "field_mappings",
        "upsert_key",
        "webhook_url",
        "exclusive",
        "sheet",
        "encoding",
        "delimiter",
    }
)
MAX_SOURCE_COLUMNS = 3
MAX_SOURCE_CELL = 200
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "1", "yes", "y"})
_FALSE = frozenset({"false", "0", "no", "n"})


# --- the request ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRequest:
    """A ``POST /imports`` body that passed the checks needing neither file nor database."""

    entity: str
    operation: Operation
    file_id: str | None
    sha256: str | None
    field_mappings: Mapping[str, str | None]
    webhook_url: str | None
    exclusive: bool
    sheet: str | None
    encoding: str | None
    delimiter: str | None


def parse_import_request(registry: EntityRegistry, body: object) -> ImportRequest:
    """Check a parsed JSON body; raise :class:`InvalidInput` with every problem found."""
    if not isinstance(body, dict):
        raise InvalidInput.single(
            ErrorCode.InvalidFieldType,
            'The request body must be a JSON object like {"file_id": "...", "entity": "..."}',
        )
    errors: list[ApiError] = [
        ApiError(ErrorCode.UnknownField, f"The request has an unknown field {name}", field=name)
        for name in body
        if name not in IMPORT_FIELDS
    ]

    def collect(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except InvalidInput as exc:
            errors.extend(exc.errors)
            return None

    definition = collect(lambda: _entity(registry, body.get("entity")))
    file_id, sha256 = collect(lambda: _file_reference(body)) or (None, None)
    operation = collect(lambda: parse_operation(body.get("operation"), Operation.INSERT))
    mappings = collect(lambda: _field_mappings(body.get("field_mappings")))
    webhook_url = collect(lambda: parse_webhook_url(body.get("webhook_url")))
    exclusive = collect(lambda: _optional(body, "exclusive", bool, "true or false"))
    sheet = collect(lambda: _optional(body, "sheet", str, "a sheet name"))
    encoding = collect(lambda: _encoding(body.get("encoding")))
    delimiter = collect(lambda: _delimiter(body.get("delimiter")))
    if definition is not None:
        collect(lambda: _upsert_key(definition, body.get("upsert_key")))
    if errors or definition is None or operation is None or mappings is None:
        raise InvalidInput(errors)
    return ImportRequest(
        entity=definition.name,
        operation=operation,
        file_id=file_id,
        sha256=sha256,
        field_mappings=mappings,
        webhook_url=webhook_url,
        exclusive=bool(exclusive),
        sheet=sheet,
        encoding=encoding,
        delimiter=delimiter,
    )


def _entity(registry: EntityRegistry, value: object) -> EntityDefinition:
    if not isinstance(value, str) or not value:
        raise InvalidInput.single(
            ErrorCode.MissingRequiredField,
            f"The import needs an entity: one of {', '.join(registry.names())}",
            field="entity",
        )
    try:
        return registry.get(value)
    except InvalidInput as exc:
        message = exc.errors[0].message
        raise InvalidInput.single(ErrorCode.UnknownEntity, message, field="entity") from exc


def _file_reference(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    file_id, sha256 = body.get("file_id"), body.get("sha256")
    if (file_id is None) == (sha256 is None):
        raise InvalidInput.single(
            ErrorCode.MissingRequiredField,
            "Name the uploaded file with either file_id or sha256 (one of them, not both)",
            field="file_id",
        )
    if file_id is not None and not (isinstance(file_id, str) and _UUID.fullmatch(file_id)):
        raise InvalidInput.single(
            ErrorCode.InvalidParameter, f"There is no file {file_id!r}", field="file_id"
        )
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise InvalidInput.single(
            ErrorCode.InvalidFormat, "sha256 must be 64 hexadecimal characters", field="sha256"
        )
    return file_id, sha256.lower() if isinstance(sha256, str) else None


def _field_mappings(value: object) -> dict[str, str | None]:
    if value is None:
        return {}
    problem = 'field_mappings must be an object like {"First Name": "firstName"}'
    if not isinstance(value, dict):
        raise InvalidInput.single(ErrorCode.InvalidFieldType, problem, field="field_mappings")
    for source, target in value.items():
        if target is not None and not (isinstance(target, str) and target):
            raise InvalidInput.single(
                ErrorCode.InvalidFieldType,
                f"field_mappings[{source!r}] must name a field (a string) or be null to skip it",
                field=f"field_mappings.{source}",
            )
    return dict(value)


def _optional(body: Mapping[str, Any], name: str, kind: type, expected: str) -> Any:
    value = body.get(name)
    if value is None or (isinstance(value, kind) and (kind is not str or value)):
        return value
    raise InvalidInput.single(ErrorCode.InvalidFieldType, f"{name} must be {expected}", field=name)


def _encoding(value: object) -> str | None:
    if value is None:
        return None
    try:
        info = codecs.lookup(value) if isinstance(value, str) else None
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise InvalidInput.single(
            ErrorCode.InvalidParameter,
            f"encoding {value!r} is not a text encoding Python knows (e.g. utf-8, utf-16, cp1252)",
            field="encoding",
        )
    return info.name


def _delimiter(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _DELIMITER_NAMES.get(value.lower(), value)
        if len(value) == 1 and value not in '"\r\n':
            return value
    raise InvalidInput.single(
        ErrorCode.InvalidParameter,
        "delimiter must be one character such as , ; | or tab",
        field="delimiter",
    )


def _upsert_key(definition: EntityDefinition, value: object) -> None:
    if value is None or value == definition.key_field:
        return
    raise InvalidInput.single(
        ErrorCode.InvalidParameter,
        f"{definition.name} records are matched by {definition.key_field}; upsert_key must be "
        f"{definition.key_field!r} or left out",
        field="upsert_key",
    )


# --- target paths ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetPath:
    """A field path inside an entity record; ``steps`` are field names and array positions."""

    path: str
    steps: tuple[str | int, ...]
    spec: ValueSpec


def resolve_target(definition: EntityDefinition, text: str, *, loose: bool = False) -> TargetPath:
    """The field path ``text`` names (``email``, ``addresses.0.city``); UnknownField otherwise.

    ``loose`` matches field names case-insensitively (used for default mappings by header).
    """
    spec, steps = definition.record, []
    for part in text.strip().split("."):
        step = _step(spec, part, loose)
        if step is None:
            raise InvalidInput.single(
                ErrorCode.UnknownField,
                f"{text!r} is not a field of {definition.name}{_hint(definition, spec)}",
                field=text,
            )
        steps.append(step[0])
        spec = step[1]
    return TargetPath(".".join(str(s) for s in steps), tuple(steps), spec)


def _step(spec: ValueSpec, part: str, loose: bool) -> tuple[str | int, ValueSpec] | None:
    if spec.kind is ValueKind.RECORD:
        for candidate in spec.fields:
            if candidate.name == part or (loose and candidate.name.lower() == part.lower()):
                return candidate.name, candidate.value
        return None
    if spec.kind is ValueKind.ARRAY and part.isdigit() and spec.items is not None:
        position = int(part)
        if spec.max_items is None or position < spec.max_items:
            return position, spec.items
    return None


def _hint(definition: EntityDefinition, spec: ValueSpec) -> str:
    if spec is definition.record:
        return f"; its fields are {', '.join(f.name for f in spec.fields)}"
    if spec.kind is ValueKind.RECORD:
        return f"; here the fields are {', '.join(f.name for f in spec.fields)}"
    if spec.kind is ValueKind.ARRAY:
        limit = f" below {spec.max_items}" if spec.max_items is not None else ""
        return f"; after an array field comes a position{limit}, like addresses.0.city"
    return ""


# --- mappings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedColumn:
    position: int
    column: str
    target: TargetPath


@dataclass(frozen=True)
class ColumnMapping:
    """Which column feeds which field, in file order (CSV, XLSX and ZIP files)."""

    columns: tuple[MappedColumn, ...]

    @property
    def source_columns(self) -> tuple[MappedColumn, ...]:
        """The first mapped columns, carried into the results file."""
        return self.columns[:MAX_SOURCE_COLUMNS]

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(c.target.path for c in self.columns)


def plan_columns(
    definition: EntityDefinition, header: Sequence[str], field_mappings: Mapping[str, str | None]
) -> ColumnMapping:
    """Map the header's columns to fields; raise InvalidInput with every header-level problem."""
    errors: list[ApiError] = []
    explicit = _explicit_columns(definition, header, field_mappings, errors)
    mentioned = {column.position for column in explicit} | _skipped(header, field_mappings)
    taken = {column.target.path for column in explicit}
    defaults = [
        column
        for column in _default_columns(definition, header)
        if column.position not in mentioned and column.target.path not in taken
    ]
    mapped = sorted([*explicit, *defaults], key=lambda c: c.position)
    errors.extend(_conflicts(mapped))
    errors.extend(_unmapped_required(definition, [c.target for c in mapped], header))
    if errors:
        raise InvalidInput(errors)
    return ColumnMapping(tuple(mapped))


def _positions(header: Sequence[str], source: str) -> list[int]:
    exact = [i for i, name in enumerate(header) if name == source.strip()]
    if exact:
        return exact
    return [i for i, name in enumerate(header) if name.lower() == source.strip().lower()]


def _explicit_columns(
    definition: EntityDefinition,
    header: Sequence[str],
    field_mappings: Mapping[str, str | None],
    errors: list[ApiError],
) -> list[MappedColumn]:
    mapped = []
    for source, target in field_mappings.items():
        positions = _positions(header, source)
        where = f"field_mappings.{source}"
        if target is None:
            continue
        if not positions:
            shown = ", ".join(header[:20]) + (", ..." if len(header) > 20 else "")
            errors.append(
                ApiError(
                    ErrorCode.InvalidParameter,
                    f"field_mappings names column {source!r}, which the file does not have; "
                    f"its columns are: {shown}",
                    field=where,
                )
            )
            continue
        if len(positions) > 1:
            message = f"Column {source!r} appears {len(positions)} times in the header"
            errors.append(ApiError(ErrorCode.InvalidParameter, message, field=where))
            continue
        try:
            resolved = resolve_target(definition, target)
        except InvalidInput as exc:
            error = exc.errors[0]
            errors.append(
                ApiError(
                    error.error_code,
                    f"field_mappings maps {source!r} to "
                    f"{error.message[0].lower()}{error.message[1:]}",
                    field=target,
                )
            )
            continue
        mapped.append(MappedColumn(positions[0], header[positions[0]], resolved))
    return mapped


def _skipped(header: Sequence[str], field_mappings: Mapping[str, str | None]) -> set[int]:
    """Columns the caller mapped to null: never mapped by default."""
    return {
        position
        for source, target in field_mappings.items()
        if target is None
        for position in _positions(header, source)
    }


def _default_columns(definition: EntityDefinition, header: Sequence[str]) -> list[MappedColumn]:
    found = []
    for position, name in enumerate(header):
        if not name or sum(1 for other in header if other.lower() == name.lower()) > 1:
            continue
        try:
            target = resolve_target(definition, name, loose=True)
        except InvalidInput:
            continue
        found.append(MappedColumn(position, name, target))
    return found


def _conflicts(mapped: Sequence[MappedColumn]) -> list[ApiError]:
    errors = []
    for i, first in enumerate(mapped):
        for second in mapped[i + 1 :]:
            a, b = first.target.steps, second.target.steps
            if a[: len(b)] == b or b[: len(a)] == a:
                errors.append(
                    ApiError(
                        ErrorCode.InvalidParameter,
                        f"Columns {first.column!r} and {second.column!r} both map to "
                        f"{first.target.path if len(a) <= len(b) else second.target.path}; map "
                        "one of them to null in field_mappings",
                        field=f"field_mappings.{second.column}",
                    )
                )
    return errors


def _unmapped_required(
    definition: EntityDefinition, targets: Sequence[TargetPath], header: Sequence[str]
) -> list[ApiError]:
    """Required fields of the record, and of each array item a column feeds, left unmapped."""
    mapped = [t.steps for t in targets]
    records: dict[tuple[str | int, ...], ValueSpec] = {(): definition.record}
    for target in targets:
        spec = definition.record
        for depth, step in enumerate(target.steps[:-1]):
            spec = _child(spec, step)
            if spec.kind is ValueKind.RECORD:
                records[target.steps[: depth + 1]] = spec
    errors = []
    for prefix, spec in records.items():
        for f in spec.fields:
            path = (*prefix, f.name)
            if f.required and not any(
                m[: len(path)] == path or path[: len(m)] == m for m in mapped
            ):
                dotted = ".".join(str(s) for s in path)
                errors.append(
                    ApiError(
                        ErrorCode.MissingRequiredField,
                        f"Required field {dotted} is not mapped: no column is named {dotted} and "
                        f"field_mappings maps no column to it (columns: {', '.join(header[:20])})",
                        field=dotted,
                    )
                )
    return errors


def _child(spec: ValueSpec, step: str | int) -> ValueSpec:
    if isinstance(step, int):
        assert spec.items is not None
        return spec.items
    return next(f.value for f in spec.fields if f.name == step)


@dataclass
class KeyMapping:
    """Which object key feeds which field (NDJSON): explicit mappings, else the key's own name.

    Keys vary between lines, so defaults are resolved per key as they appear (and cached); a
    key that names no field is ignored, like an unmapped column.
    """

    definition: EntityDefinition
    explicit: Mapping[str, TargetPath | None]
    header: tuple[str, ...]
    _cache: dict[str, TargetPath | None] = field(default_factory=dict)

    def target(self, key: str) -> TargetPath | None:
        if key in self.explicit:
            return self.explicit[key]
        if key not in self._cache:
            try:
                self._cache[key] = resolve_target(self.definition, key, loose=True)
            except InvalidInput:
                self._cache[key] = None
        return self._cache[key]

    @property
    def source_columns(self) -> tuple[str, ...]:
        return tuple(k for k in self.header if self.target(k) is not None)[:MAX_SOURCE_COLUMNS]


def plan_keys(
    definition: EntityDefinition, header: Sequence[str], field_mappings: Mapping[str, str | None]
) -> KeyMapping:
    """The NDJSON mapping; only targets can be checked up front (keys vary per line)."""
    errors: list[ApiError] = []
    explicit: dict[str, TargetPath | None] = {}
    for source, target in field_mappings.items():
        try:
            explicit[source] = resolve_target(definition, target) if target else None
        except InvalidInput as exc:
            errors.extend(exc.errors)
    if errors:
        raise InvalidInput(errors)
    return KeyMapping(definition, explicit, tuple(header))


# --- rows -----------------------------------------------------------------------------------------


class CellProblem(Exception):
    """A cell that does not convert to its field's type (caught inside row building)."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


@dataclass(frozen=True)
class RowFailure:
    code: ErrorCode
    message: str
    field: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {"code": self.code.value, "field": self.field, "message": self.message}


class RowRouter:
    """One file row → the pipeline's routed record (``RoutedRecord`` without the union branch).

    ``index`` is the row's 0-based position among the file's data rows (the job-wide index);
    ``line`` the physical line (CSV, NDJSON) or sheet row (XLSX) it starts on.
    """

    def __init__(
        self,
        definition: EntityDefinition,
        mapping: ColumnMapping | KeyMapping,
        reference_types: Mapping[str, frozenset[str]],
    ) -> None:
        self._definition = definition
        self._mapping = mapping
        self._references = reference_types
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

    def route(self, row: SourceRow, index: int) -> dict[str, Any]:
        if row.values is None:
            where = f"Line {row.line}: {self._definition.label} at index {index} cannot be read"
            unreadable = RowFailure(row.code, f"{where}: {row.problem}")
            return self._routed(index, row, None, unreadable)
        record, failure = self._record(row, index)
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
        failure: RowFailure | None,
    ) -> dict[str, Any]:
        key = record.get(self._definition.key_field) if record is not None else None
        return {
            "index": index,
            "key": storable(key) if isinstance(key, str) and key else None,
            "record": self._avro(record, failure),
            "error": failure.to_avro() if failure else None,
            "line": row.line,
            "source": self._source(row.values),
        }

    def _record(self, row: SourceRow, index: int) -> tuple[dict[str, Any], RowFailure | None]:
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
    ) -> RowFailure:
        shown = raw if isinstance(raw, str) else repr(raw)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        message = (
            f"Line {line}: {self._definition.label} at index {index} has the wrong type for "
            f"{target.path}: expected {problem.expected}, got {shown!r}"
        )
        return RowFailure(ErrorCode.InvalidFieldType, message, target.path)

    def _basic_failure(self, record: dict[str, Any], line: int, index: int) -> RowFailure | None:
        errors = basic_record_errors(self._definition, record, index)
        if not errors:
            return None
        first = errors[0]
        return RowFailure(first.error_code, f"Line {line}: {first.message}", first.field)

    def _semantic_failure(self, record: dict[str, Any], line: int) -> RowFailure | None:
        found = semantic_error(self._definition, record, self._references)
        if found is None:
            return None
        code, path, message = found
        return RowFailure(ErrorCode(code), f"Line {line}: {message}", path or None)

    def _avro(self, record: dict[str, Any] | None, failure: RowFailure | None) -> Any:
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
