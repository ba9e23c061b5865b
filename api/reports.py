"""Handlers of a job's failure report and results file.

``GET /jobs/{id}/report`` (``text/csv``) and ``GET /jobs/{id}/results`` (``application/zip``,
``?format=csv`` for the bare CSV). Before the job is terminal both answer ``409 ReportNotReady``.
``GET /jobs/{id}/error-codes`` counts the failed and skipped records by code, at any time (the
dashboard's error breakdown).
The report writer normally has the files ready when a job ends; if a download arrives first,
the same store writes them right away, so a terminal job's files are always served.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from api.auth import owned_job
from api.errors import problem
from api.services import Services
from domain.errors import ErrorCode
from domain.job_view import API_PREFIX, RESULT_FORMATS, job_url
from domain.jobs import JobStatus, is_terminal
from storage import ledger
from storage.reports import ReportStore
from storage.rows import Row

CSV_TYPE = "text/csv; charset=utf-8"
ZIP_TYPE = "application/zip"


def _ready(job: Row) -> None:
    if not is_terminal(JobStatus(job["status"])):
        raise problem(
            409,
            ErrorCode.ReportNotReady,
            f"Job {job['job_id']} is {job['status']}; its report and results are available once "
            f"it reaches a terminal status (poll GET {job_url(job['job_id'])}).",
        )


def _download(path: Path, content_type: str, filename: str) -> web.FileResponse:
    return web.FileResponse(
        path,
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, max-age=3600",
        },
    )


def _store(services: Services) -> ReportStore:
    return ReportStore(services.settings.report_dir, services.engine)


async def get_report(request: web.Request) -> web.FileResponse:
    services, job = await owned_job(request)
    _ready(job)
    files = await _store(services).ensure(job)
    return _download(files.report, CSV_TYPE, f"job-{job['job_id']}-report.csv")


async def get_results(request: web.Request) -> web.FileResponse:
    services, job = await owned_job(request)
    form = request.query.get("format", "zip")
    if form not in RESULT_FORMATS:
        raise problem(422, ErrorCode.InvalidParameter, "format must be zip (the default) or csv.")
    _ready(job)
    files = await _store(services).ensure(job)
    if form == "csv":
        return _download(files.results_csv, CSV_TYPE, f"job-{job['job_id']}-results.csv")
    return _download(files.results_zip, ZIP_TYPE, f"job-{job['job_id']}-results.zip")


async def get_error_codes(request: web.Request) -> web.Response:
    services, job = await owned_job(request)
    async with services.engine.connect() as conn:
        counts = await ledger.error_code_counts(conn, job["job_id"])
    codes = [{"errorCode": code, "count": count} for code, count in counts]
    return web.json_response({"job_id": job["job_id"], "codes": codes})


def add_routes(app: web.Application) -> None:
    app.router.add_get(API_PREFIX + "/jobs/{job_id}/report", get_report)
    app.router.add_get(API_PREFIX + "/jobs/{job_id}/results", get_results)
    app.router.add_get(API_PREFIX + "/jobs/{job_id}/error-codes", get_error_codes)
