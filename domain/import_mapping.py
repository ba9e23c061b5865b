"""Field mappings, pure: a file's header and the request's ``field_mappings`` → an import plan.

:func:`plan_import` is the one derivation the gateway (to refuse a bad mapping with ``422``) and
the worker (to route rows) share, so both always agree. :func:`plan_columns` (CSV, XLSX, ZIP) and
:func:`plan_keys` (NDJSON) are its two halves: explicit mappings first, then every column whose
name equals a field path (case-insensitive). Targets are field paths, dotted for nested fields
(``addresses.0.city``). The header-level checks (unknown target, unknown source column, two
columns on one field, required field unmapped) raise ``InvalidInput``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from domain.entities import EntityDefinition, ValueKind, ValueSpec
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.file_types import FileFormat

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
        """The mapped columns, carried into the failure report (the results file shows the
        first three)."""
        return self.columns

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(c.target.path for c in self.columns)


def plan_columns(
    definition: EntityDefinition,
    header: Sequence[str],
    field_mappings: Mapping[str, str | None],
    filled: Sequence[tuple[str | int, ...]] = (),
) -> ColumnMapping:
    """Map the header's columns to fields; raise InvalidInput with every header-level problem.

    ``filled`` are the field paths the job's defaults fill: a required field among them may be
    left unmapped."""
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
    errors.extend(_unmapped_required(definition, [c.target for c in mapped], header, filled))
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
    definition: EntityDefinition,
    targets: Sequence[TargetPath],
    header: Sequence[str],
    filled: Sequence[tuple[str | int, ...]],
) -> list[ApiError]:
    """Required fields of the record, and of each array item a column feeds, left unmapped
    (and not filled by a default)."""
    mapped = [t.steps for t in targets] + list(filled)
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
        return tuple(k for k in self.header if self.target(k) is not None)


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


ImportPlan = ColumnMapping | KeyMapping
"""How a file's columns (or an NDJSON line's keys) feed an entity's fields."""


def plan_import(
    definition: EntityDefinition,
    content: FileFormat | None,
    header: Sequence[str],
    field_mappings: Mapping[str, str | None],
    filled: Sequence[tuple[str | int, ...]] = (),
) -> ImportPlan:
    """The plan for rows of ``content`` (None: an XLSX sheet); InvalidInput for a bad mapping.
    ``filled``: the field paths the job's defaults fill (see :func:`plan_columns`)."""
    if content is FileFormat.NDJSON:
        return plan_keys(definition, header, field_mappings)
    return plan_columns(definition, header, field_mappings, filled)
