"""The gateway application: ``init_app(settings)`` assembles it, ``cleanup_ctx`` owns resources.

Each route module (:mod:`api.jobs`, :mod:`api.reports`, :mod:`api.webhooks`, :mod:`api.files`,
:mod:`api.imports`, :mod:`api.docs`, …) adds its own routes; they share :mod:`api.services`,
:mod:`api.auth` and :mod:`api.intake`, and none imports this module.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api import (
    dashboard,
    docs,
    entities,
    files,
    imports,
    job_events,
    jobs,
    reports,
    retry,
    revert,
    webhooks,
)
from api.errors import error_middleware
from api.services import SERVICES, SETTINGS, Services, end_streams, services_ctx
from bulk_ingest.metrics import exposition
from bulk_ingest.settings import Settings

log = logging.getLogger(__name__)


async def metrics(request: web.Request) -> web.Response:
    """This gateway's Prometheus metrics (public, like ``/healthz``: no tenant data in them)."""
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks = {"postgres": await _postgres_ok(services.engine), "kafka": await _kafka_ok(services)}
    status = 200 if all(checks.values()) else 503
    return web.json_response(
        {"status": "ok" if status == 200 else "unavailable", **checks}, status=status
    )


async def _postgres_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(3), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def _kafka_ok(services: Services) -> bool:
    try:
        metadata = await asyncio.to_thread(services.producer.list_topics, 3)
        return services.settings.topics.requests in metadata.topics
    except Exception:
        return False


def init_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(services_ctx)
    app.on_shutdown.append(end_streams)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    routes = (
        job_events,
        jobs,
        retry,
        revert,
        reports,
        webhooks,
        files,
        imports,
        entities,
        docs,
        dashboard,
    )
    for module in routes:
        module.add_routes(app)
    return app


def run_gateway(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(
        init_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=lambda _: log.info(
            "gateway listening on http://%s:%s", settings.http_host, settings.http_port
        ),
    )
