"""Building blocks of the OpenAPI document's operations (:mod:`domain.openapi_paths`), pure.

Examples are built by the code that builds the answers (:func:`domain.job_view.job_object` on
an example row), so they show what the service sends.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from domain import json_schema as js
from domain.errors import ApiError, ErrorCode
from domain.job_view import API_PREFIX, job_object
from domain.jobs import JobStatus

Operation = dict[str, Any]
JSON = "application/json"
EXAMPLE_JOB_ID = "7c0e2a4e-1c55-4b7e-9b1a-3f4f0d6f2a10"
TEXT = js.string("Text; U+0000 is refused", pattern="^[^\\u0000]*$")
"""A query parameter's text: no storage holds U+0000."""
_MOMENT = datetime(2026, 11, 22, 10, 15, 30, 123000, tzinfo=UTC)
_EXAMPLE_ROW = {
    "job_id": EXAMPLE_JOB_ID,
    "entity": "customers",
    "operation": "insert",
    "source": "api",
    "status": JobStatus.COMPLETED_WITH_ERRORS.value,
    "total": 5000,
    "processed": 5000,
    "successful": 4998,
    "failed": 2,
    "skipped": 0,
    "webhook_url": "https://example.com/hooks/bulk",
    "created_at": _MOMENT,
    "started_at": _MOMENT,
    "completed_at": _MOMENT,
    "updated_at": _MOMENT,
}
_EXAMPLE_FAILURE = {
    "index": 17,
    "key": "c-17",
    "error_code": ErrorCode.DuplicateKey.value,
    "error_message": "externalId c-17 already exists",
}


# --- building blocks ------------------------------------------------------------------------------


def operation(
    operation_id: str,
    tag: str,
    summary: str,
    responses: Mapping[str, Any],
    *,
    description: str = "",
    parameters: Iterable[Mapping[str, Any]] = (),
    body: Mapping[str, Any] | None = None,
    public: bool = False,
) -> Operation:
    operation: Operation = {"operationId": operation_id, "tags": [tag], "summary": summary}
    if description:
        operation["description"] = description
    listed = [dict(parameter) for parameter in parameters]
    if listed:
        operation["parameters"] = listed
    if body is not None:
        operation["requestBody"] = dict(body)
    if public:
        operation["security"] = []
    else:
        responses = {"401": shared("Unauthorized"), **responses}
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def shared(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def path_parameter(name: str, schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": dict(schema),
    }


def query(name: str, schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": dict(schema),
    }


def header(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


JOB_ID = path_parameter("job_id", js.UUID, "A job of this tenant")
FILE_ID = path_parameter("file_id", js.UUID, "A file of this tenant")
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "The same key with the same body answers the same job (Idempotent-Replayed: "
    "true); with a different body it is 409 IdempotencyKeyReused. Empty means none",
    "schema": {"type": "string"},
}


def problem(description: str, *examples: tuple[str, ErrorCode, str]) -> dict[str, Any]:
    """A 4xx answer with the error body and one example per ``(name, code, message)``."""
    return {
        "description": description,
        "content": {
            JSON: {
                "schema": js.ref("ErrorBody"),
                "examples": {
                    name: {"value": {"errors": [ApiError(code, message).to_dict()]}}
                    for name, code, message in examples
                },
            }
        },
    }


def json_answer(
    description: str,
    component: str,
    example: Any = None,
    *,
    headers: Mapping[str, Any] | None = None,
    links: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": js.ref(component)}
    if example is not None:
        content["example"] = example
    answer: dict[str, Any] = {"description": description, "content": {JSON: content}}
    if headers:
        answer["headers"] = dict(headers)
    if links:
        answer["links"] = dict(links)
    return answer


def link(operation_id: str, parameter: str, pointer: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "parameters": {parameter: f"$response.body#/{pointer}"},
        "description": description,
    }


JOB_LINKS = {
    "GetJob": link("get_job", "job_id", "job_id", "Poll the job"),
    "CancelJob": link("cancel_job", "job_id", "job_id", "Cancel it"),
    "GetReport": link("get_job_report", "job_id", "job_id", "What failed, once it ended"),
    "GetResults": link("get_job_results", "job_id", "job_id", "Every record's result"),
    "GetErrorCodes": link("get_job_error_codes", "job_id", "job_id", "Failures by code"),
    "ListWebhooks": link("list_job_webhooks", "job_id", "job_id", "Its webhook attempts"),
    "Redeliver": link("redeliver_job_webhook", "job_id", "job_id", "Send its webhook again"),
}


def example_job(status: JobStatus = JobStatus.COMPLETED_WITH_ERRORS) -> dict[str, Any]:
    """A job object as :func:`job_object` builds it."""
    row = {**_EXAMPLE_ROW, "status": status.value}
    if status in (JobStatus.PENDING, JobStatus.READY):
        row.update(processed=0, successful=0, failed=0, started_at=None, completed_at=None)
    return job_object(row, [_EXAMPLE_FAILURE] if row["failed"] else [])


def accepted(description: str) -> dict[str, Any]:
    return json_answer(
        description,
        "Job",
        example_job(JobStatus.PENDING),
        headers={
            "Location": header("Location", f"{API_PREFIX}/jobs/{{job_id}}", required=True),
            "Idempotent-Replayed": header("Idempotent-Replayed", "true on a replay"),
        },
        links=JOB_LINKS,
    )


EVENTS = "text/event-stream"
NOT_FOUND = {"404": shared("NotFound")}
UNAVAILABLE = {"503": shared("ServiceUnavailable")}


def stream(description: str, events: Mapping[str, str]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"Cache-Control": header("Cache-Control", "no-cache", required=True)},
        "content": {
            EVENTS: {
                "schema": {"type": "string"},
                "x-events": dict(events),
            }
        },
    }


def download(description: str, media: Iterable[str], filename: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Content-Disposition": header(
                "Content-Disposition", f'attachment; filename="{filename}"', required=True
            )
        },
        "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in media},
    }


NOT_READY = {
    "409": problem(
        "The job is not terminal yet",
        (
            "not_ready",
            ErrorCode.ReportNotReady,
            "Job 7c0… is STARTED; its report and results are available once it reaches "
            "a terminal status",
        ),
    )
}
BAD_PARAMETER = ("invalid", ErrorCode.InvalidParameter, "A query parameter is malformed")
