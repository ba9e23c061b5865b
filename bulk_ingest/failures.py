"""The three kinds of failure every stage and consumer tells apart, decided in one place.

- :attr:`FailureKind.TRANSIENT` — the broker or the database is unavailable, a transaction was
  rolled back by a deadlock or a serialization failure, a timeout: retry the same input with
  backoff, as long as it takes. Such a failure is never the message's fault and never counts
  towards dead-lettering it.
- :attr:`FailureKind.DATA` — the database or an encoder refuses a *value*: ``DataError``
  (``\\u0000``, numbers out of range, bad text), a violated ``NOT NULL``/``CHECK``,
  ``UnicodeEncodeError``, ``OverflowError``. A stage that writes records isolates the records
  responsible and fails each with ``InvalidValue``; the rest are written.
- :attr:`FailureKind.BUG` — anything else. The message is retried a few times (each failure
  recorded in PostgreSQL), then dead-lettered with the exception in its headers, and the
  partition moves on.

A ``UniqueViolation`` is a bug here: the ledger and the chunk bookkeeping make every write
idempotent, so the one legitimate cause — a zombie consumer racing the partition's new owner —
is resolved inside the persist stage by re-reading the ledger.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum

import psycopg
import sqlalchemy.exc

from bulk_ingest.kafka import KafkaUnavailable
from storage.errors import VALUE_REFUSED


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    DATA = "data"
    BUG = "bug"


_DATA = (*VALUE_REFUSED, UnicodeError, OverflowError)
_TRANSIENT = (
    psycopg.OperationalError,  # connection trouble, admin shutdown, deadlock, serialization
    psycopg.InterfaceError,
    KafkaUnavailable,
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    OSError,
)


# Errors of the file system that waiting does not cure.
_PERMANENT_OS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def classify(error: BaseException) -> FailureKind:
    """Which of the three kinds ``error`` is (the order matters: some data errors are
    ``OperationalError`` subclasses in psycopg). SQLAlchemy's wrappers are judged by the
    driver error they wrap."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return FailureKind.TRANSIENT
        if error.orig is not None:
            error = error.orig
    if isinstance(error, sqlalchemy.exc.TimeoutError):  # no connection free in the pool
        return FailureKind.TRANSIENT
    if isinstance(error, _DATA):
        return FailureKind.DATA
    if isinstance(error, _PERMANENT_OS):
        return FailureKind.BUG
    if isinstance(error, _TRANSIENT):
        return FailureKind.TRANSIENT
    return FailureKind.BUG


def describe(error: BaseException, limit: int = 500) -> str:
    """``ClassName: message`` cut to ``limit`` characters, for logs, headers and the failure log."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
