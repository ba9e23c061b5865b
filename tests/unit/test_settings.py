"""Settings come from BULK_INGEST_* variables, typed and frozen."""

import dataclasses
from pathlib import Path

import pytest

from bulk_ingest.settings import Settings, SettingsError, load_settings


def test_defaults_follow_the_contract():
    settings = load_settings({})
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.max_body_bytes == 64 * 1024 * 1024
    assert settings.max_async_records == 50_000 and settings.max_sync_records == 1_000
    assert settings.topics.all()[:5] == (
        "bulk.requests",
        "bulk.records",
        "bulk.outcomes",
        "bulk.jobs",
        "bulk.dlq",
    )


def test_variables_are_parsed_to_their_types():
    settings = load_settings(
        {
            "BULK_INGEST_HTTP_PORT": "9000",
            "BULK_INGEST_SYNC_TIMEOUT_SECONDS": "2.5",
            "BULK_INGEST_WEBHOOK_ALLOW_LOOPBACK": "true",
            "BULK_INGEST_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.0/24",
            "BULK_INGEST_REPORT_DIR": "/tmp/reports",
            "BULK_INGEST_TOPIC_JOBS": "acme.jobs",
        }
    )
    assert settings.http_port == 9000
    assert settings.sync_timeout_seconds == 2.5
    assert settings.webhook_allow_loopback is True
    assert settings.webhook_allowed_networks == ("10.0.0.0/8", "192.168.1.0/24")
    assert settings.report_dir == Path("/tmp/reports")
    assert settings.topics.jobs == "acme.jobs"


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().http_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "env",
    [
        {"BULK_INGEST_HTTP_PORT": "eighty"},
        {"BULK_INGEST_WEBHOOK_ALLOW_LOOPBACK": "maybe"},
        {"BULK_INGEST_PARTITIONS": "0"},
        {"BULK_INGEST_EVENT_FRAMING": "protobuf"},
        {"BULK_INGEST_EVENT_FRAMING": "confluent"},  # without a registry to take ids from
    ],
)
def test_bad_values_name_the_variable(env):
    with pytest.raises(SettingsError, match=next(iter(env))):
        load_settings(env)


def test_confluent_framing_with_a_registry_is_accepted():
    settings = load_settings(
        {
            "BULK_INGEST_EVENT_FRAMING": "confluent",
            "BULK_INGEST_SCHEMA_REGISTRY_URL": "http://127.0.0.1:8081/apis/ccompat/v7",
        }
    )
    assert settings.event_framing == "confluent"
