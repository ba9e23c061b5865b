"""What PostgreSQL says when it refuses a value, as opposed to a statement or a connection."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

VALUE_REFUSED: tuple[type[Exception], ...] = (
    psycopg.DataError,  # 22xxx: NUL in text, bad UTF-8, numbers out of range, invalid jsonb ...
    pg_errors.ProgramLimitExceeded,  # e.g. a jsonb value beyond PostgreSQL's size limits
    pg_errors.NotNullViolation,
    pg_errors.CheckViolation,
)
"""Errors caused by one value of one record: isolate the record, fail it, write the rest."""
