"""Semantic checks, run by the stream workers: reference sets, code lists, calendar dates.

:func:`semantic_error` returns the first failure of one record, driven only by the
:class:`~domain.entities.EntityDefinition`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
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
