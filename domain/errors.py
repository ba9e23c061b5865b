"""Error codes and the one error shape every layer reports.

Every 4xx/5xx body and every failed record speaks in :class:`ApiError` terms:
``{"errorCode", "message", "moreInfo", "index"?, "field"?}``. The codes are a public contract
(design.md §3, §4): spell them exactly as they are here.

Exceptions raised by our own code share one root, :class:`BulkIngestError`; :class:`InvalidInput`
is the caller's to fix. Telling a failure's kind (retry, bad input, bug) for the stages and the
consumers is :mod:`bulk_ingest.failures`'s job, from the exception the driver raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain import json_schema as js
from domain.json_schema import ViewField, fill, not_none, view_schema

MAX_ERRORS = 100
"""At most this many errors are reported for one request or one job."""

ERRORS_DOC_URL = "https://github.com/bulk-ingest/bulk-ingest/blob/main/docs/errors.md"


class ErrorCode(StrEnum):
    """Every error code the service reports; the value is the code as written in the API."""

    # Basic (synchronous) request and record validation.
    MaxRecordsExceeded = "MaxRecordsExceeded"
    EmptyRequest = "EmptyRequest"
    InvalidJson = "InvalidJson"
    MissingRequiredField = "MissingRequiredField"
    InvalidFieldType = "InvalidFieldType"
    InvalidFormat = "InvalidFormat"
    UnknownField = "UnknownField"
    InvalidOperation = "InvalidOperation"
    InvalidWebhookUrl = "InvalidWebhookUrl"
    UnknownEntity = "UnknownEntity"
    # Record outcomes (asynchronous).
    DuplicateKey = "DuplicateKey"
    RecordNotFound = "RecordNotFound"
    InvalidReference = "InvalidReference"
    InvalidValue = "InvalidValue"
    JobCancelled = "JobCancelled"
    RecordNotProcessed = "RecordNotProcessed"
    RecordNotReceived = "RecordNotReceived"
    ErrorRateExceeded = "ErrorRateExceeded"
    ChangedSince = "ChangedSince"
    # API errors that concern no record.
    Unauthorized = "Unauthorized"
    NotFound = "NotFound"
    MethodNotAllowed = "MethodNotAllowed"
    PayloadTooLarge = "PayloadTooLarge"
    IdempotencyKeyReused = "IdempotencyKeyReused"
    ReportNotReady = "ReportNotReady"
    JobNotCancellable = "JobNotCancellable"
    JobNotTerminal = "JobNotTerminal"
    NothingToRetry = "NothingToRetry"
    NothingToRevert = "NothingToRevert"
    JobAlreadyReverted = "JobAlreadyReverted"
    RevertExpired = "RevertExpired"
    ImportBlocked = "ImportBlocked"
    ServiceUnavailable = "ServiceUnavailable"
    InternalError = "InternalError"
    InvalidParameter = "InvalidParameter"


def docs_url(code: ErrorCode) -> str:
    """The documentation anchor that explains ``code``."""
    return f"{ERRORS_DOC_URL}#{code.value.lower()}"


@dataclass(frozen=True)
class ApiError:
    """One error as the API reports it; ``index``/``field`` only where they apply."""

    error_code: ErrorCode
    message: str
    index: int | None = None
    field: str | None = None
    more_info: str = ""

    def __post_init__(self) -> None:
        if not self.more_info:
            object.__setattr__(self, "more_info", docs_url(self.error_code))

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the public error format."""
        return fill(API_ERROR_FIELDS, self)


API_ERROR_FIELDS: tuple[ViewField[ApiError], ...] = (
    ViewField(
        "errorCode",
        js.enum(ErrorCode, "The error code; docs/errors.md explains each one"),
        lambda e: e.error_code.value,
    ),
    ViewField("message", js.string("What went wrong, for a person"), lambda e: e.message),
    ViewField(
        "moreInfo",
        js.string("Where the code is explained", format="uri"),
        lambda e: e.more_info,
    ),
    ViewField(
        "index",
        js.integer("The record's position in records, 0-based", minimum=0),
        lambda e: e.index,
        not_none,
    ),
    ViewField(
        "field",
        js.string("The field at fault as a dotted path (addresses.0.country)"),
        lambda e: e.field,
        not_none,
    ),
)
"""One error of an error body; ``index`` and ``field`` only where they apply."""


def error_body_schema() -> js.Schema:
    """``{"errors": [...]}``: the body of every 4xx and 5xx answer."""
    errors = js.array(
        view_schema(API_ERROR_FIELDS),
        "The first encountered error first",
        minItems=1,
        maxItems=MAX_ERRORS,
    )
    return js.obj({"errors": errors}, ["errors"])


class BulkIngestError(Exception):
    """Root of every error the service raises on purpose."""


class InvalidInput(BulkIngestError):
    """The input cannot be accepted as it is; ``errors`` says why, first encountered first.

    At most :data:`MAX_ERRORS` errors are kept; later ones are dropped.
    """

    def __init__(self, errors: Iterable[ApiError]) -> None:
        kept = tuple(errors)[:MAX_ERRORS]
        if not kept:
            raise ValueError("InvalidInput needs at least one error")
        super().__init__(kept[0].message)
        self.errors: tuple[ApiError, ...] = kept

    @classmethod
    def single(
        cls,
        code: ErrorCode,
        message: str,
        *,
        index: int | None = None,
        field: str | None = None,
    ) -> InvalidInput:
        """An :class:`InvalidInput` holding exactly one error."""
        return cls([ApiError(code, message, index=index, field=field)])

    def to_dict(self) -> dict[str, Any]:
        """The response body ``{"errors": [...]}``."""
        return {"errors": [error.to_dict() for error in self.errors]}
