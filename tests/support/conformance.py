"""Every answer the end-to-end tests receive, held to the gateway's OpenAPI document.

:class:`tests.support.http.Api` hands each answer to :func:`check_answer`, and
:class:`tests.support.events.EventStream` each stream and event to :func:`check_answer` and
:func:`check_event`, so a field added, renamed or dropped in the code without the document —
or a status code, content type or header the document does not list — fails the test that saw
it. The document is the one the gateway serves (``GET /api/v1/openapi.json``, fetched once per
gateway), read **strictly**: an object schema that names its properties takes no other (the
published document leaves them open, so clients may ignore fields added later).

- JSON answers: the status must be listed for the operation, the declared required headers
  present, the content type listed, and the body valid against the schema (formats checked).
- CSV, ZIP, HTML and event-stream answers: status, content type and declared headers; each
  event's ``data`` against the schema its event name has in the document (``x-events``).
- A path the document does not have: only ``404``/``405`` with the error body.

Exempt — they do not go through ``Api`` or ``EventStream``: the raw socket of
``tests/e2e/test_completion.py`` (it only finds a free port), the Prometheus scrapes of
``tests/e2e/test_metrics.py`` and ``tests/support/metrics.py`` (text format, workers' own ports
too), the CLI under test in ``tests/e2e/test_jobs_cli.py``, ``test_import_cli.py`` and
``test_entity_templates.py`` (its own client, ``bulk_ingest/gateway_client.py``), the webhook
receivers (requests *to* the tests), the generated client of ``tests/e2e/test_openapi_client.py``
and schemathesis in ``tests/e2e/test_openapi_fuzz.py`` (which check the document themselves),
and any browser test.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

OPENAPI_PATH = "/api/v1/openapi.json"
DOCUMENT_URI = "urn:bulk-ingest:openapi"
JSON_TYPES = ("application/json",)


class NotConforming(AssertionError):
    """An answer the document does not describe."""


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """``pattern`` as JSON Schema means it (ECMA-262): a closing ``$`` is the end of the string,
    where Python's ``re`` would also let a final newline through."""
    if not isinstance(instance, str):
        return
    python = (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )
    if not re.search(python, instance):
        yield ValidationError(f"{instance!r} does not match {pattern[:80]!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})


def strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(schema, dict):
        tightened = {key: strict(value) for key, value in schema.items()}
        if tightened.get("type") == "object" and "properties" in tightened:
            tightened.setdefault("additionalProperties", False)
        return tightened
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@dataclass(frozen=True)
class Route:
    template: str
    pattern: re.Pattern[str]
    operations: Mapping[str, Any]


class Conformance:
    """The document of one gateway, ready to judge answers."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = copy.deepcopy(dict(document))
        self.document["components"]["schemas"] = strict(self.document["components"]["schemas"])
        resource = Resource(contents=self.document, specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
        # Concrete paths first: /jobs/events is not /jobs/{job_id}.
        self.routes = sorted(
            (Route(path, _template_pattern(path), ops) for path, ops in document["paths"].items()),
            key=lambda route: route.template.count("{"),
        )

    def route(self, path: str) -> Route | None:
        return next((r for r in self.routes if r.pattern.fullmatch(path)), None)

    def validate(self, schema: Mapping[str, Any], instance: Any, what: str) -> None:
        validator = Validator(
            dict(schema),
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(
                f"at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:5]
            )
            raise NotConforming(f"{what} does not match the OpenAPI document: {shown}")

    def schema_ref(self, pointer: str) -> dict[str, str]:
        return {"$ref": f"{DOCUMENT_URI}#{pointer}"}

    def answer_spec(self, method: str, path: str, status: int) -> tuple[str, Any] | None:
        """(JSON pointer, response object) for this answer; ``None`` for an undocumented path."""
        route = self.route(path)
        if route is None:
            return None
        operation = route.operations.get(method.lower())
        if operation is None:
            return None
        key = str(status) if str(status) in operation["responses"] else "default"
        if key not in operation["responses"]:
            raise NotConforming(
                f"{method} {path} answered {status}, which the document does not list for "
                f"{route.template} (it lists {sorted(operation['responses'])})"
            )
        answer = operation["responses"][key]
        escaped = route.template.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method.lower()}/responses/{key}"
        if "$ref" in answer:
            pointer = answer["$ref"].removeprefix("#")
            answer = self.document["components"]["responses"][pointer.rsplit("/", 1)[1]]
        return pointer, answer

    def check(
        self,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> None:
        """Raise :class:`NotConforming` unless the document describes this answer
        (``body=None``: a stream, not read here)."""
        lowered = {name.lower(): value for name, value in headers.items()}
        media = lowered.get("content-type", "").split(";")[0].strip().lower()
        found = self.answer_spec(method, path, status)
        what = f"{method} {path} → {status}"
        if found is None:
            if status not in (404, 405) or media not in JSON_TYPES or body is None:
                raise NotConforming(f"{what}: the document has no such operation")
            ref = self.schema_ref("/components/schemas/ErrorBody")
            self.validate(ref, json.loads(body), f"{what} (error body)")
            return
        pointer, answer = found
        for name, header in answer.get("headers", {}).items():
            if header.get("required") and name.lower() not in lowered:
                raise NotConforming(f"{what}: the required header {name} is missing")
        content = answer.get("content")
        if not content:
            if body:
                raise NotConforming(f"{what}: the document says no body, got {body[:100]!r}")
            return
        listed = {key.lower(): key for key in content}
        key = listed.get(media) or listed.get("*/*")
        if key is None:
            raise NotConforming(f"{what}: content type {media!r} is not one of {list(content)}")
        if media in JSON_TYPES and body is not None:
            escaped = key.replace("~", "~0").replace("/", "~1")
            ref = self.schema_ref(f"{pointer}/content/{escaped}/schema")
            self.validate(ref, json.loads(body), what)

    def check_event(self, method: str, path: str, event: str, data: Any) -> None:
        """One Server-Sent Event of a ``200`` stream: its name listed, its data valid."""
        found = self.answer_spec(method, path, 200)
        assert found is not None, f"{method} {path} is not in the document"
        events = found[1]["content"]["text/event-stream"]["x-events"]
        if event not in events:
            raise NotConforming(f"{method} {path}: event {event!r} is not one of {list(events)}")
        ref = self.schema_ref(f"/components/schemas/{events[event]}")
        self.validate(ref, data, f"{method} {path} event {event}")


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


_documents: dict[str, Conformance] = {}
_lock = threading.Lock()


def conformance_of(base_url: str) -> Conformance:
    """The document of the gateway at ``base_url``, fetched once."""
    with _lock:
        known = _documents.get(base_url)
        if known is None:
            with urllib.request.urlopen(base_url + OPENAPI_PATH, timeout=30) as answer:
                known = _documents[base_url] = Conformance(json.loads(answer.read()))
        return known


def check_answer(
    base_url: str,
    method: str,
    url: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes | None,
) -> None:
    """Hold one answer of the gateway at ``base_url`` to its document (others pass)."""
    parts = urlsplit(url)
    if parts.netloc and f"{parts.scheme}://{parts.netloc}" != base_url:
        return  # not this gateway
    conformance_of(base_url).check(method, parts.path, status, headers, body)


def check_event(base_url: str, path: str, event: str, data: Any) -> None:
    conformance_of(base_url).check_event("GET", urlsplit(path).path, event, data)
