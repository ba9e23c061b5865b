"""The OpenAPI 3.1 document of the gateway, built from the code that answers (pure).

:func:`openapi_document` describes every route the gateway serves (``api/*.py``; a unit test
compares the two), with its parameters, request bodies, answers and error bodies by status
code, and examples produced by the very functions that build the answers. The schemas come
from :mod:`domain.openapi_schemas`; the operations are listed in :mod:`domain.openapi_paths`.
The gateway serves the document at ``GET /api/v1/openapi.json`` and renders it at ``/docs``.
"""

from __future__ import annotations

from typing import Any

from domain import json_schema as js
from domain.entities import EntityRegistry
from domain.errors import ApiError, ErrorCode
from domain.openapi_paths import paths
from domain.openapi_schemas import Limits, schemas

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.1.0"
BEARER = "bearer"

_DESCRIPTION = """\
Asynchronous bulk import that accounts for every record: submit JSON batches or upload files,
then poll the job, follow its live progress, wait for its signed webhook, and download what
failed and why.

Every route under `/api/v1` takes `Authorization: Bearer <api_key>` (a tenant's key, from
`bulk-ingest tenants create`), except this document. A tenant never sees another tenant's jobs,
files, reports or webhooks: they answer `404`. Every 4xx and 5xx answer has the error body
`{"errors": [{"errorCode", "message", "moreInfo", "index"?, "field"?}]}`; the codes are
explained in docs/errors.md. Unknown paths answer `404 NotFound`, a method a path does not take
`405 MethodNotAllowed` with an `Allow` header.

Answers may gain fields in later versions: ignore the ones you do not know."""


def openapi_document(registry: EntityRegistry, limits: Limits) -> dict[str, Any]:
    """The whole document, ready for ``json.dumps``."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Bulk Ingest",
            "version": API_VERSION,
            "summary": "Bulk import of business records that accounts for every record",
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This gateway"}],
        "tags": _TAGS,
        "security": [{BEARER: []}],
        "paths": paths(registry, limits),
        "webhooks": _webhooks(),
        "components": {
            "schemas": schemas(registry, limits),
            "responses": _responses(limits),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant's API key: `Authorization: Bearer bik_…`",
                }
            },
        },
    }


_TAGS = [
    {"name": "bulk", "description": "Submit records as JSON: asynchronously or waiting"},
    {"name": "jobs", "description": "Jobs: their state, live progress, cancel"},
    {"name": "reports", "description": "What failed and why; every record's result"},
    {"name": "webhooks", "description": "The job's completion webhook: attempts, redelivery"},
    {"name": "files", "description": "Uploads (CSV, ZIP, XLSX, NDJSON) and imports of them"},
    {"name": "entities", "description": "The entities and the fields their records take"},
    {"name": "service", "description": "Health, metrics, this document"},
]


def error_example(code: ErrorCode, message: str, **where: Any) -> dict[str, Any]:
    """An error body as the gateway writes it (:meth:`ApiError.to_dict`)."""
    return {"errors": [ApiError(code, message, **where).to_dict()]}


def error_content(*examples: tuple[str, dict[str, Any]], schema: str = "ErrorBody") -> js.Schema:
    return {
        "application/json": {
            "schema": js.ref(schema),
            "examples": {name: {"value": value} for name, value in examples},
        }
    }


def _responses(limits: Limits) -> dict[str, Any]:
    return {
        "Unauthorized": {
            "description": "No API key, or one that is unknown or revoked",
            "headers": {"WWW-Authenticate": _header("Bearer", required=True)},
            "content": error_content(
                (
                    "unknown",
                    error_example(ErrorCode.Unauthorized, "The API key is unknown or revoked."),
                )
            ),
        },
        "NotFound": {
            "description": "Nothing of this tenant's has that id (other tenants' too)",
            "content": error_content(
                ("job", error_example(ErrorCode.NotFound, "Job 7c0… does not exist."))
            ),
        },
        "PayloadTooLarge": {
            "description": f"The body is over {limits.max_body_bytes} bytes "
            f"(uploads: {limits.max_file_bytes})",
            "content": error_content(
                (
                    "too_large",
                    error_example(ErrorCode.PayloadTooLarge, "The request body is too large …"),
                )
            ),
        },
        "ServiceUnavailable": {
            "description": "Kafka or PostgreSQL cannot be reached; retry after a while",
            "headers": {"Retry-After": _header("Seconds", required=True)},
            "content": error_content(
                (
                    "unavailable",
                    error_example(
                        ErrorCode.ServiceUnavailable,
                        "The service cannot reach its database or message broker right now.",
                    ),
                )
            ),
        },
    }


def _header(description: str, *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


def _webhooks() -> dict[str, Any]:
    signed = {
        "webhook-id": _header("Stable across retries of one delivery", required=True),
        "webhook-timestamp": _header("Unix seconds of this attempt", required=True),
        "webhook-signature": _header(
            'v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">, keyed with '
            "the tenant's webhook_secret (the bytes after whsec_, base64-decoded)",
            required=True,
        ),
    }
    return {
        "jobFinished": {
            "post": {
                "summary": "A job reached a terminal status",
                "description": "Sent to the job's webhook_url, signed per Standard Webhooks. "
                "Non-2xx or a timeout is retried with backoff for up to 3 days (Retry-After "
                "honoured); 410 stops the retries.",
                "parameters": [
                    {"name": name, "in": "header", **header} for name, header in signed.items()
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": js.ref("WebhookEvent")}},
                },
                "responses": {"2XX": {"description": "Received"}},
            }
        }
    }
