"""Tenants and their API keys as the gateway looks them up (created by ``storage.db``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import hash_api_key
from storage.tables import api_keys


async def tenant_for_api_key(engine: AsyncEngine, api_key: str) -> str | None:
    """The tenant an unrevoked API key belongs to (keys are stored hashed)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            select(api_keys.c.tenant_id).where(
                api_keys.c.key_hash == hash_api_key(api_key), api_keys.c.revoked_at.is_(None)
            )
        )
        tenant: str | None = result.scalar_one_or_none()
        return tenant
