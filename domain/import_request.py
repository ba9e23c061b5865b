"""The ``POST /imports`` body, checked without the file or the database.

:func:`parse_import_request` raises one :class:`~domain.errors.InvalidInput` with every problem
found; what needs the file (the header, the mapping) is :mod:`domain.import_mapping`'s.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.bulk_requests import Operation, parse_operation, parse_webhook_url
from domain.entities import EntityDefinition, EntityRegistry
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.job_options import NO_OPTIONS, OPTION_FIELDS, JobOptions, parse_job_options

IMPORT_FIELDS = (
    frozenset(
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
            "retry_of",  # the gateway's (api.import_retry): it fills the rest from that job
        }
    )
    | OPTION_FIELDS
)
SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")
UUID_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


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
    options: JobOptions = NO_OPTIONS


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
    options = collect(lambda: parse_job_options(definition, body))
    if errors or definition is None or operation is None or mappings is None or options is None:
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
        options=options,
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
    if file_id is not None and not (isinstance(file_id, str) and UUID_PATTERN.fullmatch(file_id)):
        raise InvalidInput.single(
            ErrorCode.InvalidParameter, f"There is no file {file_id!r}", field="file_id"
        )
    if sha256 is not None and not (isinstance(sha256, str) and SHA256_PATTERN.fullmatch(sha256)):
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
        value = DELIMITER_NAMES.get(value.lower(), value)
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
