"""The operations of the OpenAPI document (``paths``), pure; see :mod:`domain.openapi`.

Each operation lists every status the gateway answers it with; the job operations are in
:mod:`domain.openapi_job_paths`, the building blocks in :mod:`domain.openapi_parts`.
"""

from __future__ import annotations

from typing import Any

from domain import json_schema as js
from domain.entities import EntityDefinition, EntityRegistry
from domain.entity_template import MEDIA_TYPES, TEMPLATE_FORMATS
from domain.errors import ErrorCode
from domain.file_types import FILE_STORAGES
from domain.job_view import API_PREFIX, record_results
from domain.jobs import JobStatus
from domain.openapi_job_paths import job_paths
from domain.openapi_parts import (
    BAD_PARAMETER,
    FILE_ID,
    IDEMPOTENCY_KEY,
    JSON,
    NOT_FOUND,
    TEXT,
    UNAVAILABLE,
    accepted,
    download,
    example_job,
    header,
    json_answer,
    link,
    operation,
    path_parameter,
    problem,
    query,
    shared,
)
from domain.openapi_schemas import Limits, entity_component


def paths(registry: EntityRegistry, limits: Limits) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in registry.names():
        found.update(_bulk_paths(registry.get(name), limits))
    found.update(job_paths())
    found.update(_file_paths(limits))
    found.update(_entity_paths(registry))
    found.update(_service_paths())
    return found


# --- bulk -----------------------------------------------------------------------------------------


def _bulk_paths(definition: EntityDefinition, limits: Limits) -> dict[str, Any]:
    name, component = definition.name, entity_component(definition)
    refused = problem(
        "Basic validation refused the request; nothing was kept",
        (
            "missing",
            ErrorCode.MissingRequiredField,
            f"{definition.label} at index 3 is missing {definition.key_field}",
        ),
        (
            "too_many",
            ErrorCode.MaxRecordsExceeded,
            f"The request has {limits.max_sync_records + 1} records; at most "
            f"{limits.max_sync_records} are allowed here",
        ),
    )
    common = {
        "409": problem(
            "The Idempotency-Key was used with a different body",
            (
                "reused",
                ErrorCode.IdempotencyKeyReused,
                "Idempotency-Key 'order-1' was already used for a different request",
            ),
        ),
        "413": shared("PayloadTooLarge"),
        "422": refused,
        "503": shared("ServiceUnavailable"),
    }
    paths: dict[str, Any] = {}
    for sync in (False, True):
        path = f"{API_PREFIX}/{name}/bulk" + ("" if sync else "/async")
        request = f"{component}SyncBulkRequest" if sync else f"{component}BulkRequest"
        most = limits.max_sync_records if sync else limits.max_async_records
        operations = {}
        for method, default in (("post", "insert"), ("put", "update")):
            operation_id = f"{'submit' if method == 'post' else 'resubmit'}_{name}" + (
                "_sync" if sync else ""
            )
            summary = (
                f"Submit up to {most} {name}, waiting up to {limits.sync_timeout_seconds:g} s "
                "for their results"
                if sync
                else f"Submit up to {most} {name} as a job"
            )
            answers: dict[str, Any] = {
                "202": accepted(
                    "Not finished in time: the job as it is now" if sync else "Accepted"
                ),
                **common,
            }
            if sync:
                answers["200"] = json_answer(
                    "Finished: the job and each record's result", "JobWithResults", _sync_example()
                )
            operations[method] = operation(
                operation_id,
                "bulk",
                summary,
                answers,
                description=f"`operation` defaults to `{default}` with {method.upper()}. "
                "Basic validation (shape, limits, required fields, types, formats, unknown "
                "fields, operation, webhook URL) runs first; semantic checks run in the workers "
                "and fail records of the job.",
                parameters=[IDEMPOTENCY_KEY],
                body={"required": True, "content": {JSON: {"schema": js.ref(request)}}},
            )
        paths[path] = operations
    return paths


