"""Topics, migrations and the tenants CLI against the real broker and database."""

import json
import subprocess
import sys

import psycopg
from confluent_kafka.admin import AdminClient

from bulk_ingest.kafka import ensure_topics, topic_partition_counts
from bulk_ingest.processes import settings_environment
from bulk_ingest.settings import REPO_ROOT
from storage.db import hash_api_key, migrate

EXPECTED_TABLES = {
    "tenants",
    "api_keys",
    "reference_types",
    "jobs",
    "record_outcomes",
    "job_parts",
    "customers",
    "products",
}


def test_migrations_apply_to_an_empty_database_and_are_idempotent(stack_settings):
    migrate(stack_settings.sqlalchemy_url)
    migrate(stack_settings.sqlalchemy_url)
    with psycopg.connect(stack_settings.libpq_url) as conn:
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        unique = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'customers' "
            "AND indexdef LIKE '%UNIQUE%external_id, tenant_id%'"
        ).fetchone()
    assert tables >= EXPECTED_TABLES
    assert unique == (1,)


def test_topics_are_created_with_the_configured_partition_counts(stack_settings):
    settings = stack_settings.with_overrides(
        **{
            f"topic_{k}": f"{stack_settings.app_id}.part.{k}"
            for k in ("requests", "records", "outcomes", "jobs", "dlq", "progress", "imports")
        }
    )
    ensure_topics(settings.kafka_bootstrap, settings.topics, 3)
    ensure_topics(settings.kafka_bootstrap, settings.topics, 3)  # idempotent
    assert set(
        topic_partition_counts(settings.kafka_bootstrap, settings.topics.all()).values()
    ) == {3}
    ensure_topics(settings.kafka_bootstrap, settings.topics, 5)  # grows, never shrinks
    counts = topic_partition_counts(settings.kafka_bootstrap, settings.topics.all())
    assert set(counts.values()) == {5}
    AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).delete_topics(list(counts))


def test_tenants_create_prints_keys_and_stores_only_a_hash(settings):
    result = subprocess.run(
        [sys.executable, "-m", "bulk_ingest.cli", "tenants", "create", "Acme Corp"],
        capture_output=True,
        text=True,
        env=settings_environment(settings, PYTHONPATH=str(REPO_ROOT)),
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    created = json.loads(result.stdout)
    assert set(created) == {"tenant_id", "api_key", "webhook_secret"}
    assert created["webhook_secret"].startswith("whsec_")
    with psycopg.connect(settings.libpq_url) as conn:
        stored = conn.execute(
            "SELECT key_hash FROM api_keys WHERE tenant_id = %s", [created["tenant_id"]]
        ).fetchall()
        leaked = conn.execute(
            "SELECT count(*) FROM api_keys WHERE key_hash = %s OR key_prefix = %s",
            [created["api_key"], created["api_key"]],
        ).fetchone()
    assert stored == [(hash_api_key(created["api_key"]),)]
    assert leaked == (0,)
