"""The job as the outside world sees it (pure): the job object, per-record results, the webhook
body — exactly as the HTTP contract spells them. The gateway answers with them, the consumers
sign and send them; both take them from here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.jobs import JobStatus, is_terminal

API_PREFIX = "/api/v1"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def job_url(job_id: str) -> str:
    return f"{API_PREFIX}/jobs/{job_id}"


def error_entry(failure: Mapping[str, Any]) -> dict[str, Any]:
    entry = {
        "index": failure["index"],
        "external_id": failure["key"],
        "errorCode": failure["error_code"],
        "message": failure["error_message"],
    }
    if failure.get("error_field"):
        entry["field"] = failure["error_field"]
    if failure.get("line") is not None:
        entry["line"] = failure["line"]
    return entry


def job_object(job: Mapping[str, Any], failures: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    terminal = is_terminal(job["status"])
    url = job_url(job["job_id"])
    body = {
        "job_id": job["job_id"],
        "entity": job["entity"],
        "operation": job["operation"],
        "source": job["source"],
        "status": job["status"],
        "total": job["total"],
        "processed": job["processed"],
        "successful": job["successful"],
        "failed": job["failed"],
        "skipped": job["skipped"],
        "errors": [error_entry(f) for f in failures],
        "report_url": f"{url}/report" if terminal else None,
        "results_url": f"{url}/results" if terminal else None,
        "webhook_url": job["webhook_url"],
        "created_at": iso(job["created_at"]),
        "started_at": iso(job["started_at"]),
        "completed_at": iso(job["completed_at"]),
        "updated_at": iso(job["updated_at"]),
    }
    if job.get("failure_reason"):
        body["failure_reason"] = job["failure_reason"]
    return body


def record_results(outcomes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "index": o["index"],
            "external_id": o["key"],
            "status": o["status"],
            "id": o["record_id"],
            "errorCode": o["error_code"],
            "message": o["error_message"],
        }
        for o in outcomes
    ]


EVENT_TYPES: Mapping[JobStatus, str] = {
    JobStatus.COMPLETED: "job.completed",
    JobStatus.COMPLETED_WITH_ERRORS: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.INTERNAL_FAILURE: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
}
"""The webhook ``type`` of each terminal status."""


def webhook_body(event_type: str, timestamp: str, data: Mapping[str, Any]) -> str:
    """The exact JSON text sent (and signed) on every attempt of a delivery."""
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def encode_cursor(created_at: datetime, job_id: str) -> str:
    """The opaque ``next_cursor`` of a job listing: where the next page starts."""
    raw = json.dumps([created_at.isoformat(), job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a ``cursor`` names; raises ``ValueError`` (and kin) when it is malformed."""
    padded = cursor + "=" * (-len(cursor) % 4)
    created_at, job_id = json.loads(base64.urlsafe_b64decode(padded))
    return datetime.fromisoformat(created_at), str(job_id)


def progress_body(
    job: Mapping[str, Any], records_per_second: float, eta_seconds: float | None
) -> dict[str, Any]:
    """A ``progress`` event of the live streams (``GET /jobs/{id}/events``, ``/jobs/events``)."""
    return {
        "job_id": job["job_id"],
        "status": job["status"],
        "total": job["total"],
        "processed": job["processed"],
        "successful": job["successful"],
        "failed": job["failed"],
        "skipped": job["skipped"],
        "records_per_second": round(records_per_second, 1),
        "eta_seconds": None if eta_seconds is None else round(eta_seconds, 1),
    }


def event_id(updated_at: datetime) -> int:
    """A live stream's event id: the job row's ``updated_at`` in microseconds since the epoch
    (what ``Last-Event-ID`` brings back to resume after)."""
    return (updated_at - EPOCH) // timedelta(microseconds=1)


def moment_of_event(event: int) -> datetime:
    return EPOCH + timedelta(microseconds=event)