def _sync_example() -> dict[str, Any]:
    body = example_job(JobStatus.COMPLETED)
    body.update(total=1, processed=1, successful=1, failed=0, errors=[])
    outcome = {
        "index": 0,
        "key": "c-1",
        "status": "CREATED",
        "record_id": "5b1f3f0e-8d4c-4b8e-a7b3-0c6f5a2d9e11",
        "error_code": None,
        "error_message": None,
    }
    body["results"] = record_results([outcome])
    return body


# --- files and imports ----------------------------------------------------------------------------

UPLOAD_TYPES = (
    "text/csv",
    "application/x-ndjson",
    "application/zip",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/octet-stream",
)


def _file_paths(limits: Limits) -> dict[str, Any]:
    files = f"{API_PREFIX}/files"
    binary = {"schema": {"type": "string", "format": "binary"}}
    upload = {
        "required": True,
        "description": f"The file's bytes (at most {limits.max_file_bytes}), or a multipart "
        "form with the field `file`",
        "content": {
            **{media: binary for media in UPLOAD_TYPES},
            "multipart/form-data": {
                "schema": js.obj({"file": {"type": "string", "format": "binary"}}, ["file"])
            },
        },
    }
    file_links = {
        "GetFile": link("get_file", "file_id", "file_id", "The file's profile"),
        "DeleteFile": link("delete_file", "file_id", "file_id", "Delete it"),
    }
    unreadable = problem(
        "The file is empty or cannot be imported",
        (
            "unreadable",
            ErrorCode.InvalidFormat,
            "The file is not CSV, NDJSON, XLSX or a ZIP holding one of them",
        ),
    )
    blocked = {
        "description": "An exclusive import of this entity is still running, the "
        "Idempotency-Key was used with a different body, or retry_of names a job still running "
        "(JobNotTerminal)",
        "content": {JSON: {"schema": {"anyOf": [js.ref("ImportBlocked"), js.ref("ErrorBody")]}}},
    }
    return {
        files: {
            "post": operation(
                "upload_file",
                "files",
                "Upload a file to import",
                {
                    "201": json_answer(
                        "Stored and profiled",
                        "File",
                        headers={
                            "Location": header("Location", f"{files}/{{file_id}}", required=True)
                        },
                        links=file_links,
                    ),
                    "413": shared("PayloadTooLarge"),
                    "422": unreadable,
                    **UNAVAILABLE,
                },
                parameters=[
                    query(
                        "storage",
                        {**js.enum(FILE_STORAGES), "default": FILE_STORAGES[0]},
                        "temporary: deleted an hour after the upload; directory: kept until "
                        "deleted",
                    ),
                    query("filename", TEXT, "The file's name (else Content-Disposition)"),
                ],
                body=upload,
            )
        },
        files + "/{file_id}": {
            "get": operation(
                "get_file",
                "files",
                "A file's profile",
                {"200": json_answer("The file", "File"), **NOT_FOUND, **UNAVAILABLE},
                parameters=[FILE_ID],
            ),
            "delete": operation(
                "delete_file",
                "files",
                "Delete a file",
                {"204": {"description": "Deleted"}, **NOT_FOUND, **UNAVAILABLE},
                parameters=[FILE_ID],
            ),
        },
        f"{API_PREFIX}/imports": {
            "post": operation(
                "start_import",
                "files",
                "Import an uploaded file",
                {
                    "202": accepted("Accepted: the workers read the rows"),
                    "409": blocked,
                    "413": shared("PayloadTooLarge"),
                    "422": problem(
                        "The request, the file or the mapping cannot be imported",
                        (
                            "unmapped",
                            ErrorCode.MissingRequiredField,
                            "No column maps to the required field firstName",
                        ),
                    ),
                    **UNAVAILABLE,
                },
                description="Checks that need only the file's header run now (422); rows are "
                "parsed by the workers, a bad row becomes a failed record with its line.",
                parameters=[IDEMPOTENCY_KEY],
                body={"required": True, "content": {JSON: {"schema": js.ref("ImportRequest")}}},
            )
        },
    }


