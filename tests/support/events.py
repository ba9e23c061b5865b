"""Reading the gateway's Server-Sent Event streams in tests: each stream read by a thread
(sseclient-py over urllib), every event kept with the moment it arrived. The stream's status,
content type and headers, and every event's data, are held to the OpenAPI document
(:mod:`tests.support.conformance`); a mismatch fails the test when it next looks at the
stream."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sseclient

from tests.support.conformance import NotConforming, check_answer, check_event
from tests.support.http import Api, poll


@dataclass(frozen=True)
class Received:
    at: float
    event: str
    id: str
    data: dict[str, Any]


class EventStream:
    """``with EventStream(api, path) as stream:`` — the events so far in ``stream.events``."""

    def __init__(self, api: Api, path: str, *, last_event_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api.api_key}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._request = urllib.request.Request(api.base_url + path, headers=headers)
        self._base_url, self._path = api.base_url, path
        self.events: list[Received] = []
        self.status = 0
        self.content_type = ""
        self._ended = threading.Event()
        self._nonconforming: NotConforming | None = None
        self._response: Any = None
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"sse {path}")

    def __enter__(self) -> EventStream:
        self._response = urllib.request.urlopen(self._request, timeout=60)
        self.status = self._response.status
        self.content_type = self._response.headers.get("Content-Type", "")
        headers = dict(self._response.headers)
        check_answer(self._base_url, "GET", self._path, self.status, headers, None)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._response.close()
        self._thread.join(5)
        self._conforming()

    def _conforming(self) -> None:
        if self._nonconforming is not None:
            raise self._nonconforming

    def _read(self) -> None:
        try:
            for message in sseclient.SSEClient(self._response).events():
                data = json.loads(message.data)
                check_event(self._base_url, self._path, message.event, data)
                self.events.append(Received(time.monotonic(), message.event, message.id, data))
        except NotConforming as exc:
            self._nonconforming = exc
        except (OSError, ValueError, AttributeError):
            pass  # closed by __exit__
        finally:
            self._ended.set()

    @property
    def ended(self) -> bool:
        """The gateway ended the stream."""
        return self._ended.is_set()

    def wait_for(self, check: Callable[[Received], bool], timeout: float, what: str) -> Received:
        def found() -> Received | None:
            self._conforming()
            return next((e for e in list(self.events) if check(e)), None)

        try:
            return poll(found, timeout, what, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the last events: {self.events[-5:]}") from None

    def wait_ended(self, timeout: float) -> None:
        if not self._ended.wait(timeout):
            raise AssertionError(f"the stream did not end within {timeout} s: {self.events[-3:]}")
        self._conforming()

    def of(self, event: str) -> list[Received]:
        return [e for e in list(self.events) if e.event == event]
