"""The gateway's OpenAPI document and its rendering: served without a key, the same document
the code builds (with this deployment's limits), valid OpenAPI 3.1; ``/docs`` renders it with
assets served by the gateway alone."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate

from api.docs import limits_of
from domain.entities import EntityRegistry, default_schemas_dir
from domain.openapi import openapi_document
from tests.support.http import Api

pytestmark = pytest.mark.e2e


def test_the_document_is_public_valid_and_the_one_the_code_builds(service) -> None:
    answer = Api(service.base_url).get("/api/v1/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    document = answer.json()
    validate(document)
    registry = EntityRegistry.load(default_schemas_dir())
    assert document == openapi_document(registry, limits_of(service.settings))
    records = document["components"]["schemas"]["CustomerSyncBulkRequest"]["properties"]
    assert records["records"]["maxItems"] == service.settings.max_sync_records


def test_the_docs_page_loads_only_from_the_gateway(service) -> None:
    anonymous = Api(service.base_url)
    page = anonymous.get("/docs")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    html = page.body.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(source.startswith("/docs/assets/") for source in sources)
    for source in sources:
        asset = anonymous.get(source)
        assert asset.status == 200, source
        assert len(asset.body) > 100
    script = anonymous.get("/docs/assets/docs.js").body.decode()
    assert "/api/v1/openapi.json" in script and "validatorUrl: null" in script
    assert anonymous.get("/docs/assets/swagger-editor-bundle.js").status == 404
    assert anonymous.get("/docs/assets/..%2Fcore.py").status == 404
