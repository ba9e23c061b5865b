"""The file-import tests' data set and helpers: the spreadsheet-style customers in five shapes
(CSV, ZIP, XLSX, NDJSON, UTF-16 text), uploads and imports over HTTP, and database reads."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

import openpyxl
import psycopg

from tests.support.http import Api, Response

FILES = "/api/v1/files"
IMPORTS = "/api/v1/imports"


HEADER = [
    "External ID",
    "First Name",
    "Last Name",
    "E-mail",
    "Street",
    "City",
    "Country",
    "Address Type",
    "Notes",
]


MAPPING = {
    "External ID": "externalId",
    "First Name": "firstName",
    "Last Name": "lastName",
    "E-mail": "email",
    "Street": "addresses.0.line1",
    "City": "addresses.0.city",
    "Country": "addresses.0.country",
    "Address Type": "addresses.0.type",
}


FIRST_NAMES = ["Zoë", "Émile", "Jürgen", "François", "Åsa"]
ROWS = 1000
MULTILINE_ROW = 3
BAD_EMAIL_ROW = 500
NO_LAST_NAME_ROW = 700


def people(prefix: str) -> list[list[str]]:
    rows = []
    for i in range(ROWS):
        street = "12 Rue de l'Église\nBâtiment B" if i == MULTILINE_ROW else f"{i} Rue de Lyon"
        rows.append(
            [
                f"{prefix}-{i}",
                FIRST_NAMES[i % len(FIRST_NAMES)],
                "" if i == NO_LAST_NAME_ROW else f"Müller-{i}",
                "not-an-email" if i == BAD_EMAIL_ROW else f"p{i}@example.com",
                street,
                "Paris",
                "FR",
                "home",
                "",
            ]
        )
    return rows


def csv_text(rows: list[list[str]], delimiter: str = ";") -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue()


def spreadsheet_csv(rows: list[list[str]]) -> bytes:
    """As Excel saves "CSV UTF-8" in a ';' locale: BOM, CRLF, semicolons."""
    return b"\xef\xbb\xbf" + csv_text(rows).encode("utf-8")


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return out.getvalue()


def workbook(rows: list[list[str]]) -> bytes:
    book = openpyxl.Workbook()
    notes = book.active
    notes.title = "Read me"
    notes.append(["This sheet is not the data"])
    sheet = book.create_sheet("Customers")
    sheet.append(HEADER)
    for row in rows:
        sheet.append([cell or None for cell in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def ndjson(rows: list[list[str]]) -> bytes:
    lines = [json.dumps({k: v for k, v in zip(HEADER, row, strict=True) if v}) for row in rows]
    return ("\n".join(lines) + "\n").encode()


@dataclass(frozen=True)
class Variant:
    name: str
    content_type: str
    build: Any
    first_data_line: int  # the line of data row 0
    multiline_extra: int  # extra lines taken by the quoted line break
    import_extra: dict[str, Any]


VARIANTS = [
    Variant("csv", "text/csv", spreadsheet_csv, 2, 1, {}),
    Variant(
        "zip", "application/zip", lambda r: zipped("customers.csv", spreadsheet_csv(r)), 2, 1, {}
    ),
    Variant(
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        workbook,
        2,
        0,
        {"sheet": "Customers"},
    ),
    Variant("ndjson", "application/x-ndjson", ndjson, 1, 0, {}),
    Variant("utf16", "text/plain", lambda r: csv_text(r, "\t").encode("utf-16"), 2, 1, {}),
]


def line_of(variant: Variant, index: int) -> int:
    extra = variant.multiline_extra if index > MULTILINE_ROW else 0
    return variant.first_data_line + index + extra


def upload(api: Api, data: bytes, content_type: str = "text/csv", query: str = "") -> Response:
    return api.request("POST", FILES + query, data=data, headers={"Content-Type": content_type})


def uploaded(api: Api, data: bytes, content_type: str = "text/csv", query: str = "") -> dict:
    answer = upload(api, data, content_type, query)
    assert answer.status == 201, answer.body
    return answer.json()


def start(api: Api, file_id: str, **body: Any) -> Response:
    return api.post(IMPORTS, {"file_id": file_id, "entity": "customers", **body})


def imported(api: Api, file_id: str, **body: Any) -> dict:
    answer = start(api, file_id, **body)
    assert answer.status == 202, answer.body
    job = answer.json()
    assert answer.headers["Location"] == f"/api/v1/jobs/{job['job_id']}"
    assert job["source"] == "file"
    return api.wait_terminal(job["job_id"], timeout=180)


def error_codes(answer: Response) -> list[tuple[str, str | None]]:
    return [(e["errorCode"], e.get("field")) for e in answer.json()["errors"]]


def db(settings, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(settings.libpq_url) as conn:
        rows = conn.execute(query, list(params)).fetchall() if "SELECT" in query else []
        if "SELECT" not in query:
            conn.execute(query, list(params))
        return rows
