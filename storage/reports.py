"""The report store: a terminal job's failure report and results file, on disk.

Files live under ``<report_dir>/<tenant_id>/<job_id>/``: ``report.csv``, ``results.csv`` and
``results.zip`` (holding ``results.csv``). They are built in one pass over the outcome ledger,
read with a server-side cursor in bounded batches, so a 50,000-record job needs no more memory
than a 10-record one. Each file is written under a temporary name, fsynced, then renamed into
place: a reader sees the whole file or none, and two writers racing on the same job (the report
writer and a download that arrived first) both produce identical files.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
import time
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.report_rows import (
    REPORT_COLUMNS,
    RESULTS_COLUMNS,
    Cell,
    is_reported,
    report_row,
    report_source_names,
    results_row,
    source_column_names,
)
from storage import jobs as job_store
from storage.rows import as_rows
from storage.tables import record_outcomes

log = logging.getLogger(__name__)

REPORT_NAME = "report.csv"
RESULTS_CSV_NAME = "results.csv"
RESULTS_ZIP_NAME = "results.zip"
BATCH_ROWS = 5_000
LEDGER_COLUMNS = (
    "index",
    "key",
    "status",
    "record_id",
    "error_code",
    "error_message",
    "record",
    "source",
)
STALE_TEMP_SECONDS = 3600.0  # a temp file this old belongs to a writer that died


@dataclass(frozen=True)
class ReportFiles:
    report: Path
    results_csv: Path
    results_zip: Path

    def all(self) -> tuple[Path, Path, Path]:
        return (self.report, self.results_csv, self.results_zip)

    def complete(self) -> bool:
        return all(path.is_file() for path in self.all())


class ReportStore:
    """Writes and finds the files of terminal jobs; ``ensure`` is the one entry point."""

    def __init__(self, root: Path, engine: AsyncEngine, batch_rows: int = BATCH_ROWS) -> None:
        self._root = root
        self._engine = engine
        self._batch_rows = batch_rows

    def files(self, tenant_id: str, job_id: str) -> ReportFiles:
        folder = self._root / tenant_id / job_id
        return ReportFiles(
            folder / REPORT_NAME, folder / RESULTS_CSV_NAME, folder / RESULTS_ZIP_NAME
        )

    async def ensure(self, job: Mapping[str, Any]) -> ReportFiles:
        """The job's files, written first if they are not there yet. The job must be terminal."""
        files = self.files(job["tenant_id"], job["job_id"])
        if not files.complete():
            return await self.write(job)
        if job.get("report_path") is None:  # a writer died between the rename and the note
            await self._record_paths(job["job_id"], files)
        return files

    async def write(self, job: Mapping[str, Any]) -> ReportFiles:
        files = self.files(job["tenant_id"], job["job_id"])
        folder = files.report.parent
        await asyncio.to_thread(_prepare_folder, folder)
        token = uuid.uuid4().hex
        temp = ReportFiles(*(folder / f".{p.name}.{token}.tmp" for p in files.all()))
        try:
            await self._write_csvs(job["job_id"], temp)
            await asyncio.to_thread(_zip_results, temp.results_csv, temp.results_zip)
            await asyncio.to_thread(_publish, temp, files)
        finally:
            await asyncio.to_thread(_remove, temp.all())
        await self._record_paths(job["job_id"], files)
        log.info("wrote report and results of job %s", job["job_id"])
        return files

    async def _write_csvs(self, job_id: str, temp: ReportFiles) -> None:
        o = record_outcomes
        query = (
            select(*(o.c[name] for name in LEDGER_COLUMNS))
            .where(o.c.job_id == job_id)
            .order_by(o.c.index)
            .execution_options(yield_per=self._batch_rows)
        )
        with _csv_file(temp.report) as report_out, _csv_file(temp.results_csv) as results_out:
            report, results = csv.writer(report_out), csv.writer(results_out)
            async with self._engine.connect() as conn:
                first_source = await _first_source(conn, job_id)
                report_names = report_source_names(first_source)
                source_names = source_column_names(first_source)
                report.writerow(REPORT_COLUMNS + report_names)
                results.writerow(RESULTS_COLUMNS + source_names)
                stream = await conn.stream(query)
                async for mappings in stream.mappings().partitions(self._batch_rows):
                    batch = as_rows(mappings)
                    failed = [report_row(o, report_names) for o in batch if is_reported(o)]
                    every = [results_row(o, source_names) for o in batch]
                    await asyncio.to_thread(_write_batch, report, failed, results, every)
            await asyncio.to_thread(_sync, report_out, results_out)

    async def _record_paths(self, job_id: str, files: ReportFiles) -> None:
        """Note on the job where its files are; ``updated_at`` stays: the job did not change."""
        async with self._engine.begin() as conn:
            await job_store.record_report_paths(
                conn,
                job_id,
                report=str(files.report.relative_to(self._root)),
                results=str(files.results_zip.relative_to(self._root)),
            )


async def _first_source(conn: AsyncConnection, job_id: str) -> object:
    """A file import's first source columns (None for other jobs): they name the extra columns."""
    o = record_outcomes
    result = await conn.execute(
        select(o.c.source)
        .where(o.c.job_id == job_id, o.c.source.is_not(None))
        .order_by(o.c.index)
        .limit(1)
    )
    return result.scalar_one_or_none()


def _csv_file(path: Path) -> IO[str]:
    return path.open("w", newline="", encoding="utf-8")


def _write_batch(
    report: Any, failed: list[list[Cell]], results: Any, every: list[list[Cell]]
) -> None:
    report.writerows(failed)
    results.writerows(every)


def _sync(*files: IO[str]) -> None:
    for handle in files:
        handle.flush()
        os.fsync(handle.fileno())


def _zip_results(results_csv: Path, results_zip: Path) -> None:
    with zipfile.ZipFile(results_zip, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        archive.write(results_csv, RESULTS_CSV_NAME)
    with results_zip.open("rb") as handle:
        os.fsync(handle.fileno())


def _publish(temp: ReportFiles, files: ReportFiles) -> None:
    for source, target in zip(temp.all(), files.all(), strict=True):
        os.replace(source, target)
    folder = os.open(files.report.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the renames themselves survive a crash
    finally:
        os.close(folder)


def _prepare_folder(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STALE_TEMP_SECONDS
    for leftover in folder.glob(".*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
