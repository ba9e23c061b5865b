"""``bulk-ingest jobs list | show | watch | cancel`` against the real gateway, as a user runs
them: subprocesses, with the live progress bar rendered as on a terminal."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.http import poll
from tests.support.jobs import a_batch_held_on
from tests.support.records import customers, unique_prefix

pytestmark = pytest.mark.e2e

ASYNC = "/api/v1/customers/bulk/async"
TOTAL = 20_000


def cli(service, tenant, *argv: str, **options):  # type: ignore[no-untyped-def]
    command = [sys.executable, "-m", "bulk_ingest.cli", "jobs", *argv, "--url", service.base_url]
    env = {
        "PATH": "/usr/bin:/bin",
        "BULK_INGEST_API_KEY": tenant.api_key,
        "TTY_COMPATIBLE": "1",  # rich draws its live bar as on a terminal
        "TTY_INTERACTIVE": "1",
        "COLUMNS": "120",
    }
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options
    )


def finished(process, timeout: float = 120):  # type: ignore[no-untyped-def]
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def test_watch_shows_the_bar_while_held_and_ends_when_cancelled(tenant, settings, service):
    records = customers(unique_prefix(), TOTAL)
    with a_batch_held_on(settings, tenant.tenant_id, records[TOTAL // 2]["externalId"]) as held:
        job_id = tenant.api.post(ASYNC, {"records": records}).json()["job_id"]
        watching = cli(service, tenant, "watch", job_id)
        poll(held, 120, "a batch of the job to wait on the held key", interval=0.05)
        poll(
            lambda: 0 < tenant.api.get(f"/api/v1/jobs/{job_id}").json()["processed"] < TOTAL,
            120,
            "the job to be under way",
        )
        assert watching.poll() is None, "watch follows a job that has not ended"
        code, out, err = finished(cli(service, tenant, "cancel", job_id))
        assert code == 0, err
        assert f"job {job_id}: cancel accepted" in out
    code, out, err = finished(watching, 180)
    job = tenant.api.get(f"/api/v1/jobs/{job_id}").json()
    assert job["status"] == "CANCELLED"
    assert code == 1, "the job did not complete"
    assert f"job {job_id}: CANCELLED" in out
    # The summary says what the job says (whether a batch was still unwritten at the cancel is
    # up to the held batch's size: tests/e2e/test_cancel.py proves the skipping).
    assert f"{job['successful']:,} succeeded" in out
    assert job["skipped"] == 0 or f"{job['skipped']:,} skipped" in out
    assert "━" in err, "rich's bar was drawn"
    assert f"/{TOTAL:,} records" in err and "rec/s" in err and "ETA" in err

    code, out, err = finished(cli(service, tenant, "cancel", job_id))
    assert code == 0 and "cancel accepted (CANCELLED)" in out, "cancelling twice is harmless"


def test_list_and_show_tell_what_the_api_says(tenant, service):
    job_id = tenant.api.post(ASYNC, {"records": customers(unique_prefix(), 20)}).json()["job_id"]
    job = tenant.api.wait_terminal(job_id)
    code, out, err = finished(cli(service, tenant, "list", "--limit", "5"))
    assert code == 0, err
    row = next(line for line in out.splitlines() if job_id in line)
    assert "COMPLETED" in row and "20/20" in row and "customers" in row
    code, out, err = finished(cli(service, tenant, "show", job_id, "--json"))
    assert code == 0 and json.loads(out) == job
    code, out, err = finished(cli(service, tenant, "watch", job_id))
    assert code == 0 and f"job {job_id}: COMPLETED" in out, "a finished job: its summary at once"
    code, out, err = finished(cli(service, tenant, "show", "00000000-0000-4000-8000-000000000000"))
    assert code == 2 and "answered 404" in err and "NotFound" in err
