"""The gateway application: ``init_app(settings)`` builds it, ``cleanup_ctx`` owns resources."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import error_middleware
from api.submission import JobSubmitter
from api.waiter import JobWaiter
from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.settings import Settings
from bulk_ingest.ssrf import WebhookPolicy
from domain.codec import AvroCodec, load_codec
from domain.entities import EntityRegistry, default_schemas_dir
from storage.db import async_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """Everything handlers need, built once at start-up."""

    settings: Settings
    engine: AsyncEngine
    producer: AsyncProducer
    registry: EntityRegistry
    submitter: JobSubmitter
    waiter: JobWaiter
    webhook_policy: WebhookPolicy
    request_codec: AvroCodec


SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey("settings", Settings)


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    schemas_dir = default_schemas_dir()
    engine = async_engine(settings.sqlalchemy_url, pool_size=10)
    producer = AsyncProducer(
        settings.kafka_bootstrap,
        client_id="bulk-ingest-gateway",
        delivery_timeout_seconds=settings.kafka_delivery_timeout_seconds,
    )
    request_codec = load_codec(schemas_dir, "bulk.requests")
    waiter = JobWaiter(settings.libpq_url)
    waiter.start()
    app[SERVICES] = Services(
        settings=settings,
        engine=engine,
        producer=producer,
        registry=EntityRegistry.load(schemas_dir),
        submitter=JobSubmitter(
            engine,
            producer,
            request_codec,
            settings.topics.requests,
            settings.publish_chunk_records,
        ),
        waiter=waiter,
        webhook_policy=WebhookPolicy.from_settings(
            settings.webhook_allow_loopback,
            settings.webhook_allowed_networks,
            settings.webhook_allowed_hosts,
        ),
        request_codec=request_codec,
    )
    yield
    await waiter.stop()
    await asyncio.to_thread(producer.close)
    await engine.dispose()


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
    from api import routes

    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_services_ctx)
    app.router.add_get("/healthz", healthz)
    routes.add_routes(app)
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
