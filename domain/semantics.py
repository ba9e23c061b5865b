"""Semantic checks, run by the stream workers: reference sets, code lists, calendar dates.

:func:`semantic_error` returns the first failure of one record, driven only by the
:class:`~domain.entities.EntityDefinition`.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from domain.entities import EntityDefinition, ValueKind, ValueSpec
from domain.errors import ErrorCode
from domain.validation import shown_value

SemanticError = tuple[ErrorCode, str, str]
"""(error code, field path, message) of a semantic failure."""


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
    if record.__class__ is dict and _passes(definition.record)(record, reference_types):
        return None  # the hot path: most records have no semantic error to explain
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
            message = f"{where.owner} {where.name} {shown_value(value)} is not one of {choices}"
            return ErrorCode.InvalidReference, where.path, message
    if spec.code_list is not None and value not in spec.code_list.codes:
        return ErrorCode.InvalidValue, where.path, f"{value} is not {spec.code_list.description}"
    if spec.calendar_date and not _is_calendar_date(value):
        return ErrorCode.InvalidValue, where.path, f"{value} is not a real calendar date"
    return None


# --- the generated yes/no check -------------------------------------------------------------------

Check = Callable[[Any, Mapping[str, frozenset[str]]], bool]
_RECORDS: dict[int, tuple[ValueSpec, Check]] = {}
_VALUES: dict[int, tuple[ValueSpec, Check]] = {}
_NO_TYPES: frozenset[str] = frozenset()


def _passes(spec: ValueSpec) -> Check:
    """Whether a plain ``dict`` of the record ``spec`` certainly has no semantic error, as one
    generated function per spec (cached by identity, as basic validation's are: hashing a spec
    tree on every call would cost more). False means "walk it": a value the check is not sure
    of — a mapping or list that is not a plain ``dict`` or ``list`` — goes to the walk, which
    explains or clears it. The walk cost about four times basic validation per record; this, a
    dict lookup and a set test per checked field."""
    return _cached(_RECORDS, spec, record=True)


def _item_passes(spec: ValueSpec) -> Check:
    """The same for any value of ``spec`` (an array's items): None and wrong kinds pass, as the
    walk skips them."""
    return _cached(_VALUES, spec, record=False)


def _cached(cache: dict[int, tuple[ValueSpec, Check]], spec: ValueSpec, *, record: bool) -> Check:
    known = cache.get(id(spec))
    if known is None:
        known = cache[id(spec)] = (spec, _compile(spec, record=record))
    return known[1]


def _compile(spec: ValueSpec, *, record: bool) -> Check:
    namespace: dict[str, Any] = {"Mapping": Mapping, "NO_TYPES": _NO_TYPES}
    if record:
        lines = ["def passes(value, types):"]
        for position, field in enumerate(spec.fields):
            if not field.value.has_semantics:
                continue
            lines.append(f"    item = value.get({field.name!r})")
            lines.append("    if item is not None:")
            lines += _indented(_value_lines(field.value, f"_{position}", namespace), 2)
    else:
        lines = ["def passes(item, types):", *_indented(_value_lines(spec, "", namespace), 1)]
    lines.append("    return True")
    where = f"<semantic check of {spec.label or spec.kind.value}>"
    exec(compile("\n".join(lines) + "\n", where, "exec"), namespace)
    passes: Check = namespace["passes"]
    return passes


def _indented(lines: list[str], levels: int) -> list[str]:
    return [" " * 4 * levels + line for line in lines or ["pass"]]


def _value_lines(spec: ValueSpec, suffix: str, namespace: dict[str, Any]) -> list[str]:
    """Lines that ``return False`` unless ``item`` (not None) certainly passes ``spec``; what
    they need goes into ``namespace`` under names ending in ``suffix``."""
    if spec.kind is ValueKind.STRING:
        tests = []
        if spec.reference is not None:
            tests.append(f"item not in types.get({spec.reference!r}, NO_TYPES)")
        if spec.code_list is not None:
            namespace[f"codes{suffix}"] = spec.code_list.codes
            tests.append(f"item not in codes{suffix}")
        if spec.calendar_date:
            namespace["is_calendar_date"] = _is_calendar_date
            tests.append("not is_calendar_date(item)")
        if not tests:
            return []
        return [
            "if item.__class__ is str:",
            f"    if {' or '.join(tests)}:",
            "        return False",
            "elif isinstance(item, str):",
            "    return False",
        ]
    if spec.kind is ValueKind.RECORD and spec.has_semantics:
        namespace[f"check{suffix}"] = _passes(spec)
        return [
            "if item.__class__ is dict:",
            f"    if not check{suffix}(item, types):",
            "        return False",
            "elif isinstance(item, Mapping):",
            "    return False",
        ]
    if spec.kind is ValueKind.ARRAY and spec.items is not None and spec.items.has_semantics:
        namespace[f"check{suffix}"] = _item_passes(spec.items)
        return [
            "if item.__class__ is list:",
            "    for element in item:",
            f"        if not check{suffix}(element, types):",
            "            return False",
            "elif isinstance(item, list):",
            "    return False",
        ]
    return []


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
