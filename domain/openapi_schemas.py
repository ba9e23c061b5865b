"""The schemas of the OpenAPI document (``components.schemas``), pure.

Where an answer is built in the domain, its schema is read off the same field list
(:data:`domain.job_view.JOB_FIELDS`, :data:`domain.errors.API_ERROR_FIELDS`, …); records come
from the entity definitions (:mod:`domain.record_schema`). The answers the gateway builds
itself (files, webhook attempts, entity listings, health) are described here and held to
their schemas by the conformance checks of the end-to-end tests
(``tests/support/conformance.py``), which refuse any field the document does not name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain import json_schema as js
from domain.bulk_requests import MAX_WEBHOOK_URL_LENGTH, REQUEST_FIELDS
from domain.entities import EntityDefinition, EntityRegistry, ValueKind
from domain.errors import API_ERROR_FIELDS, ErrorCode, error_body_schema
from domain.file_types import FILE_STORAGES, FileFormat
from domain.import_request import DELIMITER_NAMES, IMPORT_FIELDS, SHA256_PATTERN, UUID_PATTERN
from domain.job_view import (
    EVENT_TYPES,
    JOB_FIELDS,
    OPERATIONS,
    PROGRESS_FIELDS,
    RESULT_FIELDS,
    WEBHOOK_FIELDS,
)
from domain.json_schema import view_schema
from domain.openapi_options import MIN_RECORDS_NEEDS_RATE, option_properties
from domain.record_schema import record_schema
from domain.retry import MAX_CODES

WEBHOOK_URL = js.nullable(
    js.string(
        "Called when the job ends (http or https, a host that resolves to a public address "
        "unless the deployment allows others, no credentials)",
        format="uri",
        maxLength=MAX_WEBHOOK_URL_LENGTH,
        pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s@/?#]+(?:[/?#]\S*)?$",
    )
)
OPERATION = js.nullable(js.enum(OPERATIONS, "What each record does; null means the default"))


@dataclass(frozen=True)
class Limits:
    """The deployment's limits the document states (from the gateway's settings)."""

    max_async_records: int
    max_sync_records: int
    sync_timeout_seconds: float
    max_body_bytes: int
    max_file_bytes: int


def entity_component(definition: EntityDefinition) -> str:
    """``Customer``: the name of an entity's record schema (its Avro record's name)."""
    return str(definition.avro_schema["name"]).rpartition(".")[2]


def schemas(registry: EntityRegistry, limits: Limits) -> dict[str, js.Schema]:
    """Every component schema, by name."""
    entities = [registry.get(name) for name in registry.names()]
    found: dict[str, js.Schema] = {}
    for definition in entities:
        name = entity_component(definition)
        found[name] = record_schema(definition)
        found[f"{name}BulkRequest"] = bulk_request(definition, limits.max_async_records)
        found[f"{name}SyncBulkRequest"] = bulk_request(definition, limits.max_sync_records)
    job = job_schema(registry)
    found.update(
        Job=job,
        JobWithResults=with_results(job),
        JobList=js.obj(
            {
                "jobs": js.array(js.ref("Job"), "Newest first; without their errors"),
                "next_cursor": js.nullable(js.string("Pass as cursor for the next page")),
            },
            ["jobs", "next_cursor"],
        ),
        Progress=view_schema(PROGRESS_FIELDS, "A progress event's data"),
        Error=view_schema(API_ERROR_FIELDS, "One error"),
        ErrorBody=error_body_schema(),
        ImportBlocked=import_blocked(),
        ImportRequest=import_request(registry),
        RetryRequest=retry_request(),
        File=file_schema(),
        ErrorCodeCounts=error_code_counts(),
        WebhookAttempts=js.obj({"attempts": js.array(webhook_attempt())}, ["attempts"]),
        WebhookDelivery=webhook_delivery(),
        WebhookEvent=view_schema(WEBHOOK_FIELDS, "The body of a job's webhook"),
        EntityList=entity_list(),
        EntityDescription=entity_description(),
        Health=js.obj(
            {
                "status": js.enum(("ok", "unavailable")),
                "postgres": {"type": "boolean"},
                "kafka": {"type": "boolean"},
            },
            ["status", "postgres", "kafka"],
        ),
    )
    return found


def job_schema(registry: EntityRegistry) -> js.Schema:
    schema = view_schema(JOB_FIELDS, "A job (design.md §3)")
    schema["properties"]["entity"] = js.enum(registry.names(), "The entity the records are")
    return schema


def with_results(job: js.Schema) -> js.Schema:
    """The sync answer: the job and one result per record, in input order."""
    schema = js.obj(
        {**job["properties"], "results": js.array(view_schema(RESULT_FIELDS))},
        [*job["required"], "results"],
        "A finished job with each record's result (sync endpoint)",
    )
    return schema


def bulk_request(definition: EntityDefinition, max_records: int) -> js.Schema:
    component = entity_component(definition)
    properties = {
        "records": js.array(js.ref(component), minItems=1, maxItems=max_records),
        "operation": OPERATION,
        "webhook_url": WEBHOOK_URL,
        **option_properties(definition),
    }
    assert set(properties) == REQUEST_FIELDS  # every member validation takes, no other
    return js.obj(properties, ["records"], additionalProperties=False, **MIN_RECORDS_NEEDS_RATE)


def import_request(registry: EntityRegistry) -> js.Schema:
    """``POST /imports``: exactly one of ``file_id`` and ``sha256`` (a null one is absent)."""
    properties = {
        "file_id": js.nullable(
            js.string("An uploaded file's id", pattern=f"^(?:{UUID_PATTERN.pattern})$")
        ),
        "sha256": js.nullable(
            js.string("An uploaded file's SHA-256", pattern=f"^{SHA256_PATTERN.pattern}$")
        ),
        "entity": js.enum(registry.names()),
        "operation": OPERATION,
        "field_mappings": js.nullable(
            {
                "type": "object",
                "description": "Source column → target field path; null skips a column. "
                "Default: columns named like fields (case-insensitive)",
                "additionalProperties": js.nullable(js.string(minLength=1)),
                "examples": [{"Customer ID": "externalId", "City": "addresses.0.city"}],
            }
        ),
        "upsert_key": js.nullable(js.string("The entity's key; the only one there is")),
        "webhook_url": WEBHOOK_URL,
        "exclusive": js.nullable(
            {
                "type": "boolean",
                "description": "Refuse to run beside another import of this entity (409 BLOCKED)",
            }
        ),
        "sheet": js.nullable(js.string("XLSX: the sheet to read", minLength=1)),
        "encoding": js.nullable(js.string("Overrides the sniffed encoding (utf-8, cp1252, …)")),
        "delimiter": js.nullable(
            js.string(
                "Overrides the sniffed delimiter: one character, or a name",
                pattern=_delimiter_pattern(),
            )
        ),
        "retry_of": js.nullable(
            js.string(
                "Import a fixed failure report of this file import: its source columns, with "
                "its entity, operation, field mappings and webhook URL unless given here",
                pattern=f"^(?:{UUID_PATTERN.pattern})$",
            )
        ),
        **option_properties(None),
    }
    assert set(properties) == IMPORT_FIELDS  # every member the parser takes, no other
    one_file = [
        {"required": [name], "properties": {name: {"type": "string"}}}
        for name in ("file_id", "sha256")
    ]
    keys = [_key_rule(registry.get(name)) for name in registry.names()]
    entity_known = {
        "anyOf": [
            {"required": ["entity"]},
            {"required": ["retry_of"], "properties": {"retry_of": {"type": "string"}}},
        ]
    }
    return js.obj(
        properties,
        [],
        additionalProperties=False,
        oneOf=one_file,
        allOf=[*keys, entity_known, MIN_RECORDS_NEEDS_RATE],
    )


def _key_rule(definition: EntityDefinition) -> js.Schema:
    return {
        "if": {"properties": {"entity": {"const": definition.name}}},
        "then": {"properties": {"upsert_key": {"enum": [definition.key_field, None]}}},
    }


def _delimiter_pattern() -> str:
    names = [_any_case(name) for name in DELIMITER_NAMES]
    return f'^(?:[^"\\r\\n]|{"|".join(names)})$'


def _any_case(name: str) -> str:
    return "".join(
        f"[{char.upper()}{char.lower()}]" if char.isalpha() else re.escape(char) for char in name
    )


def retry_request() -> js.Schema:
    """``POST /jobs/{id}/retry``: optionally, the error codes to retry."""
    codes = js.array(
        js.enum(ErrorCode), "Retry only records with these codes", minItems=1, maxItems=MAX_CODES
    )
    return js.obj({"codes": js.nullable(codes)}, [], additionalProperties=False)


def import_blocked() -> js.Schema:
    body = error_body_schema()
    body["properties"].update(status=js.enum(("BLOCKED",)), blocking_job_id=js.UUID)
    body["required"] = ["status", "blocking_job_id", "errors"]
    body["description"] = "An exclusive import waits for the one still running"
    return body


def file_schema() -> js.Schema:
    """``file_object`` of :mod:`api.files`; ``sheets`` (XLSX), ``member`` (ZIP), ``warnings``
    only where they apply."""
    strings = js.array(js.string())
    properties: dict[str, Mapping[str, Any]] = {
        "file_id": js.UUID,
        "sha256": js.string(pattern="^[0-9a-f]{64}$"),
        "size": js.integer("Bytes", minimum=1),
        "format": js.enum(FileFormat),
        "storage": js.enum(FILE_STORAGES),
        "expires_at": js.nullable(js.TIMESTAMP),
        "encoding": js.nullable(js.string()),
        "delimiter": js.nullable(js.string()),
        "columns": strings,
        "filename": js.nullable(js.string()),
        "created_at": js.TIMESTAMP,
        "sheets": strings,
        "member": js.obj(
            {"name": js.nullable(js.string()), "format": js.string()}, ["name", "format"]
        ),
        "warnings": strings,
    }
    optional = {"sheets", "member", "warnings"}
    return js.obj(properties, [name for name in properties if name not in optional])


def error_code_counts() -> js.Schema:
    count = js.obj(
        {"errorCode": js.enum(ErrorCode), "count": js.integer(minimum=1)}, ["errorCode", "count"]
    )
    return js.obj({"job_id": js.UUID, "codes": js.array(count)}, ["job_id", "codes"])


def webhook_attempt() -> js.Schema:
    """``attempt_object`` of :mod:`api.webhooks`."""
    return _all_required(
        webhook_id=js.string(),
        attempt=js.integer(minimum=1),
        at=js.TIMESTAMP,
        status_code=js.nullable(js.integer()),
        latency_ms=js.nullable(js.integer(minimum=0)),
        error=js.nullable(js.string()),
        next_attempt_at=js.nullable(js.TIMESTAMP),
    )


def webhook_delivery() -> js.Schema:
    """``delivery_object`` of :mod:`api.webhooks`."""
    return _all_required(
        webhook_id=js.string(),
        job_id=js.UUID,
        url=js.string(),
        type=js.enum(sorted(set(EVENT_TYPES.values()))),
        state=js.enum(("PENDING", "DELIVERED", "FAILED")),
        attempts_made=js.integer(minimum=0),
        next_attempt_at=js.nullable(js.TIMESTAMP),
        delivered_at=js.nullable(js.TIMESTAMP),
    )


def entity_list() -> js.Schema:
    entity = _all_required(name=js.string(), key=js.string())
    return js.obj({"entities": js.array(entity)}, ["entities"])


def entity_description() -> js.Schema:
    """:func:`domain.entity_description.entity_description`."""
    kinds = [kind.value for kind in ValueKind if kind not in (ValueKind.ARRAY, ValueKind.RECORD)]
    field = js.obj(
        {
            "path": js.string("A dotted path a record or a mapping can name"),
            "type": js.enum(kinds),
            "required": {"type": "boolean"},
            "rules": js.array(
                js.string(), "The field's rules as a person reads them (length, format, …)"
            ),
            "max_items": js.integer("An array position: how many items the array takes"),
        },
        ["path", "type", "required", "rules"],
    )
    return _all_required(name=js.string(), key=js.string(), fields=js.array(field))


def _all_required(**properties: Mapping[str, Any]) -> js.Schema:
    return js.obj(properties, list(properties))
