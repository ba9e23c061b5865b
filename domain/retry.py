"""Fix and retry (pure): which failures a retry asks for, and a failure report read back.

A retry sends a terminal job's failed and skipped records again in a *child* job (only the
child names its parent). Two ways in:

- ``POST /jobs/{id}/retry`` with an optional ``{"codes": [...]}``: :func:`parse_retry_codes`.
- ``POST /imports`` with ``"retry_of"``: the user edited the parent's failure report in a
  spreadsheet and uploaded it. :func:`retry_columns` finds the parent's source columns in it
  (the report's own leading columns are left out) and :func:`unescape_cell` takes back the one
  quote the report's formula escaping put in front of a cell
  (:func:`domain.report_rows.escape_cell`).
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.errors import ApiError, ErrorCode, InvalidInput
from domain.report_rows import REPORT_COLUMNS, needs_escape

MAX_CODES = 100


def parse_retry_codes(body: object, *, sent: bool = True) -> tuple[str, ...] | None:
    """The error codes a retry is narrowed to (None: every failure); InvalidInput otherwise.
    ``sent``: whether the request had a body at all (a JSON ``null`` is not an object)."""
    if not sent or body == {}:
        return None
    if not isinstance(body, dict):
        raise InvalidInput.single(
            ErrorCode.InvalidFieldType,
            'The request body must be a JSON object like {"codes": ["DuplicateKey"]}, or empty',
        )
    unknown = [name for name in body if name != "codes"]
    if unknown:
        raise InvalidInput.single(
            ErrorCode.UnknownField,
            f"The request has an unknown field {unknown[0]}",
            field=unknown[0],
        )
    codes = body.get("codes")
    if codes is None:
        return None
    if not isinstance(codes, list) or not codes or len(codes) > MAX_CODES:
        raise InvalidInput.single(
            ErrorCode.InvalidFieldType,
            f'codes must be a list of 1 to {MAX_CODES} error codes, like ["InvalidValue"]; '
            "leave it out to retry every failed and skipped record",
            field="codes",
        )
    errors = [_code_error(position, code) for position, code in enumerate(codes)]
    if any(errors):
        raise InvalidInput(tuple(e for e in errors if e is not None))
    return tuple(dict.fromkeys(codes))


def _code_error(position: int, code: object) -> ApiError | None:
    if isinstance(code, str) and code in ErrorCode.__members__:
        return None
    shown = repr(code) if isinstance(code, str) else f"a {type(code).__name__}"
    return ApiError(
        ErrorCode.InvalidParameter,
        f"codes[{position}] is {shown[:80]}, which is not an error code (docs/errors.md lists "
        "them; the job's failures by code are at /jobs/{id}/error-codes)",
        field=f"codes.{position}",
    )


def unescape_cell(value: str) -> str:
    """A report cell without the quote formula escaping added: ``'=A1`` → ``=A1``.

    Only a cell escaping would have produced loses its first character — a quote followed by
    ``= + - @``, tab or carriage return (or by more quotes and then one of them); ``'quoted``
    stays as it is.
    """
    if value[:1] == "'" and needs_escape(value[1:]):
        return value[1:]
    return value


def retry_columns(header: Sequence[str]) -> tuple[int, ...]:
    """Positions of the parent's source columns in an edited failure report's header.

    The report's own columns (``index, externalId, errorCode, failureReason, record``) lead the
    report and are left out; a file that does not start with them is taken to hold only source
    columns (the user deleted the report's own).
    """
    own = len(REPORT_COLUMNS)
    starts_with_own = tuple(name.strip() for name in header[:own]) == REPORT_COLUMNS
    return tuple(range(own if starts_with_own else 0, len(header)))
