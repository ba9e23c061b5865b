"""What every handler needs, built once per gateway: ``Services`` and its ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from api.live_jobs import LiveJobs
from api.notifications import NotificationListener
from api.waiter import JobWaiter
from bulk_ingest.kafka import AsyncProducer
from bulk_ingest.settings import Settings
from bulk_ingest.ssrf import WebhookPolicy
from bulk_ingest.topics import Topics
from domain.entities import EntityRegistry, default_schemas_dir
from storage.db import async_engine


@dataclass(frozen=True)
class Services:
    """Everything handlers need, built once at start-up."""

    settings: Settings
    engine: AsyncEngine
    producer: AsyncProducer
    registry: EntityRegistry
    waiter: JobWaiter
    live: LiveJobs
    webhook_policy: WebhookPolicy
    topics: Topics


SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey("settings", Settings)


async def end_streams(app: web.Application) -> None:
    """On shutdown, before the gateway waits for its handlers: open event streams end."""
    await app[SERVICES].live.stop()


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the services when the gateway starts; close them when it stops."""
    settings = app[SETTINGS]
    schemas_dir = default_schemas_dir()
    engine = async_engine(settings.sqlalchemy_url, pool_size=10)
    producer = AsyncProducer(
        settings.kafka_bootstrap,
        client_id="bulk-ingest-gateway",
        delivery_timeout_seconds=settings.kafka_delivery_timeout_seconds,
    )
    listener = NotificationListener(settings.libpq_url)
    waiter = JobWaiter(listener)
    live = LiveJobs(engine, listener)
    listener.start()
    live.start()
    app[SERVICES] = Services(
        settings=settings,
        engine=engine,
        producer=producer,
        registry=EntityRegistry.load(schemas_dir),
        waiter=waiter,
        live=live,
        webhook_policy=WebhookPolicy.from_settings(
            settings.webhook_allow_loopback,
            settings.webhook_allowed_networks,
            settings.webhook_allowed_hosts,
        ),
        topics=Topics.load(settings),
    )
    yield
    await live.stop()
    await listener.stop()
    await asyncio.to_thread(producer.close)
    await engine.dispose()
