"""Job options (design.md §8 "More job options"), pure: what a JSON job, an import or a Kafka
chunk may ask for beyond its records, checked, and what they do to a record.

- ``dry_run`` — validate everything against current data; write the ledger and reports, no
  entity row and no outcome event;
- ``defaults`` — constant values for fields a record (or an import's mapping) leaves absent or
  null, by field path (``company``, ``addresses.0.type``); a default never creates a container:
  ``addresses.0.type`` fills the first address only when the record has one;
- ``max_error_rate`` / ``min_records`` — the error-rate breaker (:func:`error_rate_exceeded`);
- ``outcome_events`` — ``false`` sends no per-record event on ``bulk.outcomes`` (job events
  still flow).

:func:`parse_job_options` raises one :class:`~domain.errors.InvalidInput` with every problem,
each naming its member (``defaults.email``), so the gateway answers ``422`` before anything is
kept. A default is checked by the same basic rules as a record's value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from domain.entities import EntityDefinition, ValueKind
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.import_mapping import TargetPath, resolve_target
from domain.validation import json_type_of, value_errors

OPTION_FIELDS = frozenset(
    {"dry_run", "defaults", "max_error_rate", "min_records", "outcome_events"}
)
DEFAULT_MIN_RECORDS = 1000
MAX_DEFAULTS = 100

Scalar = str | int | float | bool
_R = TypeVar("_R")


@dataclass(frozen=True)
class FieldDefault:
    """One default: the field path it fills and the value."""

    path: str
    steps: tuple[str | int, ...]
    value: Scalar


@dataclass(frozen=True)
class JobOptions:
    dry_run: bool = False
    defaults: tuple[FieldDefault, ...] = ()
    max_error_rate: float | None = None
    min_records: int = DEFAULT_MIN_RECORDS
    outcome_events: bool = True

    @property
    def default_targets(self) -> tuple[tuple[str | int, ...], ...]:
        """The field paths the defaults fill (an import's required fields may be left to
        them)."""
        return tuple(d.steps for d in self.defaults)

    def as_message(self) -> dict[str, Any]:
        """The options as ``bulk.requests`` v2 and ``bulk.imports`` carry them."""
        return {
            "dry_run": self.dry_run,
            "defaults": [{"path": d.path, "value": d.value} for d in self.defaults],
            "max_error_rate": self.max_error_rate,
            "min_records": self.min_records if self.max_error_rate is not None else None,
            "outcome_events": self.outcome_events,
        }

    def identity(self) -> tuple[Any, ...]:
        """What two statements of the same options share (the order of the defaults aside)."""
        return (
            self.dry_run,
            frozenset((d.path, type(d.value), d.value) for d in self.defaults),
            self.max_error_rate,
            self.min_records if self.max_error_rate is not None else None,
            self.outcome_events,
        )

    def defaults_json(self) -> dict[str, Scalar] | None:
        """The defaults as the job row and the job object show them."""
        return {d.path: d.value for d in self.defaults} or None


NO_OPTIONS = JobOptions()


def parse_job_options(definition: EntityDefinition | None, body: Mapping[str, Any]) -> JobOptions:
    """The options members of a request body (absent ones take their defaults).

    ``definition`` is None when the entity is unknown: the defaults are then not checked (the
    unknown entity is the error the caller reports).
    """
    errors: list[ApiError] = []
    dry_run = _flag(body, "dry_run", False, errors)
    outcome_events = _flag(body, "outcome_events", True, errors)
    rate = _error_rate(body.get("max_error_rate"), errors)
    min_records = _min_records(body.get("min_records"), rate, errors)
    defaults = _defaults(definition, body.get("defaults"), errors)
    if errors:
        raise InvalidInput(errors)
    return JobOptions(dry_run, defaults, rate, min_records, outcome_events)


def options_from_message(definition: EntityDefinition, message: Mapping[str, Any]) -> JobOptions:
    """The options a decoded ``bulk.requests`` chunk (v2) or ``bulk.imports`` request carries;
    an older writer's message has none. Untrusted like the rest of the chunk:
    :class:`InvalidInput` when they do not pass :func:`parse_job_options`."""
    body: dict[str, Any] = {
        name: message[name] for name in OPTION_FIELDS if message.get(name) is not None
    }
    if "defaults" in body:
        body["defaults"] = {d.get("path"): d.get("value") for d in body["defaults"]}
    return parse_job_options(definition, body)


def options_from_row(row: Mapping[str, Any]) -> JobOptions:
    """The options a job row holds (written from a checked request: not checked again)."""
    defaults = tuple(
        FieldDefault(path, _steps(path), value) for path, value in (row["defaults"] or {}).items()
    )
    return JobOptions(
        dry_run=bool(row["dry_run"]),
        defaults=defaults,
        max_error_rate=row["max_error_rate"],
        min_records=int(row["min_records"] or DEFAULT_MIN_RECORDS),
        outcome_events=bool(row["outcome_events"]),
    )


# --- what they do -----------------------------------------------------------------------------


def with_defaults(record: _R, defaults: Sequence[FieldDefault]) -> _R:
    """``record`` with every default it needs filled in (a copy of what changes; the record
    itself when nothing does, or when it is not an object)."""
    if not defaults or not isinstance(record, dict):
        return record
    filled: Any = record
    for default in defaults:
        filled = _filled(filled, default.steps, default.value)
    return cast(_R, filled)


def error_rate_exceeded(options: JobOptions, processed: int, failed: int) -> bool:
    """Whether the breaker trips: at least ``min_records`` processed and a failure rate above
    ``max_error_rate``."""
    if options.max_error_rate is None or processed < options.min_records or processed == 0:
        return False
    return failed / processed > options.max_error_rate


def error_rate_reason(options: JobOptions, processed: int, failed: int) -> str:
    """The job's ``failure_reason`` once the breaker tripped."""
    assert options.max_error_rate is not None
    return (
        f"Stopped by the error-rate breaker: {failed} of the first {processed} records failed "
        f"({failed / processed:.1%}), above max_error_rate {options.max_error_rate:g} "
        f"(checked from min_records {options.min_records}); the records not processed by then "
        "were skipped as ErrorRateExceeded."
    )


