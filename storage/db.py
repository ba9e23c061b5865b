"""Engines, migrations and tenant administration."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from storage.tables import api_keys, reference_types, tenants

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
API_KEY_PREFIX = "bik_"


def sync_engine(database_url: str) -> Engine:
    return create_engine(database_url, pool_pre_ping=True)


def async_engine(database_url: str, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(
        database_url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the database schema to ``revision`` (idempotent)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, revision)


def hash_api_key(api_key: str) -> str:
    """API keys are 256-bit random tokens, so one SHA-256 round is a safe, fast lookup hash."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class NewTenant:
    tenant_id: str
    name: str
    api_key: str
    webhook_secret: str

    def to_public_dict(self) -> dict[str, str]:
        return {
            "tenant_id": self.tenant_id,
            "api_key": self.api_key,
            "webhook_secret": self.webhook_secret,
        }


def create_tenant(
    engine: Engine, name: str, default_reference_types: Mapping[str, frozenset[str]]
) -> NewTenant:
    """Create a tenant with one API key (stored hashed) and the default reference types."""
    tenant_id = str(uuid.uuid4())
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with engine.begin() as conn:
        conn.execute(
            insert(tenants).values(tenant_id=tenant_id, name=name, webhook_secret=webhook_secret)
        )
        conn.execute(
            insert(api_keys).values(
                key_hash=hash_api_key(api_key),
                tenant_id=tenant_id,
                key_prefix=api_key[: len(API_KEY_PREFIX) + 6],
            )
        )
        rows = [
            {"tenant_id": tenant_id, "kind": kind, "value": value}
            for kind, values in sorted(default_reference_types.items())
            for value in sorted(values)
        ]
        if rows:
            conn.execute(insert(reference_types), rows)
    return NewTenant(tenant_id, name, api_key, webhook_secret)


def tenant_for_api_key(engine: Engine, api_key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(api_keys.c.tenant_id).where(
                api_keys.c.key_hash == hash_api_key(api_key), api_keys.c.revoked_at.is_(None)
            )
        ).scalar_one_or_none()
