"""The job operations of the OpenAPI document: query, cancel, live events, reports, webhooks."""

from __future__ import annotations

from typing import Any

from domain import json_schema as js
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX, MAX_PAGE, RESULT_FORMATS
from domain.jobs import JobStatus
from domain.openapi_parts import (
    BAD_PARAMETER,
    IDEMPOTENCY_KEY,
    JOB_ID,
    JSON,
    NOT_FOUND,
    NOT_READY,
    TEXT,
    UNAVAILABLE,
    accepted,
    download,
    example_job,
    json_answer,
    operation,
    problem,
    query,
    shared,
    stream,
)


def job_paths() -> dict[str, Any]:
    jobs = f"{API_PREFIX}/jobs"
    job = jobs + "/{job_id}"
    stream_note = (
        "Server-Sent Events. Each event's id is the job row's change time in microseconds: "
        "reconnect with Last-Event-ID to resume after it. A comment every 15 s keeps it open."
    )
    last_event = {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Resume after this event id",
        "schema": {"type": "string"},
    }
    return {
        jobs: {
            "get": operation(
                "list_jobs",
                "jobs",
                "This tenant's jobs, newest first",
                {
                    "200": json_answer("A page of jobs", "JobList"),
                    "422": problem("A malformed query parameter", BAD_PARAMETER),
                    **UNAVAILABLE,
                },
                parameters=[
                    query("status", js.enum(JobStatus), "Only jobs with this status"),
                    query("entity", TEXT, "Only jobs of this entity"),
                    query(
                        "limit",
                        js.integer(minimum=1, maximum=MAX_PAGE, default=50),
                        "Jobs per page",
                    ),
                    query("cursor", js.string(), "next_cursor of the page before"),
                    query("parent_job_id", js.UUID, "Only the retries of this job"),
                ],
            )
        },
        jobs + "/events": {
            "get": operation(
                "follow_tenant_jobs",
                "jobs",
                "Every job of this tenant, live",
                {
                    "200": stream(
                        "`job` events (the job as listed) when a job appears or changes status, "
                        f"`progress` events between; it never ends on its own. {stream_note}",
                        {"job": "Job", "progress": "Progress"},
                    ),
                    **UNAVAILABLE,
                },
                parameters=[last_event],
            )
        },
        job: {
            "get": operation(
                "get_job",
                "jobs",
                "A job",
                {"200": json_answer("The job", "Job", example_job()), **NOT_FOUND, **UNAVAILABLE},
                parameters=[JOB_ID],
            )
        },
        job + "/cancel": {
            "post": operation(
                "cancel_job",
                "jobs",
                "Cancel a job",
                {
                    "202": accepted(
                        "Records not yet written will be skipped (JobCancelled); the job "
                        "ends CANCELLED. Cancelling again answers the same"
                    ),
                    "409": problem(
                        "The job has already ended otherwise",
                        (
                            "ended",
                            ErrorCode.JobNotCancellable,
                            "Job 7c0… has already ended COMPLETED",
                        ),
                    ),
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[JOB_ID],
            )
        },
        job + "/retry": {"post": _retry_operation()},
        job + "/revert": {"post": _revert_operation()},
        job + "/events": {
            "get": operation(
                "follow_job",
                "jobs",
                "A job's live progress",
                {
                    "200": stream(
                        "`progress` events at most 4 a second while it moves, then one `terminal` "
                        "event "
                        f"with the job object, and the stream ends. {stream_note}",
                        {"progress": "Progress", "terminal": "Job"},
                    ),
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[JOB_ID, last_event],
            )
        },
        job + "/report": {
            "get": operation(
                "get_job_report",
                "reports",
                "The failure report (CSV)",
                {
                    "200": download(
                        "One row per failed or skipped record in index order: index, "
                        "externalId, errorCode, failureReason, record (file imports: the mapped "
                        "source columns follow; fixed, it imports again with retry_of)",
                        ["text/csv"],
                        "job-{job_id}-report.csv",
                    ),
                    **NOT_READY,
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[JOB_ID],
            )
        },
        job + "/results": {
            "get": operation(
                "get_job_results",
                "reports",
                "Every record's result (ZIP, or CSV)",
                {
                    "200": download(
                        "results.csv in a ZIP (or the CSV itself): index, id, externalId, "
                        "status, errorCode, error",
                        ["application/zip", "text/csv"],
                        "job-{job_id}-results.zip",
                    ),
                    "422": problem("format is neither zip nor csv", BAD_PARAMETER),
                    **NOT_READY,
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[
                    JOB_ID,
                    query(
                        "format",
                        {**js.enum(RESULT_FORMATS), "default": RESULT_FORMATS[0]},
                        "zip or csv",
                    ),
                ],
            )
        },
        job + "/error-codes": {
            "get": operation(
                "get_job_error_codes",
                "reports",
                "Failed and skipped records by error code",
                {
                    "200": json_answer("Counts by code", "ErrorCodeCounts"),
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[JOB_ID],
            )
        },
        job + "/webhooks": {
            "get": operation(
                "list_job_webhooks",
                "webhooks",
                "The attempts to send the job's webhook",
                {"200": json_answer("Oldest first", "WebhookAttempts"), **NOT_FOUND, **UNAVAILABLE},
                parameters=[JOB_ID],
            )
        },
        job + "/webhooks/redeliver": {
            "post": operation(
                "redeliver_job_webhook",
                "webhooks",
                "Send the job's webhook again",
                {
                    "202": json_answer(
                        "Scheduled now, with the same webhook-id", "WebhookDelivery"
                    ),
                    "409": problem(
                        "The job is not terminal yet",
                        (
                            "running",
                            ErrorCode.InvalidOperation,
                            "Job 7c0… is STARTED; its webhook is "
                            "sent when it reaches a terminal status",
                        ),
                    ),
                    "422": problem(
                        "The job has no webhook_url",
                        (
                            "none",
                            ErrorCode.InvalidWebhookUrl,
                            "Job 7c0… was submitted without a webhook_url",
                        ),
                    ),
                    **NOT_FOUND,
                    **UNAVAILABLE,
                },
                parameters=[JOB_ID],
            )
        },
    }


def _retry_operation() -> dict[str, Any]:
    return operation(
        "retry_job",
        "jobs",
        "Retry a job's failed and skipped records",
        {
            "202": accepted(
                "A child job (parent_job_id names this one) of the failed and skipped records, "
                "as submitted, in index order; same entity, operation and webhook URL"
            ),
            "409": problem(
                "The job has not ended yet, or the Idempotency-Key was used with a different body",
                ("running", ErrorCode.JobNotTerminal, "Job 7c0… is still STARTED"),
            ),
            "422": problem(
                "An unknown error code, or nothing to retry",
                (
                    "unknown",
                    ErrorCode.InvalidParameter,
                    "codes[0] is 'Duplicate', which is not an error code",
                ),
                (
                    "nothing",
                    ErrorCode.NothingToRetry,
                    "Job 7c0… has no failed or skipped record with the codes DuplicateKey",
                ),
            ),
            "413": shared("PayloadTooLarge"),
            **NOT_FOUND,
            **UNAVAILABLE,
        },
        description="The body is optional: `codes` narrows the retry to records that failed "
        "or were skipped with those codes. A file import's rows are better fixed in its failure "
        "report and imported again with `retry_of` (POST /imports).",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
        body={"required": False, "content": {JSON: {"schema": js.ref("RetryRequest")}}},
    )


def _revert_operation() -> dict[str, Any]:
    return operation(
        "revert_job",
        "jobs",
        "Revert a job: undo the writes it made",
        {
            "202": accepted(
                "A revert job (operation revert, revert_of_job_id names this job) of one record "
                "per row the job wrote: a row it created is DELETED, a row it updated RESTORED "
                "to its before-image, a row a later job changed since FAILED with ChangedSince"
            ),
            "409": problem(
                "The job has not ended, was reverted already, ended longer ago than the "
                "retention, or the Idempotency-Key was used for another request",
                ("running", ErrorCode.JobNotTerminal, "Job 7c0… is still STARTED"),
                ("twice", ErrorCode.JobAlreadyReverted, "Job 7c0… was already reverted"),
                ("expired", ErrorCode.RevertExpired, "Job 7c0… ended more than 2592000 s ago"),
            ),
            "422": problem(
                "The job wrote no row: a dry run, a revert, or every record failed",
                (
                    "nothing",
                    ErrorCode.NothingToRevert,
                    "Job 7c0… has nothing to revert: it is a dry run and wrote no row",
                ),
            ),
            **NOT_FOUND,
            **UNAVAILABLE,
        },
        description="No body. Before-images are kept BULK_INGEST_REVERT_RETENTION_SECONDS "
        "(default 30 days) after the job ended. The revert job's outcome events use "
        "bulk.outcomes v3 (statuses DELETED and RESTORED); both count as successful.",
        parameters=[JOB_ID, IDEMPOTENCY_KEY],
    )