def _filled(container: Any, steps: tuple[str | int, ...], value: Scalar) -> Any:
    """``container`` with ``steps`` filled if every container on the way exists and the leaf is
    absent or null; what changes is copied, never modified (the caller's record is kept)."""
    head, rest = steps[0], steps[1:]
    if isinstance(head, int):
        if not isinstance(container, list) or head >= len(container):
            return container
        child = container[head]
    else:
        if not isinstance(container, dict):
            return container
        child = container.get(head)
    if not rest:
        if child is not None:
            return container
        new_child: Any = value
    else:
        if child is None:
            return container  # a default never creates a container
        new_child = _filled(child, rest, value)
        if new_child is child:
            return container
    if isinstance(head, int):
        return [*container[:head], new_child, *container[head + 1 :]]
    return {**container, head: new_child}


# --- checks -----------------------------------------------------------------------------------


def _flag(body: Mapping[str, Any], name: str, absent: bool, errors: list[ApiError]) -> bool:
    value = body.get(name)
    if value is None:
        return absent
    if isinstance(value, bool):
        return value
    errors.append(
        ApiError(
            ErrorCode.InvalidFieldType,
            f"The {name} member must be true or false, got {json_type_of(value)}",
            field=name,
        )
    )
    return absent


def _error_rate(value: object, errors: list[ApiError]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        message = f"max_error_rate must be a number, got {json_type_of(value)}"
        errors.append(ApiError(ErrorCode.InvalidFieldType, message, field="max_error_rate"))
        return None
    if not (math.isfinite(value) and 0 <= value < 1):
        message = (
            f"max_error_rate must be at least 0 and below 1 (a fraction: 0.1 stops the job when "
            f"more than 10 % of its records fail), got {value!r}"
        )
        errors.append(ApiError(ErrorCode.InvalidValue, message, field="max_error_rate"))
        return None
    return float(value)


def _min_records(value: object, rate: float | None, errors: list[ApiError]) -> int:
    if value is None:
        return DEFAULT_MIN_RECORDS
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1000.0 is a whole number, as JSON Schema's integer says
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"min_records must be a whole number, got {json_type_of(value)}"
        errors.append(ApiError(ErrorCode.InvalidFieldType, message, field="min_records"))
    elif value < 1 or value > 2**31 - 1:
        message = f"min_records must be between 1 and {2**31 - 1}, got {value}"
        errors.append(ApiError(ErrorCode.InvalidValue, message, field="min_records"))
    elif rate is None and not any(e.field == "max_error_rate" for e in errors):
        message = "min_records applies only with max_error_rate: set both, or neither"
        errors.append(ApiError(ErrorCode.InvalidValue, message, field="min_records"))
    else:
        return value
    return DEFAULT_MIN_RECORDS


def _defaults(
    definition: EntityDefinition | None, value: object, errors: list[ApiError]
) -> tuple[FieldDefault, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        message = (
            "The defaults member must be an object of field paths and values, like "
            f'{{"addresses.0.type": "home"}}, got {json_type_of(value)}'
        )
        errors.append(ApiError(ErrorCode.InvalidFieldType, message, field="defaults"))
        return ()
    if len(value) > MAX_DEFAULTS:
        message = f"The defaults member has {len(value)} fields; at most {MAX_DEFAULTS} are allowed"
        errors.append(ApiError(ErrorCode.InvalidValue, message, field="defaults"))
        return ()
    if definition is None:
        return ()
    found = []
    for path, default in value.items():
        checked = _default(definition, path, default, errors)
        if checked is not None:
            found.append(checked)
    return tuple(found)


def _default(
    definition: EntityDefinition, path: str, value: object, errors: list[ApiError]
) -> FieldDefault | None:
    member = f"defaults.{path}"
    try:
        target = resolve_target(definition, path)
    except InvalidInput as exc:
        errors.extend(
            ApiError(e.error_code, f"The defaults name an unknown field: {e.message}", field=member)
            for e in exc.errors
        )
        return None
    if target.path != path:
        message = f"The defaults name {path!r}: write the field path as {target.path!r}"
        errors.append(ApiError(ErrorCode.UnknownField, message, field=member))
        return None
    if target.path == definition.key_field:
        message = (
            f"{definition.key_field} is the key of {definition.name}: every record needs its "
            "own, so it cannot have a default"
        )
        errors.append(ApiError(ErrorCode.InvalidValue, message, field=member))
        return None
    problem = _target_problem(target, value)
    if problem is not None:
        errors.append(ApiError(ErrorCode.InvalidFieldType, problem, field=member))
        return None
    assert isinstance(value, str | int | float | bool)
    found = value_errors(target.spec, value, target.path, "A default")
    if found:
        errors.extend(ApiError(e.error_code, e.message, field=member) for e in found)
        return None
    return FieldDefault(target.path, target.steps, value)


def _target_problem(target: TargetPath, value: object) -> str | None:
    if target.spec.kind in (ValueKind.ARRAY, ValueKind.RECORD):
        return (
            f"A default fills one value, not {target.spec.kind.value} {target.path}: name a "
            f"field inside it (like {target.path}.0.<field>)"
        )
    if target.steps[-1:] and isinstance(target.steps[-1], int):
        return f"A default fills a field, not an array position ({target.path})"
    if value is None or isinstance(value, dict | list):
        return f"A default must be a string, number or boolean, got {json_type_of(value)}"
    return None


def _steps(path: str) -> tuple[str | int, ...]:
    return tuple(int(part) if part.isdigit() else part for part in path.split("."))
