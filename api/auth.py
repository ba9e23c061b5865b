"""Who is calling, and which of the caller's resources a path names (404 across tenants)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.errors import id_or_404, problem
from api.services import SERVICES, Services
from domain import strict_json
from domain.bulk_requests import invalid_json_error
from domain.errors import ErrorCode
from storage import jobs as job_store
from storage.rows import Row
from storage.tenants import tenant_for_api_key


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
    tenant_id = await tenant_for_api_key(services.engine, api_key.strip())
    if tenant_id is None:
        raise problem(
            401,
            ErrorCode.Unauthorized,
            "The API key is unknown or revoked.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant_id


async def owned_job(request: web.Request) -> tuple[Services, Row]:
    """The job named in the path if it belongs to the caller's tenant; 404 otherwise."""
    services = request.app[SERVICES]
    tenant_id = await authenticate(request)
    job_id = id_or_404(request.match_info["job_id"], "Job")
    async with services.engine.connect() as conn:
        job = await job_store.get_job(conn, job_id, tenant_id)
    if job is None:
        raise problem(404, ErrorCode.NotFound, f"Job {job_id} does not exist.")
    return services, job


async def read_json(request: web.Request, services: Services) -> tuple[bytes, Any]:
    """The body as bytes and as strict JSON (``413`` over the limit, ``422 InvalidJson``)."""
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
