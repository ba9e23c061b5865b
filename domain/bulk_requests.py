"""A bulk request (``POST /{entity}/bulk[/async]``), checked at the gateway: shape, limits,
operation, webhook URL syntax, the job options (:mod:`domain.job_options`) and every record's
basic checks (:mod:`domain.validation`), after its defaults are filled in.

:func:`validate_bulk_request` collects every error (first encountered first, at most 100) and
raises one :class:`~domain.errors.InvalidInput`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from domain.entities import EntityDefinition, EntityRegistry
from domain.errors import MAX_ERRORS, ApiError, ErrorCode, InvalidInput
from domain.job_options import OPTION_FIELDS, JobOptions, parse_job_options, with_defaults
from domain.validation import basic_check, basic_record_errors, json_type_of, shown_value

REQUEST_FIELDS = frozenset({"records", "operation", "webhook_url"}) | OPTION_FIELDS
MAX_WEBHOOK_URL_LENGTH = 2048


class Operation(StrEnum):
    """What a job does with each record."""

    INSERT = "insert"
    UPDATE = "update"
    UPSERT = "upsert"


@dataclass(frozen=True)
class BulkRequest:
    """A bulk request that passed basic validation; ``records`` are as submitted."""

    entity: str
    operation: Operation
    records: tuple[dict[str, Any], ...]
    webhook_url: str | None
    options: JobOptions


def validate_bulk_request(
    registry: EntityRegistry,
    entity_name: str,
    body: object,
    *,
    max_records: int,
    default_operation: Operation,
    too_many_hint: str = "",
) -> BulkRequest:
    """Check an already-parsed JSON body; raise :class:`InvalidInput` with every error found.

    Records are checked only when the entity is known and their count is within ``max_records``.
    """
    errors: list[ApiError] = []
    definition = _collect(errors, lambda: registry.get(entity_name))
    if not isinstance(body, dict):
        errors.append(ApiError(ErrorCode.InvalidFieldType, _NOT_AN_OBJECT))
        raise InvalidInput(errors)
    errors.extend(_unknown_request_fields(body))
    records = _collect(
        errors, lambda: parse_records(body.get("records"), max_records, too_many_hint)
    )
    operation = _collect(errors, lambda: parse_operation(body.get("operation"), default_operation))
    webhook_url = _collect(errors, lambda: parse_webhook_url(body.get("webhook_url")))
    options = _collect(errors, lambda: parse_job_options(definition, body))
    if definition is not None and records is not None and options is not None:
        if options.defaults:
            records = tuple(with_defaults(r, options.defaults) for r in records)
        _collect_record_errors(errors, definition, records)
    if errors or definition is None or records is None or operation is None or options is None:
        raise InvalidInput(errors)
    return BulkRequest(definition.name, operation, records, webhook_url, options)


def invalid_json_error(detail: str) -> InvalidInput:
    """The error for a body that is not JSON at all; ``detail`` says where parsing stopped."""
    return InvalidInput.single(
        ErrorCode.InvalidJson, f"The request body is not valid JSON: {detail}"
    )


def parse_records(
    value: object, max_records: int, too_many_hint: str = ""
) -> tuple[dict[str, Any], ...]:
    """The ``records`` member: a non-empty array of at most ``max_records`` items."""
    if value is None or value == []:
        raise InvalidInput.single(ErrorCode.EmptyRequest, _EMPTY, field="records")
    if not isinstance(value, list):
        message = f"The records member must be an array, got {json_type_of(value)}"
        raise InvalidInput.single(ErrorCode.InvalidFieldType, message, field="records")
    if len(value) > max_records:
        message = f"The request has {len(value)} records; at most {max_records} are allowed here"
        message += f"; {too_many_hint}" if too_many_hint else ""
        raise InvalidInput.single(ErrorCode.MaxRecordsExceeded, message, field="records")
    return tuple(value)


def parse_operation(value: object, default: Operation) -> Operation:
    """The ``operation`` member; absent or null means ``default``."""
    if value is None:
        return default
    if isinstance(value, str) and value in _OPERATIONS:
        return Operation(value)
    choices = ", ".join(operation.value for operation in Operation)
    message = f"The operation must be one of {choices}, got {shown_value(value)}"
    raise InvalidInput.single(ErrorCode.InvalidOperation, message, field="operation")


def parse_webhook_url(value: object) -> str | None:
    """The ``webhook_url`` member: an http(s) URL with a host and no credentials, or null.

    Only syntax is checked here; where the host resolves to is the gateway's business.
    """
    if value is None:
        return None
    problem = _webhook_url_problem(value)
    if problem is not None:
        # The URL is not echoed: it may carry credentials.
        message = f"The webhook_url is not usable: {problem}"
        raise InvalidInput.single(ErrorCode.InvalidWebhookUrl, message, field="webhook_url")
    assert isinstance(value, str)  # _webhook_url_problem says so
    return value


_OPERATIONS = frozenset(operation.value for operation in Operation)
_NOT_AN_OBJECT = 'The request body must be a JSON object like {"records": [...]}'
_EMPTY = "The request has no records: send records as a non-empty array"
_R = TypeVar("_R")


def _collect(errors: list[ApiError], parse: Callable[[], _R]) -> _R | None:
    """Run one parse step; its :class:`InvalidInput` errors join ``errors`` instead of raising."""
    try:
        return parse()
    except InvalidInput as exc:
        errors.extend(exc.errors)
        return None


def _unknown_request_fields(body: Mapping[str, Any]) -> list[ApiError]:
    return [
        ApiError(ErrorCode.UnknownField, f"The request has an unknown field {name}", field=name)
        for name in body
        if name not in REQUEST_FIELDS
    ]


def _collect_record_errors(
    errors: list[ApiError], definition: EntityDefinition, records: tuple[object, ...]
) -> None:
    passes = basic_check(definition)
    for index, record in enumerate(records):
        if passes(record):
            continue
        if len(errors) >= MAX_ERRORS:
            return
        errors.extend(basic_record_errors(definition, record, index))


def _webhook_url_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {json_type_of(value)}"
    if len(value) > MAX_WEBHOOK_URL_LENGTH:
        return f"longer than {MAX_WEBHOOK_URL_LENGTH} characters"
    if any(char.isspace() or not char.isprintable() for char in value):
        return "it contains spaces or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "it has no host"
    if "@" in parts.netloc:
        return "credentials in the URL are not allowed"
    return None
