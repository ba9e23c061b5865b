"""A client generated from the served document with ``openapi-python-client`` (the README's
recipe) submits a job and polls it to its end — within 30 s, generation included."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.http import Api

pytestmark = pytest.mark.e2e

BUDGET_SECONDS = 30
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}


def generate_client(base_url: str, where: Path) -> Any:
    document = where / "openapi.json"
    document.write_text(json.dumps(Api(base_url).get("/api/v1/openapi.json").json()))
    package = f"bulk_ingest_client_{uuid.uuid4().hex[:8]}"
    generator = Path(sys.executable).parent / "openapi-python-client"
    subprocess.run(
        [str(generator), "generate", "--path", str(document), "--output-path",
         str(where / package), "--meta", "none"],
        check=True, capture_output=True, timeout=BUDGET_SECONDS,
    )  # fmt: skip
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(package)
    finally:
        sys.path.remove(str(where))


def test_a_generated_client_submits_and_polls_a_job(service: Any, tenant: Any, tmp_path: Path):
    started = time.monotonic()
    client_package = generate_client(service.base_url, tmp_path)
    name = client_package.__name__
    submit = importlib.import_module(f"{name}.api.bulk.submit_customers")
    get_job = importlib.import_module(f"{name}.api.jobs.get_job")
    models = importlib.import_module(f"{name}.models")

    client = client_package.AuthenticatedClient(base_url=service.base_url, token=tenant.api_key)
    key = f"gen-{uuid.uuid4().hex[:8]}"
    body = models.CustomerBulkRequest.from_dict(
        {"records": [{"externalId": key, "firstName": "Ada", "lastName": "Lovelace"}]}
    )
    answer = submit.sync_detailed(client=client, body=body)
    assert answer.status_code == 202, answer.content
    accepted = answer.parsed
    assert isinstance(accepted, models.Job)
    assert answer.headers["Location"] == f"/api/v1/jobs/{accepted.job_id}"

    job = accepted
    while str(job.status.value) not in TERMINAL:
        assert time.monotonic() - started < BUDGET_SECONDS, f"still {job.status} after the budget"
        time.sleep(0.2)
        job = get_job.sync(client=client, job_id=accepted.job_id)
        assert isinstance(job, models.Job)
    assert (job.status.value, job.total, job.successful) == ("COMPLETED", 1, 1)
    assert time.monotonic() - started < BUDGET_SECONDS
