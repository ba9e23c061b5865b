"""The job as the outside world sees it (pure): the job object, per-record results, the webhook
body — exactly as the HTTP contract spells them. The gateway answers with them, the consumers
sign and send them; both take them from here.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from domain import json_schema as js
from domain.bulk_requests import Operation
from domain.errors import MAX_ERRORS, ErrorCode
from domain.jobs import JobStatus, RecordStatus, is_terminal
from domain.json_schema import ViewField, fill, not_none, view_schema
from domain.revert import REVERT_OPERATION

API_PREFIX = "/api/v1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPERATIONS = tuple(operation.value for operation in Operation)
JOB_OPERATIONS = (*OPERATIONS, REVERT_OPERATION)
"""A job's ``operation``: what its records ask for, or ``revert`` (POST /jobs/{id}/revert)."""
MAX_PAGE = 200
"""The most jobs one page of ``GET /jobs`` holds (``limit``)."""
RESULT_FORMATS = ("zip", "csv")
"""What ``GET /jobs/{id}/results?format=`` offers; the first is the default."""
SOURCES = ("api", "file", "kafka")
"""A job's ``source``: records sent over HTTP, a file import, chunks a Kafka producer sent."""


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def job_url(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}"


_ERROR_CODE = js.enum(ErrorCode, "The error code; docs/errors.md explains each one.")

ERROR_ENTRY_FIELDS: tuple[ViewField[Mapping[str, Any]], ...] = (
    ViewField(
        "index",
        js.integer("The record's position in the job, 0-based", minimum=0),
        lambda f: f["index"],
    ),
    ViewField(
        "external_id", js.nullable(js.string("The record's key, as submitted")), lambda f: f["key"]
    ),
    ViewField("errorCode", _ERROR_CODE, lambda f: f["error_code"]),
    ViewField("message", js.string("What went wrong, for a person"), lambda f: f["error_message"]),
    ViewField(
        "field",
        js.string("The field at fault as a dotted path (addresses.0.country)"),
        lambda f: f.get("error_field"),
        bool,
    ),
    ViewField(
        "line",
        js.integer("The file line of the record (file imports)", minimum=1),
        lambda f: f.get("line"),
        not_none,
    ),
)
"""A failed record in the job's ``errors``; ``field`` and ``line`` only where they apply."""


def error_entry(failure: Mapping[str, Any]) -> dict[str, Any]:
    return fill(ERROR_ENTRY_FIELDS, failure)


@dataclass(frozen=True)
class JobSource:
    """What a job object is made of: the job row and its first failures."""

    job: Mapping[str, Any]
    failures: tuple[Mapping[str, Any], ...]

    @property
    def terminal(self) -> bool:
        return is_terminal(self.job["status"])

    def download(self, name: str) -> str | None:
        return f"{job_url(self.job['job_id'])}/{name}" if self.terminal else None


def _row(name: str) -> Callable[[JobSource], Any]:
    return lambda source: source.job[name]


def _moment(name: str) -> Callable[[JobSource], Any]:
    return lambda source: iso(source.job[name])


_TIME = js.nullable(js.TIMESTAMP)
_COUNTS = ("total", "processed", "successful", "failed", "skipped")


def _option(name: str, absent: Any) -> Callable[[JobSource], Any]:
    return lambda source: source.job.get(name, absent)


OPTION_VIEW_FIELDS: tuple[ViewField[JobSource], ...] = (
    ViewField(
        "dry_run",
        {"type": "boolean", "description": "Validated and reported only: nothing was written"},
        _option("dry_run", False),
    ),
    ViewField(
        "outcome_events",
        {"type": "boolean", "description": "Whether per-record events go on bulk.outcomes"},
        _option("outcome_events", True),
    ),
    ViewField(
        "defaults",
        js.obj(
            {},
            description="Field path → the value filling it where records leave it absent or null",
            additionalProperties={"type": ["string", "number", "boolean"]},
        ),
        _option("defaults", None),
        not_none,
    ),
    ViewField(
        "max_error_rate",
        {
            "type": "number",
            "minimum": 0,
            "exclusiveMaximum": 1,
            "description": "The error-rate breaker's threshold",
        },
        _option("max_error_rate", None),
        not_none,
    ),
    ViewField(
        "min_records",
        js.integer("Records processed before the breaker is checked", minimum=1),
        _option("min_records", None),
        not_none,
    ),
)
"""The job's options (design.md §8, :mod:`domain.job_options`); the breaker's only when set."""


