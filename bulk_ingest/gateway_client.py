"""A client of a (possibly remote) gateway, for the CLI: JSON requests, refusals as people read
them, and a job's live event stream (``GET /jobs/{id}/events``, read with sseclient-py).

The CLI's commands (:mod:`bulk_ingest.job_client`, :mod:`bulk_ingest.import_client`) need no
local settings: ``--url`` / ``--api-key`` or ``BULK_INGEST_URL`` / ``BULK_INGEST_API_KEY``.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sseclient

DEFAULT_URL = "http://127.0.0.1:8080"
TERMINAL = frozenset(
    {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}
)
STREAM_TIMEOUT_SECONDS = 60.0
"""Longer than the gateway's 15 s keep-alive comments: a silent stream this long is dead."""
RECONNECTS = 5
RECONNECT_SECONDS = 1.0


class ClientError(Exception):
    """The gateway refused a request or could not be reached; the message says why."""


@dataclass(frozen=True)
class Gateway:
    """The gateway's base URL and the tenant's key; stdlib HTTP, JSON in and out."""

    url: str
    api_key: str
    timeout: float = 60.0

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        all_headers = {"Authorization": f"Bearer {self.api_key}", **(headers or {})}
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self._url(path), data, all_headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()
        except (urllib.error.URLError, OSError) as error:
            raise ClientError(f"cannot reach the gateway at {self.url}: {error}") from error

    def json(self, method: str, path: str, expected: int, **kwargs: Any) -> dict[str, Any]:
        status, _, raw = self.request(method, path, **kwargs)
        if status != expected:
            raise ClientError(refusal(method, path, status, raw))
        return dict(json.loads(raw))

    def job_events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event, data)`` of the job's stream, ending after its ``terminal`` event; a dropped
        stream is resumed with ``Last-Event-ID`` (a few times, then ClientError)."""
        last_id: str | None = None
        failures = 0
        while True:
            try:
                for message in self._events(f"/api/v1/jobs/{job_id}/events", last_id):
                    failures = 0
                    last_id = message.id or last_id
                    yield message.event, json.loads(message.data)
                    if message.event == "terminal":
                        return
            except (urllib.error.URLError, OSError, ValueError) as error:
                failures += 1
                if failures > RECONNECTS:
                    raise ClientError(f"the event stream of job {job_id} broke: {error}") from error
                time.sleep(RECONNECT_SECONDS)  # a client's back-off before it reconnects

    def _events(self, path: str, last_id: str | None) -> Iterator[sseclient.Event]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        request = urllib.request.Request(self._url(path), headers=headers)
        try:
            answer = urllib.request.urlopen(request, timeout=STREAM_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            raise ClientError(refusal("GET", path, error.code, error.read())) from error
        with answer:
            yield from sseclient.SSEClient(answer).events()

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else self.url.rstrip("/") + path


def refusal(method: str, path: str, status: int, raw: bytes) -> str:
    """A refused request as a person reads it: the status and every error message."""
    try:
        errors = json.loads(raw)["errors"]
        lines = [
            f"  {e['errorCode']}{' (' + e['field'] + ')' if e.get('field') else ''}: {e['message']}"
            for e in errors
        ]
    except (ValueError, KeyError, TypeError):
        lines = [f"  {raw[:500].decode(errors='replace')}"]
    return f"{method} {path} answered {status}:\n" + "\n".join(lines)


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"gateway URL (env BULK_INGEST_URL, default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (env BULK_INGEST_API_KEY)")


def gateway_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Gateway:
    url = args.url or environ.get("BULK_INGEST_URL") or DEFAULT_URL
    api_key = args.api_key or environ.get("BULK_INGEST_API_KEY")
    if not api_key:
        raise ClientError("an API key is needed: --api-key KEY or BULK_INGEST_API_KEY")
    return Gateway(url, api_key)