# --- entities and the service ---------------------------------------------------------------------


def _entity_paths(registry: EntityRegistry) -> dict[str, Any]:
    entities = f"{API_PREFIX}/entities"
    entity = path_parameter("entity", js.enum(registry.names()), "An entity")
    unknown = problem(
        "No such entity", ("unknown", ErrorCode.UnknownEntity, "Entity 'orders' does not exist")
    )
    return {
        entities: {
            "get": operation(
                "list_entities",
                "entities",
                "The entities",
                {"200": json_answer("Each with its key", "EntityList")},
            )
        },
        entities + "/{entity}": {
            "get": operation(
                "describe_entity",
                "entities",
                "The field paths an entity's records take",
                {"200": json_answer("Its fields", "EntityDescription"), "404": unknown},
                parameters=[entity],
            )
        },
        entities + "/{entity}/template": {
            "get": operation(
                "get_entity_template",
                "entities",
                "An import template: the header row and one example row (CSV or XLSX)",
                {
                    "200": download(
                        "The entity's field paths as columns (each mapped by default) and one "
                        "example row that imports cleanly; XLSX adds a sheet Fields documenting "
                        "each field (type, required, rules, key, example)",
                        MEDIA_TYPES.values(),
                        "{entity}-template.csv",
                    ),
                    "404": unknown,
                    "422": problem("format is neither csv nor xlsx", BAD_PARAMETER),
                },
                parameters=[
                    entity,
                    query(
                        "format",
                        {**js.enum(TEMPLATE_FORMATS), "default": TEMPLATE_FORMATS[0]},
                        "csv or xlsx",
                    ),
                ],
            )
        },
    }


def _service_paths() -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    return {
        "/healthz": {
            "get": operation(
                "health",
                "service",
                "Whether the gateway reaches Kafka and PostgreSQL",
                {
                    "200": json_answer("Both reached", "Health"),
                    "503": json_answer("One is not", "Health"),
                },
                public=True,
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "service",
                "Prometheus metrics of this gateway",
                {"200": {"description": "Prometheus text format", "content": {"text/plain": text}}},
                public=True,
            )
        },
        f"{API_PREFIX}/openapi.json": {
            "get": operation(
                "openapi",
                "service",
                "This document",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
                public=True,
            )
        },
        "/docs": {
            "get": operation(
                "docs",
                "service",
                "This document, rendered (Swagger UI, served locally)",
                {"200": {"description": "A web page", "content": {"text/html": text}}},
                public=True,
            )
        },
        "/": {
            "get": operation(
                "dashboard",
                "service",
                "The dashboard: jobs, live progress, errors, downloads, file imports",
                {"200": {"description": "A web page", "content": {"text/html": text}}},
                description="Its own API calls carry the key typed into the page.",
                public=True,
            )
        },
        "/assets/{name}": {
            "get": operation(
                "dashboard_asset",
                "service",
                "A file of the dashboard (its scripts, style sheet, icon)",
                {
                    "200": {"description": "The file", "content": {"*/*": text}},
                    "404": problem("No such file", ("none", ErrorCode.NotFound, "Nothing there")),
                },
                parameters=[path_parameter("name", js.string(), "The file's name")],
                public=True,
            )
        },
        "/docs/assets/{name}": {
            "get": operation(
                "docs_asset",
                "service",
                "A file of the page (its script, Swagger UI's script and style sheet)",
                {
                    "200": {"description": "The file", "content": {"*/*": text}},
                    "404": problem("No such file", ("none", ErrorCode.NotFound, "Nothing there")),
                },
                parameters=[path_parameter("name", js.string(), "The file's name")],
                public=True,
            )
        },
    }
