"""A small synchronous HTTP client for tests (stdlib only), and polling with a deadline.

Every answer :class:`Api` receives is held to the gateway's OpenAPI document
(:mod:`tests.support.conformance`, whose docstring lists the clients that are exempt); pass
``conform=False`` for the rare answer a test provokes on purpose outside the contract.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.support.conformance import check_answer

T = TypeVar("T")


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60,
        conform: bool = True,
    ) -> Response:
        all_headers = dict(headers or {})
        if self.api_key and "Authorization" not in all_headers:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        url = path if path.startswith("http") else self.base_url + path
        request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                response = Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            response = Response(error.code, dict(error.headers), error.read())
        if conform:
            check_answer(
                self.base_url, method, url, response.status, response.headers, response.body
            )
        return response

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, json_body=json_body, **kwargs)

    def put(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("PUT", path, json_body=json_body, **kwargs)

    def wait_terminal(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        terminal = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "INTERNAL_FAILURE", "CANCELLED"}

        def check() -> dict[str, Any] | None:
            job = self.get(f"/api/v1/jobs/{job_id}").json()
            return job if job["status"] in terminal else None

        return poll(check, timeout, f"job {job_id} to finish")


def poll(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
