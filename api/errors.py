"""Domain errors → HTTP responses, in one place, always in the contract's error shape."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from bulk_ingest.failures import FailureKind, classify
from domain.errors import MAX_ERRORS, ApiError, ErrorCode, InvalidInput

log = logging.getLogger(__name__)


class HttpProblem(Exception):
    """Raise from a handler to answer ``status`` with these errors."""

    def __init__(
        self,
        status: int,
        errors: Iterable[ApiError],
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        self.status = status
        self.errors = tuple(errors)[:MAX_ERRORS]
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(self.errors[0].message if self.errors else str(status))


def problem(
    status: int,
    code: ErrorCode,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> HttpProblem:
    return HttpProblem(status, [ApiError(code, message)], headers=headers, extra=extra)


def id_or_404(value: str, noun: str) -> str:
    """The canonical form of an id from a path; anything that is not a UUID names nothing (404)."""
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise problem(404, ErrorCode.NotFound, f"{noun} {value} does not exist.") from exc


def error_response(
    status: int,
    errors: Iterable[ApiError],
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    body = {**(extra or {}), "errors": [e.to_dict() for e in list(errors)[:MAX_ERRORS]]}
    return web.json_response(body, status=status, headers=headers, dumps=json.dumps)


_STATUS_CODES = {
    401: ErrorCode.Unauthorized,
    404: ErrorCode.NotFound,
    405: ErrorCode.MethodNotAllowed,
    413: ErrorCode.PayloadTooLarge,
}
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")
RETRY_AFTER_SECONDS = "5"


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpProblem as exc:
        return error_response(exc.status, exc.errors, exc.headers, exc.extra)
    except InvalidInput as exc:
        status = 404 if exc.errors and exc.errors[0].error_code is ErrorCode.UnknownEntity else 422
        return error_response(status, exc.errors)
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, [ApiError(ErrorCode.PayloadTooLarge, _too_large(exc))])
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, ErrorCode.InvalidParameter)
        # Only headers that mean something here: the exception's own Content-Type would clash
        # with the JSON body.
        headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
        message = _http_message(request, exc)
        return error_response(exc.status, [ApiError(code, message)], headers)
    except Exception as exc:
        if classify(exc) is FailureKind.TRANSIENT or classify(_cause(exc)) is FailureKind.TRANSIENT:
            log.warning("%s %s: a dependency is unavailable: %s", request.method, request.path, exc)
            return error_response(
                503,
                [ApiError(ErrorCode.ServiceUnavailable, _UNAVAILABLE)],
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            500, [ApiError(ErrorCode.InternalError, "The service failed; the error is logged.")]
        )


_UNAVAILABLE = (
    "The service cannot reach its database or message broker right now. Retry the request "
    "(with the same Idempotency-Key, if you sent one)."
)


def _cause(exc: BaseException) -> BaseException:
    """The driver error under SQLAlchemy's wrapper (``.orig``), or the exception's cause."""
    inner = getattr(exc, "orig", None) or exc.__cause__
    return inner if isinstance(inner, BaseException) else exc


def _http_message(request: web.Request, exc: web.HTTPException) -> str:
    if exc.status == 404:
        return f"There is nothing at {request.path}; the API lives under /api/v1."
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "") or "another method"
        return f"{request.method} is not allowed on {request.path}; use {allowed}."
    return exc.reason


def _too_large(exc: web.HTTPRequestEntityTooLarge) -> str:
    return (
        f"The request body is too large ({exc.text}); split the records over several jobs "
        "or upload a file to /api/v1/files."
    )
