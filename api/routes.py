"""Handlers of ``/api/v1``: bulk submission (async and sync) and job queries."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.engine import RowMapping

from api.app import SERVICES, Services
from api.errors import id_or_404, problem
from api.presenters import API_PREFIX, job_object, job_url, record_results
from api.submission import request_fingerprint
from bulk_ingest.ssrf import WebhookUrlRefused, check_webhook_url
from domain import strict_json
from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.jobs import JobStatus, is_terminal
from domain.validation import BulkRequest, Operation, invalid_json_error, validate_bulk_request
from storage import jobs as job_store

MAX_PAGE = 200


async def authenticate(request: web.Request) -> str:
    """The tenant behind the bearer key; 401 otherwise."""
    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    scheme, _, api_key = header.partition(" ")
    if scheme.lower() != "bearer" or not api_key.strip():
        raise problem(
            401,
            ErrorCode.Unauthorized,
            "Send your API key as 'Authorization: Bearer <api_key>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant_id = await job_store.tenant_for_api_key(services.engine, api_key.strip())
    if tenant_id is None:
        raise problem(
            401,
            ErrorCode.Unauthorized,
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant_id


async def read_json(request: web.Request, services: Services) -> tuple[bytes, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise problem(
            413,
            ErrorCode.PayloadTooLarge,
            f"The request body is larger than {services.settings.max_body_bytes} bytes; split "
            "the records over several jobs or upload them as a file to /api/v1/files.",
        ) from exc
    try:
        return raw, strict_json.loads(raw)
    except strict_json.JsonRejected as exc:
        raise invalid_json_error(str(exc)) from exc


async def _validated(
    request: web.Request, services: Services, *, max_records: int, hint: str
) -> tuple[bytes, BulkRequest]:
    entity = request.match_info["entity"]
    default = Operation.UPDATE if request.method == "PUT" else Operation.INSERT
    raw, body = await read_json(request, services)
    bulk = validate_bulk_request(
        services.registry,
        entity,
        body,
        max_records=max_records,
        default_operation=default,
        too_many_hint=hint,
    )
    if bulk.webhook_url:
        try:
            await check_webhook_url(bulk.webhook_url, services.webhook_policy)
        except WebhookUrlRefused as exc:
            raise InvalidInput(
                (ApiError(ErrorCode.InvalidWebhookUrl, str(exc), field="webhook_url"),)
            ) from exc
    return raw, bulk


async def _submit(request: web.Request, *, max_records: int, hint: str) -> tuple[Services, Any]:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    raw, bulk = await _validated(request, services, max_records=max_records, hint=hint)
    submitted = await services.submitter.submit(
        bulk,
        services.registry.get(bulk.entity),
        tenant_id=tenant_id,
        idempotency_key=request.headers.get("Idempotency-Key") or None,
        request_hash=request_fingerprint(request.method, bulk.entity, raw),
    )
    return services, submitted


def _accepted(body: dict[str, Any], replayed: bool, status: int = 202) -> web.Response:
    headers = {"Location": job_url(body["job_id"])}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(body, status=status, headers=headers)


async def submit_async(request: web.Request) -> web.Response:
    max_records = request.app[SERVICES].settings.max_async_records
    services, submitted = await _submit(request, max_records=max_records, hint="")
    async with services.engine.connect() as conn:
        body = await _job_body(conn, submitted.job)
    return _accepted(body, submitted.replayed)


async def submit_sync(request: web.Request) -> web.Response:
    settings = request.app[SERVICES].settings
    services, submitted = await _submit(
        request,
        max_records=settings.max_sync_records,
        hint=f"send larger batches to {API_PREFIX}/{request.match_info['entity']}/bulk/async",
    )
    job_id = submitted.job["job_id"]

    async def terminal() -> bool:
        async with services.engine.connect() as conn:
            job = await job_store.get_job(conn, job_id)
        return job is not None and is_terminal(job["status"])

    finished = await services.waiter.wait_terminal(job_id, settings.sync_timeout_seconds, terminal)
    async with services.engine.connect() as conn:
        job = await job_store.get_job(conn, job_id)
        assert job is not None
        body = await _job_body(conn, job)
        if not finished:
            return _accepted(body, submitted.replayed)
        body["results"] = record_results(await job_store.all_outcomes(conn, job_id))
    headers = {"Idempotent-Replayed": "true"} if submitted.replayed else {}
    return web.json_response(body, status=200, headers=headers)


async def _job_body(conn: Any, job: Any) -> dict[str, Any]:
    failures = await job_store.first_failures(conn, job["job_id"]) if job["failed"] else []
    return job_object(job, failures)


async def owned_job(request: web.Request) -> tuple[Services, RowMapping]:
    """The job named in the path if it belongs to the caller's tenant; 404 otherwise."""
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    job_id = id_or_404(request.match_info["job_id"], "Job")
    async with services.engine.connect() as conn:
        job = await job_store.get_job(conn, job_id, tenant_id)
    if job is None:
        raise problem(404, ErrorCode.NotFound, f"Job {job_id} does not exist.")
    return services, job


async def get_job(request: web.Request) -> web.Response:
    services, job = await owned_job(request)
    async with services.engine.connect() as conn:
        return web.json_response(await _job_body(conn, job))


async def list_jobs(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    query = request.query
    status = query.get("status") or None
    if status and status not in JobStatus.__members__:
        raise problem(
            422,
            ErrorCode.InvalidParameter,
            f"status must be one of {', '.join(JobStatus.__members__)}",
        )
    try:
        limit = int(query.get("limit", "50"))
        cursor = job_store.decode_cursor(query["cursor"]) if query.get("cursor") else None
    except (ValueError, KeyError, TypeError) as exc:
        raise problem(422, ErrorCode.InvalidParameter, "limit or cursor is malformed") from exc
    if not 1 <= limit <= MAX_PAGE:
        raise problem(422, ErrorCode.InvalidParameter, f"limit must be 1..{MAX_PAGE}")
    async with services.engine.connect() as conn:
        page = await job_store.list_jobs(
            conn,
            tenant_id,
            status=status,
            entity=query.get("entity") or None,
            limit=limit,
            cursor=cursor,
        )
        bodies = [job_object(job, []) for job in page.rows]
    return web.json_response({"jobs": bodies, "next_cursor": page.next_cursor})


def add_routes(app: web.Application) -> None:
    app.router.add_post(API_PREFIX + "/{entity}/bulk/async", submit_async)
    app.router.add_put(API_PREFIX + "/{entity}/bulk/async", submit_async)
    app.router.add_post(API_PREFIX + "/{entity}/bulk", submit_sync)
    app.router.add_put(API_PREFIX + "/{entity}/bulk", submit_sync)
    app.router.add_get(API_PREFIX + "/jobs", list_jobs)
    app.router.add_get(API_PREFIX + "/jobs/{job_id}", get_job)
    from api import reports, webhooks  # after this module: both import authenticate from it

    reports.add_routes(app)
    webhooks.add_routes(app)
    from api import files, imports  # file uploads and imports (docs/imports.md)

    files.add_routes(app)
    imports.add_routes(app)