JOB_FIELDS: tuple[ViewField[JobSource], ...] = (
    ViewField("job_id", js.UUID, _row("job_id")),
    ViewField("entity", js.string("The entity the records are"), _row("entity")),
    ViewField("operation", js.enum(JOB_OPERATIONS), _row("operation")),
    ViewField(
        "source", js.enum(SOURCES, "How the job came: HTTP records, a file, Kafka"), _row("source")
    ),
    ViewField("status", js.enum(JobStatus), _row("status")),
    *(ViewField(name, js.COUNT, _row(name)) for name in _COUNTS),
    ViewField(
        "errors",
        js.array(
            view_schema(ERROR_ENTRY_FIELDS),
            "The first failures in index order (empty in job listings)",
            maxItems=MAX_ERRORS,
        ),
        lambda source: [error_entry(failure) for failure in source.failures],
    ),
    ViewField(
        "report_url",
        js.nullable(js.string("The failure report; null until terminal")),
        lambda source: source.download("report"),
    ),
    ViewField(
        "results_url",
        js.nullable(js.string("The results file; null until terminal")),
        lambda source: source.download("results"),
    ),
    ViewField("webhook_url", js.nullable(js.string(format="uri")), _row("webhook_url")),
    ViewField(
        "parent_job_id",
        js.nullable(js.string("The job this one retries; null for others", format="uuid")),
        lambda source: source.job.get("parent_job_id"),
    ),
    ViewField(
        "revert_of_job_id",
        js.string("A revert job: the job whose writes it undoes", format="uuid"),
        lambda source: source.job.get("revert_of_job_id"),
        bool,
    ),
    ViewField(
        "reverted_by_job_id",
        js.string("The revert job that undoes this job's writes", format="uuid"),
        lambda source: source.job.get("reverted_by_job_id"),
        bool,
    ),
    *OPTION_VIEW_FIELDS,
    ViewField("created_at", js.TIMESTAMP, _moment("created_at")),
    ViewField("started_at", _TIME, _moment("started_at")),
    ViewField("completed_at", _TIME, _moment("completed_at")),
    ViewField("updated_at", js.TIMESTAMP, _moment("updated_at")),
    ViewField(
        "failure_reason",
        js.string("Why the job failed or stopped early"),
        lambda source: source.job.get("failure_reason"),
        bool,
    ),
)
"""The job object (design.md §3), field by field; ``failure_reason`` only when there is one."""


def job_object(job: Mapping[str, Any], failures: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return fill(JOB_FIELDS, JobSource(job, tuple(failures)))


RESULT_FIELDS: tuple[ViewField[Mapping[str, Any]], ...] = (
    ViewField("index", js.integer(minimum=0), lambda o: o["index"]),
    ViewField("external_id", js.nullable(js.string()), lambda o: o["key"]),
    ViewField("status", js.enum(RecordStatus), lambda o: o["status"]),
    ViewField("id", js.nullable(js.UUID), lambda o: o["record_id"]),
    ViewField("errorCode", js.nullable(_ERROR_CODE), lambda o: o["error_code"]),
    ViewField("message", js.nullable(js.string()), lambda o: o["error_message"]),
)
"""One record's result in a sync answer's ``results``."""


def record_results(outcomes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [fill(RESULT_FIELDS, outcome) for outcome in outcomes]


EVENT_TYPES: Mapping[JobStatus, str] = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.COMPLETED_WITH_ERRORS: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.INTERNAL_FAILURE: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
"""The webhook ``type`` of each terminal status."""


WEBHOOK_FIELDS: tuple[ViewField[Mapping[str, Any]], ...] = (
    ViewField("type", js.enum(sorted(set(EVENT_TYPES.values()))), lambda b: b["type"]),
    ViewField("timestamp", js.TIMESTAMP, lambda b: b["timestamp"]),
    ViewField("data", js.ref("Job"), lambda b: b["data"]),
)
"""The webhook body: the event type, when the job finished, and the job object."""


def webhook_body(event_type: str, timestamp: str, data: Mapping[str, Any]) -> str:
    """The exact JSON text sent (and signed) on every attempt of a delivery."""
    body = fill(WEBHOOK_FIELDS, {"type": event_type, "timestamp": timestamp, "data": data})
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The opaque ``next_cursor`` of a job listing: where the next page starts."""
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a ``cursor`` names; raises ``ValueError`` (and kin) when it is malformed."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created_at, job_id = json.loads(base64.urlsafe_b64decode(padded))
    return datetime.fromisoformat(created_at), str(uuid.UUID(job_id))


class _Progress(NamedTuple):
    job: Mapping[str, Any]
    records_per_second: float
    eta_seconds: float | None


def _counted(name: str) -> Callable[[_Progress], Any]:
    return lambda progress: progress.job[name]


PROGRESS_FIELDS: tuple[ViewField[_Progress], ...] = (
    ViewField("job_id", js.UUID, _counted("job_id")),
    ViewField("status", js.enum(JobStatus), _counted("status")),
    *(ViewField(name, js.COUNT, _counted(name)) for name in _COUNTS),
    ViewField(
        "records_per_second",
        {"type": "number", "minimum": 0, "description": "Over the last seconds"},
        lambda progress: round(progress.records_per_second, 1),
    ),
    ViewField(
        "eta_seconds",
        {"type": ["number", "null"], "description": "At that rate; null while it is unknown"},
        lambda p: None if p.eta_seconds is None else round(p.eta_seconds, 1),
    ),
)
"""A ``progress`` event of the live streams (``GET /jobs/{id}/events``, ``/jobs/events``)."""


def progress_body(
    job: Mapping[str, Any], records_per_second: float, eta_seconds: float | None
) -> dict[str, Any]:
    return fill(PROGRESS_FIELDS, _Progress(job, records_per_second, eta_seconds))


def event_id(updated_at: datetime) -> int:
    """A live stream's event id: the job row's ``updated_at`` in microseconds since the epoch
    (what ``Last-Event-ID`` brings back to resume after)."""
    return (updated_at - EPOCH) // timedelta(microseconds=1)


def moment_of_event(event: int) -> datetime:
    return EPOCH + timedelta(microseconds=event)
