"""The import CLI's pure parts: mappings, the request body, progress, rate and ETA."""

from __future__ import annotations

import argparse

import pytest

from bulk_ingest.gateway_client import ClientError, gateway_from, refusal
from bulk_ingest.import_client import add_arguments, import_body, parse_mappings
from bulk_ingest.job_client import clock, progress_text, summary
from domain.progress import ProgressMeter


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["data.csv", "--entity", "customers", *argv])


def test_mappings_split_on_the_last_equals_sign():
    assert parse_mappings(["First Name=firstName", "a=b=city", "Notes="]) == {
        "First Name": "firstName",
        "a=b": "city",
        "Notes": None,
    }
    with pytest.raises(ClientError):
        parse_mappings(["firstName"])


def test_import_body_carries_only_what_was_given():
    body = import_body(
        args("--map", "Name=firstName", "--operation", "upsert", "--exclusive"), "f-1"
    )
    assert body == {
        "file_id": "f-1",
        "entity": "customers",
        "operation": "upsert",
        "field_mappings": {"Name": "firstName"},
        "exclusive": True,
    }


def test_a_retry_of_import_leaves_the_entity_to_the_parent():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    retry = parser.parse_args(["report.csv", "--retry-of", "7c0e2a4e-1c55-4b7e-9b1a-3f4f0d6f2a10"])
    assert import_body(retry, "f-2") == {
        "file_id": "f-2",
        "retry_of": "7c0e2a4e-1c55-4b7e-9b1a-3f4f0d6f2a10",
    }


def test_import_body_carries_the_job_options():
    body = import_body(
        args(
            "--default",
            "addresses.0.type=home",
            "--default",
            "phone=+44 20 7946 0958",
            "--default-value",
            "price=0",
            "--default-value",
            "active=true",
            "--dry-run",
            "--max-error-rate",
            "0.05",
            "--min-records",
            "200",
            "--no-outcome-events",
        ),
        "f-1",
    )
    assert body == {
        "file_id": "f-1",
        "entity": "customers",
        "defaults": {
            "addresses.0.type": "home",
            "phone": "+44 20 7946 0958",
            "price": 0,
            "active": True,
        },
        "dry_run": True,
        "max_error_rate": 0.05,
        "min_records": 200,
        "outcome_events": False,
    }
    for bad in (["--default", "home"], ["--default-value", "type=home"]):
        with pytest.raises(ClientError):
            import_body(args(*bad), "f-1")


def test_gateway_falls_back_to_the_environment():
    gateway = gateway_from(args(), {"BULK_INGEST_URL": "https://x", "BULK_INGEST_API_KEY": "k"})
    assert (gateway.url, gateway.api_key) == ("https://x", "k")
    assert gateway_from(args("--api-key", "mine"), {}).url == "http://127.0.0.1:8080"
    with pytest.raises(ClientError, match="API key"):
        gateway_from(args(), {})


def test_rate_and_eta_come_from_the_recent_window():
    meter = ProgressMeter(window=5)
    for second in range(10):
        meter.add(float(second), second * 1000)
    assert meter.rate == pytest.approx(1000)
    assert meter.eta(20_000, 9_000) == pytest.approx(11)
    assert meter.eta(0, 9_000) is None


def test_progress_text_with_and_without_a_total():
    progress = {
        "status": "STARTED",
        "total": 1000,
        "processed": 250,
        "failed": 2,
        "records_per_second": 125.0,
        "eta_seconds": 6.0,
    }
    line = progress_text(progress)
    assert line.startswith("STARTED    25%")
    assert "250/1,000 records" in line and "125 rec/s" in line and "ETA 0:06" in line
    assert "2 failed" in line
    reading = progress_text({**progress, "total": 0, "eta_seconds": None})
    assert "(reading)" in reading and "ETA --:--" in reading
    assert clock(3725) == "1:02:05" and clock(None) == "--:--"


def test_refusal_lists_every_error():
    raw = b'{"errors": [{"errorCode": "UnknownField", "field": "x", "message": "no x"}]}'
    assert refusal("POST", "/api/v1/imports", 422, raw) == (
        "POST /api/v1/imports answered 422:\n  UnknownField (x): no x"
    )


def test_summary_names_lines_of_failures():
    job = {
        "job_id": "j",
        "status": "COMPLETED_WITH_ERRORS",
        "total": 10,
        "successful": 9,
        "failed": 1,
        "errors": [{"index": 4, "line": 6, "errorCode": "InvalidFormat", "message": "Line 6: bad"}],
    }
    assert "line 6: InvalidFormat: Line 6: bad" in summary(job)
