"""The OpenAPI document: valid OpenAPI 3.1, every route of the gateway and nothing else, its
examples and the answers the code builds valid against it (read strictly), and its record
schemas accepting exactly what basic validation accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from api.app import init_app
from api.docs import limits_of
from api.files import file_object
from api.webhooks import attempt_object, delivery_object
from bulk_ingest.settings import load_settings
from domain.entities import EntityRegistry, default_schemas_dir
from domain.entity_description import entity_description, entity_list
from domain.errors import ApiError, ErrorCode
from domain.file_types import FileFormat, FileProfile
from domain.job_view import job_object, progress_body, record_results, webhook_body
from domain.openapi import openapi_document
from domain.openapi_schemas import entity_component
from domain.validation import basic_record_errors
from tests.support.conformance import Conformance
from tests.unit.test_golden import FIXTURE_FAILURES, FIXTURE_JOB

REGISTRY = EntityRegistry.load(default_schemas_dir())
SETTINGS = load_settings({})
DOCUMENT = openapi_document(REGISTRY, limits_of(SETTINGS))
CONFORMANCE = Conformance(DOCUMENT)
MOMENT = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def component(name: str) -> dict[str, str]:
    return CONFORMANCE.schema_ref(f"/components/schemas/{name}")


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1")
    json.dumps(DOCUMENT, allow_nan=False)


def test_every_route_of_the_gateway_is_described_and_nothing_else() -> None:
    served = set()
    for route in init_app(SETTINGS).router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        names = REGISTRY.names() if "{entity}/bulk" in path else ("",)
        for name in names:
            served.add((route.method.lower(), path.replace("{entity}/bulk", f"{name}/bulk")))
    described = {(method, path) for path, ops in DOCUMENT["paths"].items() for method in ops}
    assert served == described


def test_every_operation_but_the_public_ones_needs_the_key_and_lists_401() -> None:
    public = {"/", "/assets/{name}", "/healthz", "/metrics", "/docs", "/docs/assets/{name}"}
    public.add("/api/v1/openapi.json")
    assert DOCUMENT["security"] == [{"bearer": []}]
    for path, operations in DOCUMENT["paths"].items():
        for operation in operations.values():
            if path in public:
                assert operation["security"] == []
            else:
                assert "security" not in operation
                assert "401" in operation["responses"]


def _examples(node: Any, where: str) -> list[tuple[str, Any]]:
    """(JSON pointer of the schema, example) of every media type object with examples."""
    found = []
    if isinstance(node, dict):
        if "schema" in node and ("example" in node or "examples" in node):
            values = [node["example"]] if "example" in node else []
            values += [e["value"] for e in node.get("examples", {}).values()]
            found += [(f"{where}/schema", value) for value in values]
        for key, value in node.items():
            found += _examples(value, f"{where}/{key.replace('~', '~0').replace('/', '~1')}")
    return found


def test_every_example_is_valid_against_its_schema() -> None:
    examples = _examples(DOCUMENT["paths"], "/paths")
    examples += _examples(DOCUMENT["components"]["responses"], "/components/responses")
    assert len(examples) > 20
    for pointer, example in examples:
        CONFORMANCE.validate(CONFORMANCE.schema_ref(pointer), example, pointer)


def test_the_answers_the_code_builds_are_described_exactly() -> None:
    job = job_object(FIXTURE_JOB, FIXTURE_FAILURES)
    CONFORMANCE.validate(component("Job"), job, "job object")
    CONFORMANCE.validate(component("Job"), job_object(FIXTURE_JOB, []), "listed job")
    results = {
        **job,
        "results": record_results(
            [
                {
                    "index": 0,
                    "key": "c-1",
                    "status": "CREATED",
                    "record_id": FIXTURE_JOB["job_id"],
                    "error_code": None,
                    "error_message": None,
                },
                {
                    "index": 1,
                    "key": None,
                    "status": "FAILED",
                    "record_id": None,
                    "error_code": "InvalidReference",
                    "error_message": "no such type",
                },
            ]
        ),
    }
    CONFORMANCE.validate(component("JobWithResults"), results, "sync answer")
    webhook = json.loads(webhook_body("job.completed", "2026-12-01T08:30:00.000Z", job))
    CONFORMANCE.validate(component("WebhookEvent"), webhook, "webhook body")
    progress = progress_body(FIXTURE_JOB, 1234.56, None)
    CONFORMANCE.validate(component("Progress"), progress, "progress event")
    error = ApiError(ErrorCode.MissingRequiredField, "x", index=3, field="firstName")
    CONFORMANCE.validate(component("ErrorBody"), {"errors": [error.to_dict()]}, "error body")
    CONFORMANCE.validate(component("EntityList"), entity_list(REGISTRY), "entities")
    for name in REGISTRY.names():
        description = entity_description(REGISTRY.get(name))
        CONFORMANCE.validate(component("EntityDescription"), description, name)


def test_the_gateways_own_objects_are_described_exactly() -> None:
    profile = FileProfile(
        FileFormat.XLSX, None, columns=("a",), sheet_columns={"S": ("a",)}, warnings=("w",)
    )
    row = {
        "file_id": FIXTURE_JOB["job_id"],
        "sha256": "a" * 64,
        "size": 10,
        "format": "xlsx",
        "storage": "temporary",
        "expires_at": MOMENT,
        "profile": profile.to_dict(),
        "filename": "a.xlsx",
        "created_at": MOMENT,
    }
    CONFORMANCE.validate(component("File"), file_object(row), "xlsx file")
    zipped = FileProfile(FileFormat.ZIP, FileFormat.CSV, "utf-8", ",", ("a",), member="a.csv")
    row = {**row, "format": "zip", "profile": zipped.to_dict(), "expires_at": None}
    CONFORMANCE.validate(component("File"), file_object(row), "zip file")
    attempt = {
        "webhook_id": "msg_1",
        "attempt": 1,
        "at": MOMENT,
        "status_code": 500,
        "latency_ms": 12,
        "error": None,
        "next_attempt_at": MOMENT,
    }
    attempts = {"attempts": [attempt_object(attempt)]}
    CONFORMANCE.validate(component("WebhookAttempts"), attempts, "attempts")
    delivery = {
        "webhook_id": "msg_1",
        "job_id": FIXTURE_JOB["job_id"],
        "url": "https://x.y/",
        "event_type": "job.completed",
        "state": "PENDING",
        "attempts": 0,
        "next_attempt_at": MOMENT,
        "delivered_at": None,
    }
    CONFORMANCE.validate(component("WebhookDelivery"), delivery_object(delivery), "delivery")


# --- record schemas against basic validation ------------------------------------------------------

VALID = {
    "customers": {
        "externalId": "c-1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "ada@example.com",
        "phone": "+44 20 7946 0000",
        "addresses": [
            {"type": "home", "line1": "12 St James Sq", "city": "London", "country": "GB"}
        ],
        "importantDates": [{"type": "birthday", "date": "1815-12-10"}],
    },
    "products": {
        "sku": "SKU-1",
        "name": "Desk",
        "price": 349.0,
        "currency": "EUR",
        "active": True,
        "tags": ["wood"],
    },
}
ODD_VALUES = [
    None,
    "",
    " ",
    "x",
    "ab",
    "AB",
    "ABC",
    "x" * 65,
    "a\u200bb",
    "a\x00b",
    "e\u0301",
    "\u00a0",
    "1",
    "-1",
    "+1 (2) 3.4",
    "a@b.co",
    "2026-13-45",
    "a\nb",
    "GB\n",
    0,
    -1,
    1.5,
    2**53,
    2**53 + 1,
    -(2**63),
    1e300,
    True,
    False,
    [],
    [None],
    [""],
    ["x"] * 21,
    {},
    {"type": "home"},
    [{"type": "home", "line1": "l", "city": "c", "country": "GB", "extra": 1}],
    ["\U0001f600"],
    "\U000e0001",
    "\ue000",
    "\u0378",
    "\u2028",
]


def test_a_lone_surrogate_is_refused_though_no_pattern_can_name_it() -> None:
    """JSON Schema strings are Unicode scalar values; a lone surrogate (``"\\ud800"`` in JSON)
    is not one, and neither the Rust regex crate nor an ECMA pattern in Unicode mode can name
    it. The document says so in words; validation refuses it in every text field."""
    for entity, record in VALID.items():
        definition = REGISTRY.get(entity)
        schema = DOCUMENT["components"]["schemas"][entity_component(definition)]
        assert "surrogate" in schema["description"]
        texts = [path for path in _paths(record) if isinstance(_at(record, path), str)]
        assert len(texts) >= 4
        for path in texts:
            broken = _replaced(record, path, "a\ud800")
            assert basic_record_errors(definition, broken, 0) != [], path


def _at(record: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        if isinstance(record, dict):
            record = record.get(step)
        elif isinstance(record, list) and isinstance(step, int):
            record = record[step]
        else:
            return None
    return record


def _agree(entity: str, record: Any) -> None:
    definition = REGISTRY.get(entity)
    ref = component(entity_component(definition))
    try:
        CONFORMANCE.validate(ref, record, "record")
        schema_says = True
    except AssertionError:
        schema_says = False
    validation_says = basic_record_errors(definition, record, 0) == []
    assert schema_says == validation_says, (record, basic_record_errors(definition, record, 0))


@pytest.mark.parametrize("entity", sorted(VALID))
def test_a_valid_record_is_valid_for_both(entity: str) -> None:
    _agree(entity, VALID[entity])
    definition = REGISTRY.get(entity)
    assert basic_record_errors(definition, VALID[entity], 0) == []


@pytest.mark.parametrize("entity", sorted(VALID))
@pytest.mark.parametrize("value", ODD_VALUES, ids=repr)
def test_the_schema_and_validation_agree_on_odd_values_in_every_field(
    entity: str, value: Any
) -> None:
    for path in _paths(VALID[entity]):
        _agree(entity, _replaced(VALID[entity], path, value))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entity=st.sampled_from(sorted(VALID)), data=st.data(), value=json_values)
def test_the_schema_and_validation_agree_on_any_json_in_any_field(
    entity: str, data: st.DataObject, value: Any
) -> None:
    path = data.draw(st.sampled_from(_paths(VALID[entity])))
    _agree(entity, _replaced(VALID[entity], path, value))


def _paths(record: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every position in ``record``, and one unknown field per object."""
    found = []
    if isinstance(record, dict):
        found.append((*prefix, "unknownField"))
        for key, value in record.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    elif isinstance(record, list):
        for position, value in enumerate(record):
            found.append((*prefix, position))
            found += _paths(value, (*prefix, position))
    return found


def _replaced(record: Any, path: tuple[Any, ...], value: Any) -> Any:
    copied = json.loads(json.dumps(record))
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copied
